"""Dependencies run one way (docs/development.md): each module of the control plane
imports only modules of its own layer or those below it, never the agent's; the agent
imports only what both sides share; and no two modules import each other, however
indirectly.

Every import counts, at the top of a module or inside a function: an import hidden in a
function is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nubis"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "shared",
        (
            "nubis",
            "nubis.protocol",
            "nubis.console_grant",
            "nubis.addresses",
            "nubis.choices",
            "nubis.ids",
            "nubis.units",
            "nubis.errors",
            "nubis.config",
            "nubis.clock",
            "nubis.names",
            "nubis.roles",
            "nubis.secretbox",
            "nubis.sshkey",
            "nubis.logs",
            "nubis.guestimage",
        ),
    ),
    ("store", ("nubis.db", "nubis.models")),
    ("engine", ("nubis.engine",)),
    (
        "domain",
        ("nubis.revisions", "nubis.scheduling", "nubis.ipam", "nubis.locations", "nubis.peers"),
    ),
    (
        "services",
        (
            "nubis.auth",
            "nubis.vms",
            "nubis.consoles",
            "nubis.hosts",
            "nubis.networks",
            "nubis.firewall",
            "nubis.images",
            "nubis.desired",
            "nubis.evacuation",
        ),
    ),
    ("progs", ("nubis.progs",)),
    ("edge", ("nubis.api", "nubis.cli", "nubis.web", "nubis.__main__")),
]
AGENT = "nubis.agent"
LAUNCHERS = ("nubis.cli.agent", "nubis.cli.services")
"""The commands that run an agent (`nubis agent`, `nubis up`): they start it, and
nothing else of the control plane reaches into it."""


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_of(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "migrations" not in path.parts
}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (imports for the type checker only,
    which the code never runs)."""
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for child in ast.walk(node)
    }
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def _imports(module: str) -> set[str]:
    """The nubis modules `module` imports (a `from package import name` of a module is
    that module)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                named = f"{base}.{alias.name}"
                found.add(named if named in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> int:
    """The index of `module`'s layer (the longest prefix that names it)."""
    best, length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            fits = module == prefix or module.startswith(prefix + ".")
            if fits and len(prefix) > length:
                best, length = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def _is_agent(module: str) -> bool:
    return module == AGENT or module.startswith(AGENT + ".")


def test_every_module_is_in_a_layer_or_the_agent() -> None:
    for module in MODULES:
        if not _is_agent(module):
            _layer(module)


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import of the control plane into a layer above the importer's."""
    return [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {other} ({LAYERS[_layer(other)][0]})"
        for module, imported in sorted(graph.items())
        if not _is_agent(module)
        for other in sorted(imported)
        if not _is_agent(other) and _layer(other) > _layer(module)
    ]


def into_the_agent(graph: dict[str, set[str]]) -> list[str]:
    """Each import of the agent's modules by the control plane (but for its launchers)."""
    return [
        f"{module} imports {other}"
        for module, imported in sorted(graph.items())
        if not _is_agent(module) and module not in LAUNCHERS
        for other in sorted(imported)
        if _is_agent(other)
    ]


def out_of_the_agent(graph: dict[str, set[str]]) -> list[str]:
    """Each import by the agent of anything but the shared modules."""
    return [
        f"{module} imports {other}"
        for module, imported in sorted(graph.items())
        if _is_agent(module)
        for other in sorted(imported)
        if not _is_agent(other) and _layer(other) != 0
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import each other, however indirectly (Tarjan's
    strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_control_plane_imports_nothing_above_its_layer() -> None:
    assert upward(GRAPH) == []


def test_the_control_plane_imports_nothing_of_the_agent() -> None:
    assert into_the_agent(GRAPH) == []


def test_the_agent_imports_only_what_both_sides_share() -> None:
    assert out_of_the_agent(GRAPH) == []


def test_no_modules_import_each_other_however_indirectly() -> None:
    assert cycles(GRAPH) == []


def test_the_checks_see_what_they_forbid() -> None:
    def adding(module: str, other: str) -> dict[str, set[str]]:
        return {**GRAPH, module: GRAPH[module] | {other}}

    assert upward(adding("nubis.vms", "nubis.progs.vm")) == [
        "nubis.vms (services) imports nubis.progs.vm (progs)"
    ]
    assert into_the_agent(adding("nubis.desired", "nubis.agent.net.guard")) == [
        "nubis.desired imports nubis.agent.net.guard"
    ]
    assert out_of_the_agent(adding("nubis.agent.reconciler", "nubis.vms")) == [
        "nubis.agent.reconciler imports nubis.vms"
    ]
    assert cycles(adding("nubis.revisions", "nubis.hosts")) == [["nubis.hosts", "nubis.revisions"]]
