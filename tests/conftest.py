"""Shared fixtures. Environment set before anything imports gradio or huggingface_hub."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


# --- worker processes end with their owner -------------------------------------------------------------
#: Seconds a worker may take to exit once its owner is gone (closed, or collected: its stdin closes).
WORKER_EXIT_S = 5.0


@pytest.fixture(scope="module", autouse=True)
def no_worker_outlives_its_module():
    """Fails the module whose analyzers, pools or app predictors leave worker processes running
    (:class:`fdin.isolation.workers.LineWorker` children of this process) after its tests and
    fixtures are done: each such worker holds models (~0.5 GB) until the test session ends.
    Autouse and module-scoped, so it is set up first and checked after the module's own fixtures."""
    import gc
    import time

    from tests.isolation_helpers import worker_pids

    before = set(worker_pids())
    yield
    deadline = time.monotonic() + WORKER_EXIT_S
    left = set(worker_pids()) - before
    if left:
        gc.collect()  # an owner nobody refers to any more closes its workers' pipes when collected
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = set(worker_pids()) - before
    if left:
        import os
        from pathlib import Path

        commands = sorted({Path(f"/proc/{pid}/cmdline").read_bytes().split(b"from ")[-1].split(b" import")[0]
                           .decode(errors="replace") for pid in left if os.path.exists(f"/proc/{pid}/cmdline")})
        pytest.fail(f"{len(left)} worker process(es) outlived this module's tests: {commands}; close the "
                    "analyzers, pools and predictors a test or fixture makes", pytrace=False)


# --- test tiers -----------------------------------------------------------------------------------
# `make check` runs `pytest -m fast`: the modules below (minus anything marked slow or browser) plus
# tests marked `fast` explicitly. They load no model weights, start no server and spawn few child
# processes, so the tier stays under a minute on two shared cores. `make test` runs everything.
FAST_MODULES = {
    "test_adapters.py", "test_app_fast.py", "test_bench.py", "test_fdin_model.py", "test_house_rules.py",
    "test_json_keys.py", "test_labels.py", "test_media.py", "test_regions_dynamics.py", "test_reliability.py",
    "test_versions.py", "test_weights.py", "test_layers.py", "test_geometry.py", "test_onnx_runtime.py",
    "test_media_package.py",
}


def pytest_ignore_collect(collection_path, config):
    """With ``-m fast`` only the fast modules are imported (importing the others costs the time)."""
    if config.getoption("markexpr", "") != "fast":
        return None
    if collection_path.is_dir():
        return collection_path.name == "e2e" or None
    return True if collection_path.name.startswith("test_") and collection_path.name not in FAST_MODULES else None


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.path.name in FAST_MODULES and not any(any(item.iter_markers(name)) for name in ("slow", "browser")):
            item.add_marker(pytest.mark.fast)
