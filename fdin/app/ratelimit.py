"""Per-client rate limiting (reliability R-08): a token bucket per client IP. No gradio here."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from fdin.app.settings import RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_S

log = logging.getLogger(__name__)


class RateLimiter:
    """Token bucket per client key: ``capacity`` requests at once, refilled at ``capacity / window_s``
    per second. ``capacity <= 0`` disables it. Thread-safe; idle buckets are dropped (bounded memory).
    ``clock`` is injectable so tests can step time instead of sleeping."""

    def __init__(self, capacity: int, window_s: float, *, max_clients: int = 10_000,
                 clock: Any = time.monotonic) -> None:
        self.capacity, self.window_s, self.max_clients = int(capacity), float(window_s), max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last update)
        self._lock = threading.Lock()
        self._clock = clock

    @classmethod
    def from_env(cls) -> RateLimiter:
        """``FDIN_RATE_LIMIT="N/SECONDS"`` (e.g. ``"30/60"``; ``"0"`` disables), else the defaults."""
        text = os.environ.get("FDIN_RATE_LIMIT", "").strip()
        try:
            n, _, window = text.partition("/")
            return cls(int(n), float(window or RATE_LIMIT_WINDOW_S)) if text else cls(RATE_LIMIT_REQUESTS,
                                                                                       RATE_LIMIT_WINDOW_S)
        except ValueError:
            log.warning("ignoring malformed FDIN_RATE_LIMIT; using %d/%g", RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_S)
            return cls(RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_S)

    def allow(self, key: str) -> bool:
        if self.capacity <= 0:
            return True
        rate = self.capacity / max(self.window_s, 1e-9)
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.capacity), now))
            tokens = min(float(self.capacity), tokens + (now - last) * rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self.max_clients:  # drop full (idle) buckets first
                full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * rate >= self.capacity]
                for k in full or list(self._buckets)[: len(self._buckets) // 2]:
                    self._buckets.pop(k, None)
            return allowed


def client_key(request: Any) -> str | None:
    """The rate-limit key of a request: the client's IP (on a Hugging Face Space, or with
    ``FDIN_TRUST_PROXY=1``, the right-most ``X-Forwarded-For`` entry, i.e. the one the proxy added);
    ``None`` for direct Python calls (no request)."""
    if request is None:
        return None
    if os.environ.get("SPACE_ID") or os.environ.get("FDIN_TRUST_PROXY") == "1":
        forwarded = (getattr(request, "headers", None) or {}).get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")
