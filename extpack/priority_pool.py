"""A thread pool that runs the most urgent call first: a fetch's layers are laid over each other
in order, so the entries of an earlier layer are written before a later layer's, and the overlay
of the first layers proceeds while the last ones are still being written."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future


class PriorityPool:
    """`workers` threads; `submit(priority, fn, ...)` runs lowest priority first, in submission
    order among equals. `initializer` runs first in every thread."""

    def __init__(self, workers: int, *, name: str, initializer: Callable[[], None] | None = None) -> None:
        self._queue: list = []
        self._ready = threading.Condition()
        self._order = itertools.count()
        self._closed = False
        self._initializer = initializer
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True) for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable, *args) -> Future:
        future: Future = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            heapq.heappush(self._queue, (priority, next(self._order), future, fn, args))
            self._ready.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._ready:
            self._closed = True
            if cancel_futures:
                for _, _, future, _, _ in self._queue:
                    future.cancel()
                    # Only this tells concurrent.futures.wait() that the future is done.
                    future.set_running_or_notify_cancel()
                self._queue.clear()
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    def _run(self) -> None:
        if self._initializer is not None:
            self._initializer()
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                _, _, future, fn, args = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                future.set_exception(exc)
