"""The package structure holds: no import cycle, private modules stay private, every
package states its API, and the dependency arrows point one way.

The import graph is read from the source (every ``import`` statement, at module level or
inside a function, except those under ``if TYPE_CHECKING:``), so a cycle that only a
lazy import closes counts too.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT_PKG = "licentia"


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module
    names: tuple[str, ...]  # names taken from it (empty for `import x`)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / ROOT_PKG).rglob("*.py")) if "migrations" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST):  # type: ignore[no-untyped-def]
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (n for other in child.orelse for n in [other, *_walk(other)])
            continue
        yield child
        yield from _walk(child)


def _imports(name: str, path: Path, known: set[str]) -> list[Import]:
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT_PKG:
                    out.append(Import(name, alias.name, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT_PKG:
                continue
            names = tuple(a.name for a in node.names)
            submodules = [n for n in names if f"{target}.{n}" in known]
            if len(submodules) < len(names):  # names defined in the module (or package) itself
                out.append(Import(name, target, names, node.lineno))
            for n in submodules:  # `from pkg import submodule` imports the submodule
                out.append(Import(name, f"{target}.{n}", (), node.lineno))
    return out


MODULES = _modules()
IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path, set(MODULES))]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    # the walker sees the imports it must see, or every other check here would pass vacuously
    targets = {(i.source, i.target) for i in IMPORTS}
    assert ("licentia.runtime._runtime", "licentia.runtime._handle") in targets
    assert ("licentia.runtime._runtime", "licentia.runtime._leases") in targets  # a lazy import counts
    assert ("licentia.runtime._leases", "licentia.runtime._netclient") in targets
    assert len(MODULES) > 60


def test_no_import_cycle_in_src():
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _package_of(module: str) -> str:
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def test_private_modules_and_names_stay_in_their_package():
    """An underscore module (or name) is private to its own package: httpx's rule."""
    crossing = []
    for imp in IMPORTS:
        importer = _package_of(imp.source)
        parts = imp.target.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])
                if importer != owner and not importer.startswith(owner + ".") and owner != ROOT_PKG:
                    crossing.append(f"{imp.source}:{imp.line} imports {imp.target}")
                break
        if imp.target in MODULES and _package_of(imp.target) != importer:
            for n in imp.names:
                if n.startswith("_") and not n.startswith("__") and f"{imp.target}.{n}" not in MODULES:
                    crossing.append(f"{imp.source}:{imp.line} imports {n} from {imp.target}")
    assert crossing == []


PACKAGES = sorted(name for name, path in MODULES.items() if path.name == "__init__.py")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_states_its_api(package):
    module = importlib.import_module(package)
    assert isinstance(getattr(module, "__all__", None), list), f"{package} has no __all__"
    missing = [
        n for n in module.__all__ if not hasattr(module, n) and importlib.util.find_spec(f"{package}.{n}") is None
    ]
    assert missing == []
    assert len(set(module.__all__)) == len(module.__all__)


# what each part may import from licentia (ARCHITECTURE: the arrows point one way)
ALLOWED = {
    "licentia.core": {"licentia.core"},
    "licentia.container": {"licentia.core", "licentia.container"},
    "licentia.client": {"licentia.core", "licentia.client"},
    "licentia.runtime": {"licentia.core", "licentia.container", "licentia.client", "licentia.runtime"},
    "licentia.seats": {"licentia.core", "licentia.seats"},
    "licentia.roi": {"licentia.core", "licentia.roi"},
    "licentia.protect": {
        "licentia.core",
        "licentia.container",
        "licentia.client",
        "licentia.runtime",
        "licentia.protect",
    },
}


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_dependency_arrows_point_one_way(part):
    wrong = sorted(
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if _part(imp.source) == part and imp.target != ROOT_PKG and _part(imp.target) not in ALLOWED[part]
    )
    assert wrong == []


# concrete kinds behind the Container and Grant interfaces, and the module of each
KINDS = {"MachineContainer": "licentia.container.machine", "Lease": "licentia.runtime._leases"}


def test_no_isinstance_on_a_concrete_kind():
    """The runtime, the server and the protector talk to the interfaces, never ask for a kind."""
    found = []
    for name, path in MODULES.items():
        seen = {n for imp in IMPORTS if imp.source == name for n in imp.names if KINDS.get(n) == imp.target}
        seen |= {n for n, home in KINDS.items() if home == name}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                classes = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                for cls in classes:
                    kind = cls.attr if isinstance(cls, ast.Attribute) else getattr(cls, "id", None)
                    if kind in KINDS and KINDS[kind] != name and (kind in seen or kind == "MachineContainer"):
                        found.append(f"{name}:{node.lineno} isinstance(..., {kind})")
    assert found == []
