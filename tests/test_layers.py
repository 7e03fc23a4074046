"""House rule: fdin is built in layers, and imports only go down.

Every import in ``fdin/**`` (module level and inside functions, ``TYPE_CHECKING`` blocks too) is read
with :mod:`ast`. A module may import modules of its own layer or of a lower one, never of a higher
one; the module graph has no cycle; and no module imports a private name (``_x``) from another one
(tests included). A new module must be placed in :data:`LAYERS` (the test says so).

    bottom      errors, labels, config, progress, weights, geometry, onnx_runtime  (no fdin layer above)
    media       fdin.media.*, fdin.isolation.*     decoding untrusted files
    perception  fdin.perception.*                  faces, landmarks, pose, tracking
    dynamics    regions, alignment, dynamics, warp, synth
    models      fdin.models.*                      networks and their loaders
    predictors  analyze, relate, faces, results, commands.*
    viz         fdin.viz
    app         fdin.app.*, fdin.ui, fdin.cli, fdin.__main__
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layer name -> module names (a trailing ``.*`` takes the package and everything below it).
LAYERS: dict[str, tuple[str, ...]] = {
    "bottom": ("fdin", "fdin.errors", "fdin.labels", "fdin.config", "fdin.progress", "fdin.weights",
               "fdin.geometry", "fdin.onnx_runtime"),
    "media": ("fdin.media.*", "fdin.isolation.*"),
    "perception": ("fdin.perception.*",),
    "dynamics": ("fdin.regions", "fdin.alignment", "fdin.dynamics", "fdin.warp", "fdin.synth"),
    "models": ("fdin.models.*",),
    "predictors": ("fdin.analyze", "fdin.analysis_pool", "fdin.relate", "fdin.faces", "fdin.expression_fer", "fdin.results", "fdin.commands.*"),
    "viz": ("fdin.viz",),
    "app": ("fdin.app.*", "fdin.ui", "fdin.cli", "fdin.__main__"),
}
ORDER = list(LAYERS)

#: Modules moved out of ``fdin/`` (to ``benchmarks/`` and ``train/``): tolerated at the
#: top while they are still here. Remove this table once they are gone.
LEAVING: tuple[str, ...] = ()

#: (importing file, module, private name) pairs still allowed; delete each entry when its import is
#: gone (the test fails on a stale entry).
PRIVATE_IMPORTS_TO_REMOVE: set[tuple[str, str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.glob("fdin/**/*.py"))}


def layer_of(module: str) -> str | None:
    if module in LEAVING:
        return "app"
    for layer, patterns in LAYERS.items():
        for pattern in patterns:
            if pattern.endswith(".*"):
                if module == pattern[:-2] or module.startswith(pattern[:-1]):
                    return layer
            elif module == pattern:
                return layer
    return None


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """``(module, imported name or "", line)`` for every fdin import in ``path``. ``from fdin import x``
    where ``fdin.x`` is a module counts as importing that module."""
    module = _module_name(path) if path.is_relative_to(ROOT / "fdin") else ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "fdin"]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([target] if target else [])])
            if target.split(".")[0] != "fdin":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"place these modules in tests/test_layers.py LAYERS: {missing}"


def test_no_upward_imports() -> None:
    bad = []
    for module, path in MODULES.items():
        here = layer_of(module)
        if here is None:
            continue
        for target, _, line in _imports(path):
            there = layer_of(target)
            if there is not None and ORDER.index(there) > ORDER.index(here):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {target} ({there})")
    assert not bad, "imports must go down the layers:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _private_imports() -> set[tuple[str, str, str]]:
    files = [*ROOT.glob("fdin/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("train/**/*.py"),
             *ROOT.glob("benchmarks/**/*.py"), ROOT / "app.py"]
    found = set()
    for path in files:
        if not path.is_file():
            continue
        for target, name, _ in _imports(path):
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                found.add((str(path.relative_to(ROOT)), target, name))
    return found


def test_no_private_names_imported_across_modules() -> None:
    found = _private_imports()
    offenders = sorted(found - PRIVATE_IMPORTS_TO_REMOVE)
    assert not offenders, "make these public or keep them inside their module: " + ", ".join(
        f"{f}: from {m} import {n}" for f, m, n in offenders)
    stale = sorted(PRIVATE_IMPORTS_TO_REMOVE - found)
    assert not stale, f"remove these fixed entries from PRIVATE_IMPORTS_TO_REMOVE: {stale}"


@pytest.mark.parametrize(("module", "layer"), [("fdin.media.decode", "media"), ("fdin.perception", "perception"),
                                               ("fdin.app.handlers", "app"), ("fdin.weights", "bottom"),
                                               ("fdin.mediax", None)])
def test_layer_table_matches_packages_exactly(module: str, layer: str | None) -> None:
    assert layer_of(module) == layer
