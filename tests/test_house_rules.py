"""Static house rules that protect users: no pickle loading, no unpinned downloads, gradio only in
fdin/app/ (and app.py), cheap imports, small files. These scan the source tree, so a regression fails CI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("fdin/**/*.py"), *ROOT.glob("train/**/*.py"), *ROOT.glob("benchmarks/**/*.py"),
                  ROOT / "app.py"])
SOURCES = [p for p in SOURCES if p.exists()]


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pickle_loading_paths(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for call in _calls(tree):
        name = _dotted(call.func)
        assert name not in {"pickle.load", "pickle.loads", "torch.load", "joblib.load", "np.load", "numpy.load"} \
            or any(k.arg == "allow_pickle" and getattr(k.value, "value", None) is False for k in call.keywords), \
            f"{path.name}:{call.lineno} calls {name} (pickle path); use safetensors or allow_pickle=False"
        for keyword in call.keywords:
            if keyword.arg == "weights_only":
                assert getattr(keyword.value, "value", None) is not False, f"{path.name}:{call.lineno} weights_only=False"
        if name.endswith(("hf_hub_download", "snapshot_download")):
            assert any(k.arg == "revision" for k in call.keywords), \
                f"{path.name}:{call.lineno} downloads from the Hub without a pinned revision"


def test_only_the_app_package_imports_gradio() -> None:
    offenders = []
    for path in SOURCES:
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("fdin", "app") or rel == Path("app.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "gradio" or n.startswith("gradio.") for n in names):
                offenders.append(str(rel))
    assert offenders == [], f"gradio imported outside fdin/app/: {offenders}"


def test_the_runtime_library_holds_no_benchmark_or_training_code() -> None:
    names = {p.name for p in ROOT.glob("fdin/**/*.py")}
    assert not names & {"bench.py", "_bench_facemesh.py", "measure.py", "synth_faces.py", "propagation.py"}
    for path in ROOT.glob("fdin/**/*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            assert not any(n.split(".")[0] in {"benchmarks", "train", "tests"} for n in names), \
                f"{path.relative_to(ROOT)} imports repo-only code ({names})"


# The app package and the files this layout owns stay small; the rest of fdin/ follows as it is split.
MAX_LINES = 400
SMALL = ["fdin/app/*.py", "fdin/results.py", "fdin/labels.py", "fdin/progress.py", "fdin/config.py",
         "fdin/faces.py", "fdin/relate.py", "fdin/viz.py", "fdin/commands/*.py"]


@pytest.mark.parametrize("pattern", SMALL)
def test_files_stay_small(pattern: str) -> None:
    long = {str(p.relative_to(ROOT)): n for p in ROOT.glob(pattern)
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these files (over {MAX_LINES} lines): {long}"


def test_importing_fdin_is_cheap() -> None:
    code = ("import sys, fdin, fdin.cli, fdin.errors, fdin.weights, fdin.perception.types, fdin.results, "
            "fdin.labels, fdin.progress, fdin.config, fdin.app.settings, fdin.app.predictors, fdin.app.texts; "
            "heavy = [m for m in ('torch', 'gradio', 'av', 'onnxruntime', 'dlib', 'timm') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"importing fdin pulled in heavy modules: {out.stdout.strip()}"
