"""Python's cyclic garbage collector paused around bulk work.

Building a report or storing a poll allocates millions of small tuples that the collector
scans again and again without ever finding a cycle in them: it costs about a third of a
monthly report and a quarter of a poll (see docs/performance.md). Reference counting still
frees everything as usual; only the search for reference cycles waits until the block ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; nested and concurrent blocks are counted,
    so the collector comes back (if it was on) only when the last one ends."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
