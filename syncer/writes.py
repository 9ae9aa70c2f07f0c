"""One writer at a time per process on SQLite.

SQLite lets one transaction write at a time; a thread that finds the lock
taken sleeps in SQLite's busy handler in steps of milliseconds, even when
the lock frees a moment later. Queuing this process's writers on a Python
lock first turns those sleeps into an instant hand-over; other processes
still wait through the busy timeout. PostgreSQL needs none of it.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext

from django.db import connection, transaction

_sqlite_writer = threading.Lock()


def writer_turn():
    return _sqlite_turn() if connection.vendor == "sqlite" else nullcontext()


@contextmanager
def _sqlite_turn():
    with _sqlite_writer:
        yield


@contextmanager
def write_transaction():
    """`transaction.atomic()` that waits its turn among this process's writers on SQLite."""
    with writer_turn(), transaction.atomic():
        yield
