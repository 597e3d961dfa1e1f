"""The package's architecture, checked from its source: layers point down, no cycles.

Layers, lowest first: the base modules (``_checks``, ``_compat``, ``_dtypes``, ``params``,
``optim``, ``data``), then ``nn``, ``parallel``; ``distributions`` and ``flows``; ``models``;
``infer`` and ``diagnostics``; ``training``; ``zoo``, ``report``, ``runs``, ``cli``. A module may
import from its own layer and below (``models/`` and ``distributions/`` never import
``infer/`` or ``training/``; ``parallel/`` imports neither ``training/`` nor ``infer/``),
no module imports another module's ``_private`` name, and the graph of imports between
modules (module-level and inside functions) has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent / "pyro_genmodels"

LAYERS = {
    "_checks": 0,
    "_compat": 0,
    "_dtypes": 0,
    "params": 0,
    "optim": 0,
    "data": 0,
    "nn": 1,
    "parallel": 1,
    "distributions": 2,
    "flows": 2,
    "models": 3,
    "infer": 4,
    "diagnostics": 4,
    "training": 5,
    "zoo": 6,
    "report": 6,
    "runs": 6,
    "cli": 6,
    "__main__": 7,
    "__init__": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of the package that ``name`` (a module or ``module.attribute``) is."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, str | None]]:
    """``(imported module, imported name or None)`` of every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.append((base, alias.name))
    return [(m, n) for m, n in found if m.split(".")[0] == "pyro_genmodels"]


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


EDGES = {
    module: {
        target
        for imported, name in _imports(module)
        for target in [_resolve(f"{imported}.{name}" if name else imported)]
        if target is not None and target != module
    }
    for module in MODULES
}


def test_the_layers_are_complete():
    top = {m.split(".")[1] for m in MODULES if "." in m}
    assert top <= set(LAYERS), f"give these a layer: {sorted(top - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    upward = sorted(t for t in EDGES[module] if _layer(t) > _layer(module))
    assert not upward, f"{module} imports from a higher layer: {upward}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_of_another_module_is_imported(module):
    private = sorted(
        f"{imported}.{name}"
        for imported, name in _imports(module)
        if name is not None
        and name.startswith("_")
        and not name.startswith("__")
        and f"{imported}.{name}" not in MODULES  # a package's private module is its own
    )
    assert not private, f"{module} imports private names: {private}"


def test_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(EDGES[module]):
            if target.endswith("__init__") or MODULES[target].name == "__init__.py":
                continue  # a package's re-exports are not a dependency of its modules
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if state.get(target) is None:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(MODULES):
        if state.get(module) is None:
            visit(module)


def _functions(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = node.body[0]
                docstring = (
                    first.end_lineno - first.lineno + 1
                    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    else 0
                )
                yield f"{path.relative_to(ROOT)}:{node.name}", node, docstring


@pytest.mark.parametrize("package", ["training", "parallel"])
def test_the_runtime_has_no_function_over_60_lines(package):
    """Lines of code, the docstring left out (``fit``'s documents every argument)."""
    long = [
        f"{name} ({node.end_lineno - node.lineno + 1 - doc} lines)"
        for name, node, doc in _functions(package)
        if node.end_lineno - node.lineno + 1 - doc > 60
    ]
    assert not long, long


def _bench_extra() -> set[str]:
    """The top-level module names of the ``bench`` extra's packages (pyproject.toml's
    ``bench = [...]`` line; ``tomllib`` needs Python 3.11)."""
    import re

    text = (ROOT.parent / "pyproject.toml").read_text()
    line = re.search(r"^bench = \[(.*)\]", text, re.MULTILINE)
    assert line is not None, "pyproject.toml has no bench extra"
    names = re.findall(r'"([A-Za-z0-9_.-]+)', line.group(1))
    return {name.replace("-", "_") for name in names}


def test_no_module_imports_a_benchmark_peer():
    """The peers that ``benchmarks/`` compares against (the ``bench`` extra: zuko, normflows,
    torchebm, pythae) are never imported by the package, not even inside a function."""
    peers = _bench_extra()
    assert "pythae" in peers
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & peers, f"{module} imports {sorted(roots & peers)}"
