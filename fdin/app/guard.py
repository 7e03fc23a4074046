"""The app's HTTP guard: request-body limits, the per-client upload quota and response
header hygiene, as one small ASGI middleware. No gradio here (Starlette-level only).

* **Bodies.** Every request that is not a file upload may carry at most
  :data:`~fdin.app.settings.MAX_BODY_BYTES` (event payloads are file references, a trait name, a
  checkbox): a declared ``Content-Length`` above it is refused with 413 before anything is read, and a
  chunked body is cut off with 413 as soon as it passes the limit. Uploads are bounded per file by
  Gradio's ``max_file_size`` and in total per client by the quota below.
* **Upload quota.** Each client (the rate-limit key: its IP, or the proxy's ``X-Forwarded-For`` entry
  on a Space) may upload :data:`~fdin.app.settings.UPLOAD_QUOTA_BYTES` per
  :data:`~fdin.app.settings.UPLOAD_QUOTA_WINDOW_S` (a sliding window). A request whose declared
  length would pass the quota is refused with 429 before its body is read; bytes actually received
  count, so a missing or lying ``Content-Length`` is cut off with 429 at the quota.
* **Routes.** Gradio routes the app never uses (:data:`DENIED_PREFIXES`) answer 404, and so does
  every route that replays a session's state to whoever names it: ``/gradio_api/deep_link``
  (it wrote a session's last webcam frame, overlay and table into the file cache and turned them
  into a link), any page asked for with a ``deep_link`` query, and the ``GET`` replays of streamed
  outputs under ``/gradio_api/stream/<session>/...`` (the webcam's ``POST`` frame route stays).
* **Origins.** :class:`fdin.app.blocks.OwnOriginCORSMiddleware` replaces Gradio's CORS middleware
  (with :func:`same_origin`): a cross-origin request is allowed only from the app's own origin (the
  ``Host`` it was sent to, or ``FDIN_ALLOWED_ORIGINS`` / ``https://$SPACE_HOST``), on every host —
  Gradio allowed any ``Origin`` with credentials once the ``Host`` was not localhost.
* **Security headers.** Every response carries :data:`SECURITY_HEADERS`: a CSP whose
  ``frame-ancestors`` allows only the app itself and the Hugging Face Space embed
  (``huggingface.co``, ``*.hf.space``), ``X-Content-Type-Options: nosniff``, a referrer policy.
* **Headers.** Gradio answers ``Range`` requests with a copy of the *request's* headers (cookies
  included); response headers that only belong in requests are dropped.
* **No server path.** :class:`PathAlias`: the cache folder's absolute path never leaves the server.
* **Logs.** Refusals are logged with sizes and the route kind only, never a body, a path argument or
  a client address (R-31).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Header names that only make sense in a request; never sent back in a response.
REQUEST_ONLY_HEADERS = frozenset({
    "cookie", "authorization", "proxy-authorization", "host", "user-agent", "referer", "origin", "range",
    "accept", "accept-encoding", "accept-language", "connection", "content-length", "if-range",
    "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "x-forwarded-for",
    "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded", "upgrade-insecure-requests", "te",
    "priority", "dnt", "pragma", "cache-control-request",
})
UPLOAD_SUFFIXES = ("/gradio_api/upload",)
#: Gradio routes the app never uses, refused with 404 before Gradio sees them: post-processing a screen
#: recording with the system ffmpeg, fetching a URL for the client (an outbound proxy), the developer
#: and "vibe" editor routes, run history, and component server functions (no fdin component has one).
DENIED_PREFIXES = tuple("/gradio_api/" + p for p in (
    "process_recording", "file=http", "file/http", "proxy=", "vibe-", "undo-vibe-edit", "dev/", "runs",
    "run-history", "component_server", "deep_link"))
#: ``GET`` routes under this prefix replay a session's streamed outputs; only ``POST`` (frames in,
#: close) is used by the live webcam.
STREAM_REPLAY_PREFIX = "/gradio_api/stream/"
#: Frames the app may be embedded in: itself and the Hugging Face Space page.
FRAME_ANCESTORS = "'self' https://huggingface.co https://*.huggingface.co https://*.hf.space"
#: Sent with every response (the Gradio page needs inline scripts and styles, ``eval`` for its
#: component loader, and data:/blob: URLs for webcam frames, overlays and plots).
SECURITY_HEADERS = (
    (b"content-security-policy",
     ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:; "
      "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; font-src 'self' data: https://fonts.gstatic.com; "
      "img-src 'self' data: blob:; media-src 'self' data: blob:; connect-src 'self' data: blob:; "
      "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
      f"frame-ancestors {FRAME_ANCESTORS}").encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS) | {b"x-frame-options"}


class _TooLarge(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class UploadQuota:
    """Bytes uploaded per client over a sliding window (thread-safe, bounded number of clients)."""

    def __init__(self, limit_bytes: int, window_s: float, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.max_clients, self._clock = int(limit_bytes), float(window_s), max_clients, clock
        self._log: dict[str, collections.deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def _used(self, key: str, now: float) -> int:
        entries = self._log.get(key)
        if not entries:
            return 0
        while entries and now - entries[0][0] > self.window_s:
            entries.popleft()
        return sum(n for _, n in entries)

    def remaining(self, key: str) -> int:
        with self._lock:
            return self.limit - self._used(key, self._clock())

    def add(self, key: str, nbytes: int) -> bool:
        """Count ``nbytes`` for ``key``; False (and nothing counted) if that would pass the quota."""
        if self.limit <= 0:
            return True
        now = self._clock()
        with self._lock:
            if self._used(key, now) + nbytes > self.limit:
                return False
            self._log.setdefault(key, collections.deque()).append((now, int(nbytes)))
            if len(self._log) > self.max_clients:  # drop clients with nothing left in the window
                for k in [k for k in self._log if self._used(k, now) == 0]:
                    self._log.pop(k, None)
            return True


def _client(scope: Scope) -> str:
    """The same key as :func:`fdin.app.ratelimit.client_key`, from the ASGI scope."""
    import os

    if os.environ.get("SPACE_ID") or os.environ.get("FDIN_TRUST_PROXY") == "1":
        for name, value in scope.get("headers") or []:
            if name == b"x-forwarded-for":
                hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                if hops:
                    return hops[-1]
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class GuardMiddleware:
    """ASGI middleware applying the limits of this module (see the module docstring)."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, max_body_bytes: int, quota: UploadQuota) -> None:
        """``max_body_bytes`` and ``quota`` come from :func:`fdin.app.settings.launch_kwargs`."""
        self.app = app
        self.max_body = int(max_body_bytes)
        self.quota = quota
        self._alias: PathAlias | None = None

    def alias(self) -> PathAlias | None:
        """The :class:`PathAlias` of this instance's Gradio cache (``GRADIO_TEMP_DIR``, set by
        :mod:`fdin.app.storage` before the app is built)."""
        import os

        folder = os.environ.get("GRADIO_TEMP_DIR", "").strip()
        if not folder or not folder.startswith("/"):
            return None
        if self._alias is None or self._alias.real != folder.rstrip("/").encode():
            self._alias = PathAlias(folder)
        return self._alias

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if path.lower().startswith(DENIED_PREFIXES) or _replays_session_state(scope, path):
            log.info("refused a request to a route the app does not use")
            await _refuse(send, _TooLarge(404, "Not Found"))
            return
        upload = path.rstrip("/").endswith(UPLOAD_SUFFIXES)
        declared = None
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        key = _client(scope) if upload else ""
        try:
            if upload:
                if declared is not None and declared > self.quota.remaining(key) and self.quota.limit > 0:
                    raise _TooLarge(429, "Upload quota exceeded: too much data uploaded from your connection "
                                         "recently. Please wait and try again.")
            elif declared is not None and declared > self.max_body:
                raise _TooLarge(413, f"Request body too large (limit {self.max_body // 1024} KB).")
        except _TooLarge as refusal:
            log.info("refused %s request: %d bytes declared (%s)", "upload" if upload else "event", declared or 0,
                     refusal.status)
            await _refuse(send, refusal)
            return

        received = 0
        started = False

        alias = self.alias()
        if alias is not None:
            scope = alias.unmask_scope(scope)
        held: list[Message] = []  # a text response, masked whole (its length changes)
        streamed = False           # an event stream: masked message by message
        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                n = len(message.get("body", b""))
                received += n
                if upload:
                    if not self.quota.add(key, n):
                        raise _TooLarge(429, "Upload quota exceeded: too much data uploaded from your "
                                             "connection recently. Please wait and try again.")
                elif received > self.max_body:
                    raise _TooLarge(413, f"Request body too large (limit {self.max_body // 1024} KB).")
                elif alias is not None and message.get("body"):
                    message["body"] = alias.unmask(message["body"])
            return message

        async def clean_send(message: Message) -> None:
            nonlocal started, streamed
            if message.get("type") == "http.response.start":
                started = True
                message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                      if k.decode("latin-1").lower() not in REQUEST_ONLY_HEADERS
                                      and k.lower() not in _SECURITY_NAMES] + list(SECURITY_HEADERS)
                kind = _text_kind(message["headers"]) if alias is not None else None
                if kind == b"text/event-stream":
                    streamed = True
                elif kind is not None:
                    held.append(message)
                    return
            elif message.get("type") == "http.response.body" and alias is not None:
                if streamed:
                    message = {**message, "body": alias.mask(message.get("body", b""))}
                elif held:
                    held.append(message)
                    if message.get("more_body", False):
                        return
                    head, parts = held[0], held[1:]
                    held.clear()
                    body = alias.mask(b"".join(m.get("body", b"") for m in parts))
                    head["headers"] = [(k, v) for k, v in head["headers"] if k.lower() != b"content-length"] + [
                        (b"content-length", str(len(body)).encode())]
                    await send(head)
                    message = {"type": "http.response.body", "body": body, "more_body": False}
            await send(message)

        try:
            await self.app(scope, counting_receive, clean_send)
        except _TooLarge as refusal:
            log.info("refused %s request after %d bytes (%s)", "upload" if upload else "event", received,
                     refusal.status)
            if not started:
                await _refuse(send, refusal)


