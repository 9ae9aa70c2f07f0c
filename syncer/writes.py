"""One writer at a time on SQLite, handed over at once between threads and processes.

SQLite lets one transaction write at a time; a writer that finds the lock
taken sleeps in SQLite's busy handler in growing steps (1, 2, 5 ... 100 ms),
even when the lock frees a moment later, so under steady load the writers
of four worker processes spend most of their time asleep. Queuing writers
on a Python lock (this process's threads) and then on an flock beside the
database file (the machine's processes) turns those sleeps into an instant
hand-over. The SQLite backend (syncer/sqlite_backend) takes the turn for
every write, so no caller has to remember it. PostgreSQL needs none of it.
"""
from __future__ import annotations

import fcntl
import os
import threading

from django.db import OperationalError

_turns: dict[str, WriterTurn] = {}
_turns_lock = threading.Lock()


class WriterTurn:
    def __init__(self, database: str) -> None:
        self._thread_lock = threading.Lock()
        in_memory = database == ":memory:" or database.startswith("file:")
        self._file = None if in_memory else os.open(f"{database}.writer-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                                    0o600)

    def acquire(self, timeout: float = -1) -> None:
        """Wait for the turn; after `timeout` seconds fail as SQLite itself would, "database is locked"."""
        if not self._thread_lock.acquire(timeout=timeout):
            raise OperationalError(f"database is locked (no turn to write within {timeout:g} s)")
        if self._file is None:
            return
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

def writer_turn(database: str) -> WriterTurn:
    """This process's turn for writing to the SQLite database at `database`."""
    with _turns_lock:
        if database not in _turns:
            _turns[database] = WriterTurn(database)
        return _turns[database]


def _forget_parents_turns() -> None:
    """A forked worker opens its own lock file: an flock belongs to the open file, which it would share."""
    global _turns_lock
    _turns.clear()
    _turns_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_parents_turns)
