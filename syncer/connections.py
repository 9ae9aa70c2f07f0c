"""Database connections of threads that mostly wait on something else.

A drain thread spends its time waiting for the platform or the rate
budget, not the database. On PostgreSQL it takes a connection from the
process's pool for each step and gives it back at once, so hundreds of
threads share a handful of connections. SQLite keeps each thread's
connection: opening one costs more than the step.
"""
from __future__ import annotations

import logging
import time

from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

DATABASE_PATIENCE_SECONDS = 120  # how long a worker waits out a database restart


def connection_release() -> None:
    """Give this thread's connection back to the pool, unless it is in a transaction or not pooled."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def patiently(step, *args, **kwargs):
    """Run one database step, waiting out a briefly unavailable database (a restart, a lock).

    A connection broken while lent (a restart after the pool checked it) is
    closed, so the pool drops it, and the step tried again. The connection
    goes back to the pool after the step: the thread now waits on the
    platform or the budget, not the database.
    """
    started, delay = time.monotonic(), 0.2
    while True:
        try:
            return step(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() - started > DATABASE_PATIENCE_SECONDS:
                raise
            log.warning("database unavailable (%s); trying again in %.1f s", type(error).__name__, delay)
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        finally:
            connection_release()
