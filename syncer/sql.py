"""Plain SQL for the statements a sync runs for every campaign: claims, outcomes, a listing's inserts.

The ORM builds a statement anew in Python each time; for these that was
most of a worker's CPU with a hundred accounts side by side.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import connection


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def db_time(value: datetime | None):
    """A datetime as the database driver takes it (SQLite keeps text)."""
    return connection.ops.adapt_datetimefield_value(value)


def insert(model, rows: Sequence[dict], *, on_conflict: str) -> None:
    """INSERT `rows` ... ON CONFLICT `on_conflict`; rows are dicts of column -> value ready for the driver.

    Every row has the same columns in the same order (one function builds
    them), so its values are taken as they stand. One short statement is
    executed for all the rows: a statement of many rows' placeholders is too
    long for the driver's cache of parsed statements, and parsing it again
    cost more than the insert.
    """
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table(model)} ({names}) VALUES ({', '.join(['%s'] * len(columns))}) "
                           f"ON CONFLICT {on_conflict}",
                           [tuple(row.values()) for row in rows])
