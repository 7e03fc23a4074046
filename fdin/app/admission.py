"""Admission of live streams into Gradio's queue, idle streams, unread replies, and "is my event
still wanted?" for long handlers, so idle or abandoned streams cannot hold the queue. No gradio import here: it works on
the queue object Gradio hands over (``demo._queue``), through the attributes Gradio 6.31 has
(``push``, ``event_ids_to_events``, ``event_queue_per_concurrency_id``, ``pending_messages_per_session``);
the reliability tests fail if a Gradio upgrade changes them.

:class:`Admission` wraps the queue's ``push`` (the ``queue/join`` route):

* a **live stream** (an event of the ``live`` concurrency group) is admitted only while fewer than
  :data:`~fdin.app.settings.LIVE_MAX_STREAMS` live streams are open (running or waiting) in all, and
  fewer than :data:`~fdin.app.settings.LIVE_MAX_STREAMS_PER_CLIENT` from the same client (the
  rate-limit key of :func:`fdin.app.ratelimit.client_key`); otherwise ``503`` with a plain sentence,
  at once;
* a **model event** is admitted only while fewer than ``max_size`` (the app's 16) non-live events
  wait: Gradio's own ``max_size`` is 16 + the live places, so live streams never take a model
  button's place, and model events never a live one's.

A watchdog task on the server's event loop, every :data:`WATCH_EVERY_S`:

* closes a running live stream that sent no frame for :data:`~fdin.app.settings.LIVE_IDLE_S` (the
  same as the client's own ``stream/<id>/close``), and drops a live stream that waited for a slot
  longer than :data:`~fdin.app.settings.LIVE_MAX_WAIT_S`;
* keeps at most :data:`~fdin.app.settings.LIVE_MAX_UNREAD` unread streaming replies per session
  (older overlays are dropped: the client only ever shows the newest), and drops every unread reply
  of a session with no running event after :data:`~fdin.app.settings.LIVE_UNREAD_TTL_S`.

:func:`event_stop_check` gives a handler a callable that turns true when its event was cancelled
(``POST /gradio_api/cancel``), its client went away (heartbeat closed) or the event ended: the
analysis then kills its worker (:mod:`fdin.analysis_pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from fdin.app import settings
from fdin.app.ratelimit import client_key

log = logging.getLogger(__name__)

LIVE_CONCURRENCY_ID = "live"
WATCH_EVERY_S = 0.5
LIVE_BUSY = ("Too many live webcam streams are open right now (at most {total} at once, {per_client} per "
             "visitor). Please try again in a moment.")
QUEUE_FULL = "The queue is full ({size} requests are waiting). Please try again in a moment."
#: Server messages that only carry an intermediate result (the newest supersedes them).
DROPPABLE = frozenset({"process_streaming", "process_generating", "progress", "estimation", "log"})


class Admission:
    """Per-client and global admission of live streams, separate places for model events, and the
    watchdog (see the module docstring). :meth:`install` it on a queued demo."""

    def __init__(self, *, max_streams: int = settings.LIVE_MAX_STREAMS,
                 per_client: int = settings.LIVE_MAX_STREAMS_PER_CLIENT, idle_s: float = settings.LIVE_IDLE_S,
                 max_wait_s: float = settings.LIVE_MAX_WAIT_S, max_unread: int = settings.LIVE_MAX_UNREAD,
                 unread_ttl_s: float = settings.LIVE_UNREAD_TTL_S) -> None:
        self.max_streams, self.per_client = max_streams, per_client
        self.idle_s, self.max_wait_s = idle_s, max_wait_s
        self.max_unread, self.unread_ttl_s = max_unread, unread_ttl_s
        self.last_frame: dict[str, float] = {}     # live event id -> monotonic time of its last frame
        self._unread_since: dict[str, float] = {}  # session -> since when it has replies and no event
        self._queue: Any = None
        self._task: asyncio.Task[None] | None = None
        self.closed_idle = 0
        self.refused = 0

    # --- installation ------------------------------------------------------------------------------
    def install(self, queue: Any) -> Admission:
        """Wrap ``queue.push`` (idempotent per queue); the model events' places are
        ``queue.max_size - max_streams``."""
        if getattr(queue, "fdin_admission", None) is self:
            return self
        self._queue = queue
        self.model_places = max(1, int(queue.max_size or 0) - self.max_streams) if queue.max_size else None
        original = queue.push

        async def push(body: Any, request: Any, username: Any) -> Any:
            refusal = self.refuse(body, request)
            if refusal is not None:
                self.refused += 1
                return False, refusal, "queue_full"
            self._ensure_watchdog()
            ok, event_id, state = await original(body, request, username)
            if ok and self._is_live_fn(getattr(body, "fn_index", None)):
                self.last_frame[str(event_id)] = time.monotonic()
            return ok, event_id, state

        queue.push = push
        queue.fdin_admission = self
        return self

    def _fn(self, fn_index: Any) -> Any:
        blocks = getattr(self._queue, "blocks", None)
        return getattr(blocks, "fns", {}).get(fn_index) if blocks is not None and fn_index is not None else None

    def _is_live_fn(self, fn_index: Any) -> bool:
        fn = self._fn(fn_index)
        return fn is not None and getattr(fn, "concurrency_id", None) == LIVE_CONCURRENCY_ID

    # --- admission ---------------------------------------------------------------------------------
    def live_events(self) -> list[Any]:
        events = list(self._queue.event_ids_to_events.values())
        return [e for e in events if getattr(e, "concurrency_id", None) == LIVE_CONCURRENCY_ID
                and not getattr(e, "closed", False) and getattr(e, "alive", True)]

    def model_waiting(self) -> int:
        return sum(len(q.queue) for cid, q in list(self._queue.event_queue_per_concurrency_id.items())
                   if cid != LIVE_CONCURRENCY_ID)

    def refuse(self, body: Any, request: Any) -> str | None:
        """The refusal sentence for this ``queue/join``, or None to admit it."""
        if self._is_live_fn(getattr(body, "fn_index", None)):
            live = self.live_events()
            key = client_key(request) or "unknown"
            mine = sum(1 for e in live if (client_key(getattr(e, "request", None)) or "unknown") == key)
            if len(live) >= self.max_streams or mine >= self.per_client:
                log.info("refused a live stream: %d open, %d from this client", len(live), mine)
                return LIVE_BUSY.format(total=self.max_streams, per_client=self.per_client)
            return None
        if self.model_places is not None and self._fn(getattr(body, "fn_index", None)) is not None \
                and self.model_waiting() >= self.model_places:
            return QUEUE_FULL.format(size=self.model_places)
        return None

    # --- frames and the watchdog -------------------------------------------------------------------
    def touch(self, event_id: str | None) -> None:
        """A frame of live event ``event_id`` arrived (called by the stream handler)."""
        if event_id:
            self.last_frame[event_id] = time.monotonic()

    def _ensure_watchdog(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="fdin-live-watchdog")

    async def _watch(self) -> None:
        while not getattr(self._queue, "stopped", False):
            try:
                await self.sweep()
            except Exception:  # never let the watchdog die on one odd event
                log.exception("live watchdog sweep failed")
            await asyncio.sleep(WATCH_EVERY_S)

    async def sweep(self, now: float | None = None) -> None:
        """One watchdog pass (see the module docstring); on the event loop."""
        now = time.monotonic() if now is None else now
        queue = self._queue
        waiting = {id(e) for q in list(queue.event_queue_per_concurrency_id.values()) for e in q.queue}
        for event in self.live_events():
            last = self.last_frame.get(event._id, event.enqueue_time)
            if id(event) in waiting:
                if now - event.enqueue_time > self.max_wait_s:
                    await queue.remove_from_queue(event._id)
                    self.last_frame.pop(event._id, None)
            elif now - last > self.idle_s:
                event.run_time = math.inf  # what POST /gradio_api/stream/<id>/close does
                event.closed = True
                event.signal.set()
                self.closed_idle += 1
                log.info("closed a live stream idle for %.1f s", now - last)
        known = set(queue.event_ids_to_events)
        for event_id in [e for e in self.last_frame if e not in known]:
            self.last_frame.pop(event_id, None)
        self.trim_unread(now)

    def trim_unread(self, now: float) -> None:
        queue = self._queue
        busy = {e.session_hash for e in list(queue.event_ids_to_events.values())}
        sessions = queue.pending_messages_per_session
        for session in list(sessions.keys()):
            messages = sessions.get(session)
            if messages is None or messages.empty():
                self._unread_since.pop(session, None)
                continue
            if session not in busy:
                since = self._unread_since.setdefault(session, now)
                if now - since > self.unread_ttl_s:
                    _drain(messages, keep=lambda m: False)
                    self._unread_since.pop(session, None)
                continue
            self._unread_since.pop(session, None)
            if messages.qsize() > self.max_unread:
                _drain(messages, keep=_keeper(messages.qsize() - self.max_unread))


def _message_kind(message: Any) -> str:
    kind = getattr(message, "msg", "")
    return str(getattr(kind, "value", kind))


def _keeper(excess: int) -> Callable[[Any], bool]:
    """Keep every message but the oldest ``excess`` droppable ones."""
    left = [excess]

    def keep(message: Any) -> bool:
        if left[0] > 0 and _message_kind(message) in DROPPABLE:
            left[0] -= 1
            return False
        return True

    return keep


def _drain(messages: Any, keep: Callable[[Any], bool]) -> None:
    kept = []
    with contextlib.suppress(asyncio.QueueEmpty):
        while True:
            message = messages.get_nowait()
            if keep(message):
                kept.append(message)
    for message in kept:
        messages.put_nowait(message)


# --- the handler side --------------------------------------------------------------------------------
def current_event() -> tuple[Any, str | None]:
    """``(queue, event_id)`` of the event whose handler is running in this thread (Gradio's context
    variables travel into the handler's worker thread), or ``(None, None)`` for a direct call."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is installed wherever the app runs
        return None, None
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    return (queue, event_id) if queue is not None and event_id else (None, None)


def event_stop_check() -> Callable[[], bool]:
    """A callable that is True once the running event is no longer wanted: cancelled (Gradio drops
    it from ``event_ids_to_events`` when ``/cancel`` ends its task), its client gone (the heartbeat's
    end marks it ``closed``) or ended. Always False outside a queued event."""
    queue, event_id = current_event()
    if queue is None:
        return lambda: False

    def stopped() -> bool:
        event = queue.event_ids_to_events.get(event_id)
        return event is None or bool(getattr(event, "closed", False)) or not getattr(event, "alive", True)

    return stopped


def current_event_id() -> str | None:
    return current_event()[1]


__all__ = ["Admission", "current_event_id", "event_stop_check"]
