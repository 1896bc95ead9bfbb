"""Sliding-window rate limits, in process (each gateway replica counts its own)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable


class SlidingWindow:
    """At most ``limit`` events per key within ``span_s`` seconds."""

    def __init__(self, limit: int, span_s: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.span_s, self.clock = limit, span_s, clock
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def _window(self, key: str) -> deque[float]:
        window, now = self._events[key], self.clock()
        while window and window[0] <= now - self.span_s:
            window.popleft()
        if not window:  # forget idle keys, so a flood of one-off addresses does not grow memory for ever
            self._events.pop(key, None)
            window = self._events[key]
        return window

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may act again; 0 when it may now."""
        window = self._window(key)
        return 0.0 if len(window) < self.limit else window[0] + self.span_s - self.clock()

    def hit(self, key: str) -> None:
        self._window(key).append(self.clock())

    def allow(self, key: str) -> bool:
        """Counts the event and says whether it is within the limit."""
        if self.wait_s(key) > 0:
            return False
        self.hit(key)
        return True

    def forget(self, key: str) -> None:
        self._events.pop(key, None)
