"""Waiting for SIGTERM/SIGINT in the main thread, safely.

A handler that sets a threading.Event can deadlock: it runs in the main thread, possibly while
that thread holds the Event's internal lock inside Event.wait(). The handler here only stores
the signal number, and the main thread polls for it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from types import FrameType, TracebackType

TERMINATE = (signal.SIGTERM, signal.SIGINT)


class SignalLatch:
    """Catches the given signals while in a `with` block; `wait()` returns the first one."""

    def __init__(self, signals: Iterable[signal.Signals] = TERMINATE) -> None:
        self.signals = tuple(signals)
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def __enter__(self) -> SignalLatch:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]

    def wait(self, poll_seconds: float = 0.1) -> signal.Signals:
        while self.received is None:
            time.sleep(poll_seconds)
        return self.received
