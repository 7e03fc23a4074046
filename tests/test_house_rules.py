"""Static house rules that protect users: no pickle loading, no unpinned downloads, gradio only in
fdin/ui.py, cheap imports. These scan the source tree, so a regression fails CI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("fdin/**/*.py"), *ROOT.glob("train/**/*.py"), ROOT / "app.py"])
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


def test_only_ui_imports_gradio() -> None:
    offenders = []
    for path in SOURCES:
        if path.name in {"ui.py", "app.py"}:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "gradio" or n.startswith("gradio.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"gradio imported outside fdin/ui.py: {offenders}"


def test_importing_fdin_is_cheap() -> None:
    code = ("import sys, fdin, fdin.cli, fdin.errors, fdin.weights, fdin.perception.types; "
            "heavy = [m for m in ('torch', 'gradio', 'av', 'onnxruntime', 'dlib', 'timm') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"importing fdin pulled in heavy modules: {out.stdout.strip()}"
