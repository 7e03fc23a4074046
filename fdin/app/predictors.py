"""What the app's handlers need from the models, as a small protocol, and the real implementation.

:class:`Predictors` is what :func:`fdin.app.build_demo` and :class:`fdin.app.handlers.Handlers` take:
an analyzer (video -> :class:`fdin.analyze.TraitResult`), a relation predictor (photos ->
:class:`fdin.relate.RelationResult`), a face backend (:class:`fdin.perception.FaceBackend`) and the
expression model (:class:`fdin.expression_fer.FerExpressionModel`).
:class:`LazyPredictors` (the default) loads the real ones on first use, once, thread-safely: building
the UI imports no torch and loads no weights. Tests pass fakes with the same methods. No gradio.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from fdin.app.settings import MODEL_THREADS, analysis_workers, model_source

if TYPE_CHECKING:
    from fdin.analyze import TraitResult
    from fdin.perception import FaceBackend
    from fdin.progress import ProgressFn
    from fdin.relate import RelationResult

log = logging.getLogger(__name__)


class Analyzer(Protocol):
    def analyze(self, video_or_path: Any, *, progress: ProgressFn | None = None) -> TraitResult: ...


class Relator(Protocol):
    def relate(self, image_a: Any, image_b: Any = None, *, progress: ProgressFn | None = None) -> RelationResult: ...


class Predictors(Protocol):
    """The model roles the app serves; each call may load (once) and returns a shared predictor."""

    def analyzer(self) -> Analyzer: ...

    def relation(self) -> Relator: ...

    def backend(self) -> FaceBackend: ...

    def expression(self) -> Any: ...


class LazyPredictors:
    """The real predictors, created on first use from the sources of :func:`fdin.app.settings.model_source`.
    Thread-safe: the first caller of each loads it once; the predictors hold weights only (no per-request
    state), so every user shares them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()           # the analyzer's
        self._relation_lock = threading.Lock()  # the relation models' (a photo request never waits on FDIN)
        self._analyzer: Any = None
        self._relation: Any = None
        self._expression: Any = None

    def backend(self) -> Any:
        from fdin.perception import get_backend

        return get_backend()  # fdin.perception keeps one shared instance per backend

    def expression(self) -> Any:
        """The FER2013 expression model (shared by the Faces tab and the relation predictor; loaded under
        the relation models' lock, so a photo request never waits on FDIN)."""
        with self._relation_lock:
            if self._expression is None:
                from fdin.expression_fer import FerExpressionModel

                source, revision = model_source("expression")
                self._expression = FerExpressionModel.from_pretrained(source, revision=revision,
                                                                      threads=MODEL_THREADS)
            return self._expression

    def analyzer(self) -> Any:
        with self._lock:
            if self._analyzer is None:
                from fdin.analysis_pool import PooledAnalyzer
                from fdin.analyze import DynamicsAnalyzer

                t0 = time.perf_counter()
                (gender, gender_rev), (age, age_rev) = model_source("gender"), model_source("age")
                sources = {"gender_weights": gender, "gender_revision": gender_rev, "age_weights": age,
                           "age_revision": age_rev}
                # Videos arrive decoded (in the sandboxed child): no decode worker. Each analysis runs in
                # one of the analysis worker processes, so two run on two cores (fdin.analysis_pool).
                workers = analysis_workers()
                self._analyzer = (PooledAnalyzer(workers=workers, decode_worker=False, **sources) if workers
                                  else DynamicsAnalyzer(decode_worker=False, **sources))
                log.info("FDIN models loaded in %.1f s", time.perf_counter() - t0)
            return self._analyzer

    def close(self) -> None:
        """Stop the analyzer's worker processes (if it was loaded); a later request loads it again."""
        with self._lock:
            analyzer, self._analyzer = self._analyzer, None
        if analyzer is not None:
            analyzer.close()

    def relation(self) -> Any:
        expression = self.expression()
        with self._relation_lock:
            if self._relation is None:
                from fdin.models.pretrained import load_pretrained
                from fdin.relate import RelationPredictor

                t0 = time.perf_counter()
                relation, relation_rev = model_source("relation")
                self._relation = RelationPredictor(expression=expression, threads=MODEL_THREADS,
                                                   relation=load_pretrained(relation, revision=relation_rev))
                log.info("relation model loaded in %.1f s", time.perf_counter() - t0)
            return self._relation


def preload(predictors: Any) -> threading.Thread:
    """Load every model of ``predictors`` in a background daemon thread, now: the relation models
    first (a photo request wants an answer in about a second), then the analyzer (FDIN, its face
    backend and its analysis worker processes), so the first request after start pays no loading. A request that arrives meanwhile waits on the same lock for the same load
    (nothing is loaded twice). Errors are logged, not raised: the request that needs the model
    raises them again. Returns the thread (``join()`` it to wait)."""

    def load() -> None:
        t0 = time.perf_counter()
        try:
            predictors.relation()
            predictors.analyzer().load_models()  # with the analysis workers' models
        except Exception:
            log.exception("preloading the models failed; the first request will try again")
            return
        log.info("models preloaded in %.1f s", time.perf_counter() - t0)

    thread = threading.Thread(target=load, name="fdin-preload", daemon=True)
    thread.start()
    return thread
