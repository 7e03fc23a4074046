"""Decoding in a producer thread: :class:`Prefetch` runs a :class:`~fdin.media.video.VideoStream`
into a bounded queue so a consumer (face tracking) can overlap with decoding."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np

_END = object()


class Prefetch:
    """Runs a :class:`fdin.media.VideoStream` in a producer thread into a bounded queue.

    Consumed by one thread: iterating yields the frames in order as they arrive; ``len()`` and
    indexing also work (they wait for the frames they need; ``len()`` for the end of the video).
    A decode error is re-raised in the consumer (from iteration/``len``/indexing, or from
    :meth:`video` if the consumer stopped early). :meth:`close` stops the producer.
    """

    def __init__(self, stream: Any, maxsize: int = 32) -> None:
        self._stream = stream
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._frames: list[np.ndarray] = []
        self._ended = False
        self.decode_s = 0.0
        self._thread = threading.Thread(target=self._produce, name="fdin-decode", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            with self._stream:
                it = iter(self._stream)
                while True:
                    t0 = time.perf_counter()
                    try:
                        frame = next(it)
                    except StopIteration:
                        self.decode_s += time.perf_counter() - t0
                        break
                    self.decode_s += time.perf_counter() - t0
                    if not self._put(frame):
                        return
        except BaseException as exc:  # handed to the consumer
            self._error = exc
        self._put(_END)

    def _fill(self, count: int | None) -> None:
        """Take frames from the queue until ``count`` are held (None: until the end)."""
        while not self._ended and (count is None or len(self._frames) < count):
            item = self._queue.get()
            if item is _END:
                self._ended = True
            else:
                self._frames.append(item)
        if self._ended and self._error is not None:
            raise self._error

    def __iter__(self) -> Any:
        index = 0
        while True:
            self._fill(index + 1)
            if index >= len(self._frames):
                return
            yield self._frames[index]
            index += 1

    def __len__(self) -> int:
        self._fill(None)
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            self._fill(None)
        else:
            self._fill(index + 1)
        return self._frames[index]

    def __length_hint__(self) -> int:
        return self._stream.__length_hint__()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def video(self) -> Any:
        if self._error is not None:
            raise self._error
        if self._stream.video is None:
            raise RuntimeError("the video stream was not read to the end")
        return self._stream.video
