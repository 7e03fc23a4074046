"""The app preloads its models in the background; the switch and the settings."""

from __future__ import annotations

import threading

import pytest

from fdin.app import settings
from fdin.app.predictors import preload

pytestmark = pytest.mark.fast


class _Counting:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail
        outer = self

        class _Analyzer:
            def load_models(self) -> None:
                outer.calls.append("load_models")

        self._analyzer = _Analyzer()

    def analyzer(self):
        self.calls.append("analyzer")
        if self.fail:
            raise RuntimeError("weights missing")
        return self._analyzer

    def relation(self):
        self.calls.append("relation")
        return object()


def test_preload_loads_every_model_once_in_a_background_thread() -> None:
    predictors = _Counting()
    thread = preload(predictors)
    assert isinstance(thread, threading.Thread) and thread.daemon and thread is not threading.current_thread()
    thread.join(10)
    assert predictors.calls == ["relation", "analyzer", "load_models"]


def test_preload_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    predictors = _Counting(fail=True)
    preload(predictors).join(10)
    assert predictors.calls == ["relation", "analyzer"]
    assert "preloading the models failed" in caplog.text


@pytest.mark.parametrize(("value", "expected"), [("", settings.PRELOAD_MODELS), ("0", False), ("off", False),
                                                 ("1", True), ("yes", True)])
def test_preload_switch(value: str, expected: bool) -> None:
    assert settings.preload_enabled({"FDIN_PRELOAD": value}) is expected
