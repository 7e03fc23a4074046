"""The app's ``gr.Blocks`` with its event-level guards (gradio is imported here).

:class:`GuardedBlocks` wraps every event the server runs (queued or not, whatever route it came in by):

* **before** Gradio touches the arguments: a text argument longer than
  :data:`~fdin.app.settings.MAX_TEXT_CHARS`, any string in a file reference longer than 4096
  characters (``data:`` URLs of streamed frames are bounded by the request-body limit instead), or a value outside a dropdown's choices is refused with one fixed sentence — the value
  itself is never echoed back or logged (only its type and size);
* **after** the handler: a failure in Gradio's own pre/post-processing (encoding an output, building
  the response) becomes the fixed :data:`~fdin.app.texts.GENERIC_ERROR` instead of Gradio's
  "verbose error reporting" text; it is logged with the exception type only.

:func:`seal_events` runs after the layout is built: every event that is not one of the documented
endpoints (the example loaders Gradio adds, the consent toggle, the matrix redraw) is made
``api_visibility="private"``, so it is neither listed by ``/gradio_api/info`` nor offered to the
client libraries.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
from gradio.route_utils import CustomCORSMiddleware

from fdin.app import settings
from fdin.app.guard import same_origin
from fdin.app.texts import ARGUMENT_TOO_LONG, GENERIC_ERROR, UNKNOWN_TRAIT

log = logging.getLogger(__name__)

MAX_REFERENCE_CHARS = 4096  # a path, URL or original file name inside a file reference


def _longest_string(value: Any, depth: int = 0) -> int:
    if isinstance(value, str):  # data: URLs (streamed webcam frames) are bounded by the body limit instead
        return 0 if value.startswith("data:") else len(value)
    if depth > 6:
        return 0
    if isinstance(value, dict):
        return max([_longest_string(v, depth + 1) for v in value.values()] + [len(str(k)) for k in value] + [0])
    if isinstance(value, (list, tuple)):
        return max([_longest_string(v, depth + 1) for v in value[:1000]] + [0])
    return 0


def check_arguments(block_fn: Any, inputs: list[Any]) -> None:
    """Refuse over-long or unknown arguments before any preprocessing (raises ``gr.Error``)."""
    for block, value in zip(getattr(block_fn, "inputs", []) or [], inputs or [], strict=False):
        if isinstance(value, str):
            if len(value) > settings.MAX_TEXT_CHARS:
                log.info("refused a %d-character text argument", len(value))
                raise gr.Error(ARGUMENT_TOO_LONG, print_exception=False)
        elif _longest_string(value) > MAX_REFERENCE_CHARS:
            log.info("refused an argument of type %s holding an over-long string", type(value).__name__)
            raise gr.Error(ARGUMENT_TOO_LONG, print_exception=False)
        choices = getattr(block, "choices", None)
        if (isinstance(block, gr.Dropdown) and choices and not getattr(block, "allow_custom_value", False)
                and not getattr(block, "multiselect", False) and value is not None):
            allowed = {c[1] if isinstance(c, (tuple, list)) else c for c in choices}
            if not isinstance(value, (str, int, float)) or value not in allowed:
                log.info("refused a %s outside the choices of a dropdown", type(value).__name__)
                raise gr.Error(UNKNOWN_TRAIT, print_exception=False)


class GuardedBlocks(gr.Blocks):
    """``gr.Blocks`` whose events are checked and whose failures all read as one clear sentence.
    Its queue admits live streams apart from the model events (:mod:`fdin.app.admission`, installed
    by :meth:`queue` and again at :meth:`launch`), and its server allows only its own origin
    (:func:`install_cors`)."""

    def queue(self, *args: Any, **kwargs: Any) -> GuardedBlocks:
        super().queue(*args, **kwargs)
        self._install_admission()
        return self

    def _install_admission(self) -> None:
        admission = getattr(self, "fdin_admission", None)
        if admission is not None and getattr(self, "_queue", None) is not None:
            admission.install(self._queue)

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        install_cors()
        self._install_admission()
        return super().launch(*args, **kwargs)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Close the server, then stop the worker processes of the predictors the app was built with
        (``fdin_predictors``: their analysis pool holds models in other processes)."""
        try:
            return super().close(*args, **kwargs)
        finally:
            stop = getattr(getattr(self, "fdin_predictors", None), "close", None)
            if stop is not None:
                stop()

    async def process_api(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        check_arguments(fn, inputs)
        try:
            return await super().process_api(block_fn, inputs, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # Gradio's pre/post-processing outside the handlers' own wrapper
            log.error("event %s failed outside its handler: %s", getattr(fn, "api_name", None) or "(unnamed)",
                      type(error).__name__)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from None
        finally:
            forget_streamed_values(fn, kwargs.get("state", args[0] if args else None))


def forget_streamed_values(fn: Any, state: Any) -> None:
    """Gradio copies every input and output value of an event into the session's config (for deep
    links): for the live stream that is the visitor's last webcam frame and its overlay, kept until
    the session is evicted. Blank them after each frame (the live state itself stays: it is the
    session's buffer, bounded and budgeted by :mod:`fdin.app.livebudget`)."""
    if state is None or getattr(fn, "concurrency_id", None) != "live":
        return
    values = getattr(state, "config_values", None) or {}
    for block in [*(getattr(fn, "inputs", None) or []), *(getattr(fn, "outputs", None) or [])]:
        if getattr(block, "stateful", False):
            continue
        entry = values.get(getattr(block, "_id", None))
        if isinstance(entry, dict) and isinstance(entry.get("props"), dict):
            entry["props"]["value"] = None


class OwnOriginCORSMiddleware(CustomCORSMiddleware):
    """Gradio's CORS middleware with one rule on every host: a cross-origin request is allowed only
    from the app's own origin (:func:`fdin.app.guard.same_origin`). Gradio's allowed any ``Origin``,
    with credentials, once the ``Host`` was not localhost (a public Space)."""

    def is_valid_origin(self, request_headers: Any) -> bool:
        return same_origin(request_headers.get("origin"), request_headers.get("host"))


def install_cors() -> None:
    """Make Gradio build its app with :class:`OwnOriginCORSMiddleware`. Gradio adds its CORS
    middleware itself, outside every middleware an app can pass in, so its pre-flight answer cannot
    be corrected from inside; replacing the class it instantiates is the one place. Idempotent;
    the CORS tests fail if a Gradio upgrade stops using it."""
    import gradio.routes as routes

    routes.CustomCORSMiddleware = OwnOriginCORSMiddleware  # type: ignore[misc]


def seal_events(demo: gr.Blocks, public: set[str]) -> None:
    """Make every event whose ``api_name`` is not in ``public`` private (not listed, not offered)."""
    for fn in demo.fns.values():
        if fn.api_name not in public:
            fn.api_visibility = "private"


__all__ = ["GuardedBlocks", "OwnOriginCORSMiddleware", "check_arguments", "forget_streamed_values", "install_cors",
           "seal_events"]
