"""The kernel modules the tiny guest loads: which module a file holds, and the order
insmod needs them in (the dependencies come from `elf.module_depends`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from nubis.guestimage import BuildError


def load_order(wanted: Sequence[str], depends: Callable[[str], Sequence[str]]) -> list[str]:
    """`wanted` and what they depend on, each after its dependencies (insmod's order),
    otherwise in the order asked."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise BuildError(f"kernel modules depend on each other: {' -> '.join(visiting)}")
        visiting.append(name)
        for dependency in depends(name):
            visit(dependency)
        visiting.pop()
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def module_name(path: Path) -> str:
    """The module a .ko file holds, by the kernel's naming (`-` in a file name is `_`)."""
    return path.name.removesuffix(".ko").replace("-", "_")
