"""fdin.onnx_runtime: provider choice (CUDA first on an onnxruntime-gpu build, CPU otherwise), the
session options it sets, and the export cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime")

from fdin import onnx_runtime  # noqa: E402


@pytest.mark.parametrize(("available", "expected"), [
    (["CPUExecutionProvider"], ["CPUExecutionProvider"]),                         # the plain wheel
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),                          # only what fdin has tested
    (["CPUExecutionProvider", "CUDAExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["AzureExecutionProvider"], ["CPUExecutionProvider"]),
])
def test_provider_choice_follows_the_installed_build(monkeypatch: pytest.MonkeyPatch, available: list[str],
                                                     expected: list[str]) -> None:
    monkeypatch.delenv("FDIN_ONNX_PROVIDERS", raising=False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
    assert onnx_runtime.choose_providers() == expected
    assert onnx_runtime.choose_providers(available) == expected


def test_cpu_can_be_forced_on_a_gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setenv("FDIN_ONNX_PROVIDERS", "cpu")
    assert onnx_runtime.choose_providers() == ["CPUExecutionProvider"]


def test_sessions_get_the_chosen_providers_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    class FakeSession:
        def __init__(self, source, sess_options, providers):
            seen.update(source=source, options=sess_options, providers=providers)

    monkeypatch.delenv("FDIN_ONNX_PROVIDERS", raising=False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    onnx_runtime.create_session(Path("m.onnx"), threads=2, inter_op_threads=1, spinning=False, optimize=False)
    assert seen["source"] == "m.onnx" and seen["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    options = seen["options"]
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    onnx_runtime.create_session(b"bytes", providers=["CPUExecutionProvider"])
    assert seen["source"] == b"bytes" and seen["providers"] == ["CPUExecutionProvider"]


def test_export_cache_is_under_the_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path))
    assert onnx_runtime.export_cache_dir() == tmp_path / "onnx"
    assert not (tmp_path / "onnx").exists(), "a lookup leaves no trace; the exporter creates the folder"