def _text_kind(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The content type of a text response (JSON, an event stream, HTML, plain text), else None."""
    for name, value in headers:
        if name.lower() == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind if kind in (b"application/json", b"text/event-stream", b"text/html", b"text/plain") else None
    return None


class PathAlias:
    """Hides the instance's cache folder from every response: its absolute path (Gradio's file
    references, ``/config`` examples, upload answers) goes out as :data:`TOKEN` and comes back in to
    the real path (request bodies and ``/gradio_api/file=`` paths), so no response names a server path."""

    TOKEN = "fdin-cache:"

    def __init__(self, folder: str) -> None:
        self.real = folder.rstrip("/").encode()
        self.token = self.TOKEN.encode()

    def mask(self, body: bytes) -> bytes:
        return body.replace(self.real, self.token) if self.real in body else body

    def unmask(self, body: bytes) -> bytes:
        return body.replace(self.token, self.real) if self.token in body else body

    def unmask_scope(self, scope: Scope) -> Scope:
        path = str(scope.get("path", ""))
        if self.TOKEN not in path:
            return scope
        real = path.replace(self.TOKEN, self.real.decode())
        return {**scope, "path": real, "raw_path": real.encode()}


def _replays_session_state(scope: Scope, path: str) -> bool:
    """A request for a deep link (a page with ``?deep_link=``) or a replay of streamed outputs."""
    if path.lower().startswith(STREAM_REPLAY_PREFIX) and scope.get("method", "GET") in ("GET", "HEAD"):
        return True
    query = scope.get("query_string") or b""
    return b"deep_link" in query.lower()


# --- origins -----------------------------------------------------------------------------------------
def _host_of(value: str) -> str:
    """``host[:port]`` of an origin (``https://a.b:8080``) or a ``Host`` header, lower case."""
    value = value.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    return value.split("/", 1)[0]


def allowed_origins(env: dict[str, str] | None = None) -> set[str]:
    """Extra origins (``host[:port]``) allowed besides the request's own ``Host``:
    ``FDIN_ALLOWED_ORIGINS`` (comma separated) and, on a Space, ``SPACE_HOST``."""
    import os

    env = dict(os.environ) if env is None else env
    extra = {_host_of(o) for o in env.get("FDIN_ALLOWED_ORIGINS", "").split(",") if o.strip()}
    if env.get("SPACE_HOST", "").strip():
        extra.add(_host_of(env["SPACE_HOST"]))
    return extra


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when ``origin`` is the app's own (the ``Host`` the request was sent to, or an allowed one)."""
    if not origin or origin == "null":
        return False
    own = _host_of(origin)
    return bool(own) and (own == _host_of(host or "") or own in allowed_origins())


async def _refuse(send: Send, refusal: _TooLarge) -> None:
    body = json.dumps({"detail": refusal.message}).encode()
    await send({"type": "http.response.start", "status": refusal.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
