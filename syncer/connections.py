"""Database connections of threads that mostly wait on something else.

A drain thread spends its time waiting for the platform or the rate
budget, not the database. On PostgreSQL it takes a connection from the
process's pool for each step and gives it back at once, so hundreds of
threads share a handful of connections. SQLite keeps each thread's
connection: opening one costs more than the step.
"""
from __future__ import annotations

from django.db import connection


def connection_release() -> None:
    """Give this thread's connection back to the pool, unless it is in a transaction or not pooled."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()
