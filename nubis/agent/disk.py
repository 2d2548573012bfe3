"""A VM's disk: a qcow2 overlay on its cached base image, never smaller than the image.

The base image is shared by every VM made from it and never written; the overlay
holds what the VM changes. A disk appears under its final name only complete (made
under a temporary name, synced, renamed), so a crash leaves no half-made disk.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

QEMU_IMG = "qemu-img"
SECTOR = 512


class DiskError(RuntimeError):
    """A disk image could not be made or read; the message says why."""


def overlay_size(size_bytes: int, base_virtual_size: int) -> int:
    """The overlay's virtual size: what was asked for, at least the image's, in whole
    sectors (qcow2 sizes are)."""
    size = max(size_bytes, base_virtual_size)
    return -(-size // SECTOR) * SECTOR


def create_argv(base: Path, disk: Path, size: int, base_format: str = "qcow2") -> list[str]:
    return [
        QEMU_IMG, "create", "-q",
        "-f", "qcow2",
        "-b", str(base),
        "-F", base_format,
        str(disk), str(size),
    ]  # fmt: skip


def make_overlay(
    base: Path,
    disk: Path,
    size_bytes: int,
    base_virtual_size: int,
    *,
    base_format: str = "qcow2",
) -> Path:
    """Make `disk` an overlay of `base`, unless it is one already (then it is left as
    it is: it holds the VM's data).

    `base` is recorded in the overlay by its absolute name, so the overlay opens the
    same from any working directory. A disk that exists on another base is an error,
    never replaced.
    """
    base = Path(os.path.abspath(base))
    if disk.exists():
        backing = backing_file(disk)
        if backing != str(base):
            raise DiskError(f"{disk} exists as an overlay of {backing}, not of {base}")
        return disk
    if not base.is_file():
        raise DiskError(f"the base image {base} is missing")
    disk.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(disk)
    partial.unlink(missing_ok=True)
    size = overlay_size(size_bytes, base_virtual_size)
    run(create_argv(base, partial, size, base_format))
    put_in_place(partial, disk)
    return disk


def info(image: Path) -> dict[str, object]:
    """`qemu-img info` of a qcow2 image, also while a VM has it open (`-U`: no lock
    taken). It is read as qcow2 only (`-f`): a file is never probed for its format,
    so a disk a guest wrote raw data into is never taken for another format's image."""
    answer = json.loads(
        run([QEMU_IMG, "info", "-U", "-f", "qcow2", "--output=json", os.path.abspath(image)])
    )
    if not isinstance(answer, dict):
        raise DiskError(f"qemu-img info {image} answered {answer!r}")
    return answer


def backing_file(image: Path) -> str | None:
    described = info(image)
    backing = described.get("full-backing-filename") or described.get("backing-filename")
    return backing if isinstance(backing, str) else None


def remove(disk: Path) -> None:
    """Delete the disk (and any half-made one); a missing disk is already removed."""
    disk.unlink(missing_ok=True)
    _partial(disk).unlink(missing_ok=True)


def run(command: list[str], env: Mapping[str, str] | None = None) -> str:
    """Run an image tool; its output, or a DiskError with what it said on failure."""
    try:
        finished = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
    except FileNotFoundError:
        raise DiskError(f"{command[0]} is not installed") from None
    if finished.returncode != 0:
        said = finished.stderr.strip() or f"exit status {finished.returncode}"
        raise DiskError(f"{' '.join(command[:2])} failed: {said}")
    return finished.stdout


def put_in_place(partial: Path, final: Path) -> None:
    """Give a finished image its final name: readable by root only (it may hold
    secrets), synced first, so the name never points at a half-written file."""
    os.chmod(partial, 0o600)
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    partial.replace(final)
    directory = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _partial(final: Path) -> Path:
    return final.with_name(final.name + ".partial")
