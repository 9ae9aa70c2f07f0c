"""Listings first: while a process sends runs' first listing calls, the runs already listed wait to store.

A run's budget clock starts at its first call, its listing's first page:
its last sync goes ten windows after it whatever happens in between, while
its first syncs have slack (they are spread over the first window, and one
sent a second late still leaves the run ending on time). Storing a listing
is the heaviest step of a run's start. So when a process starts many runs
at once (a fleet synced together), their first calls go out first and the
stores follow, at most FIRST_STORE_PATIENCE seconds later. A lone run, or a
process with no listing under way, does not wait.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from syncer.connections import connection_release

FIRST_STORE_PATIENCE = 2.0  # seconds a listed run waits at most for the process's other listings

_pending = 0
_changed = threading.Condition()


@contextmanager
def listing_in_flight() -> Iterator[None]:
    """Mark a run's first listing call as under way in this process until the block ends."""
    global _pending
    with _changed:
        _pending += 1
    try:
        yield
    finally:
        with _changed:
            _pending -= 1
            _changed.notify_all()


def listings_wait(patience: float = FIRST_STORE_PATIENCE) -> None:
    """Wait until no first listing call is under way in this process, or `patience` seconds."""
    connection_release()  # a pooled connection held here is one a listing may be waiting for
    deadline = time.monotonic() + patience
    with _changed:
        while _pending and (left := deadline - time.monotonic()) > 0:
            _changed.wait(left)
