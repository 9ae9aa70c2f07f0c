"""Django's SQLite backend, with every write taking its turn (see syncer/writes.py).

A transaction (IMMEDIATE, so it takes SQLite's write lock at BEGIN) holds
the turn from BEGIN to COMMIT or ROLLBACK; a write outside a transaction
holds it for its one statement. Reads never wait for it.
"""
from __future__ import annotations

from django.db.backends.sqlite3 import base

from syncer.sqlite_backend.creation import DatabaseCreation
from syncer.writes import WriterTurn, writer_turn

READ_STATEMENTS = ("SELECT", "PRAGMA", "EXPLAIN")


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._turn: WriterTurn | None = None  # held while a transaction is open
        self.execute_wrappers.append(self._write_in_turn)

    def _start_transaction_under_autocommit(self) -> None:
        turn = writer_turn(str(self.settings_dict["NAME"]))
        turn.acquire(timeout=self._busy_timeout())
        self._turn = turn  # before BEGIN, so BEGIN itself does not ask for the turn again
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_turn()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_turn()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_turn()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_turn()

    def _release_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.release()

    def _write_in_turn(self, execute, sql, params, many, context):
        if self._turn is not None or sql.lstrip()[:7].upper().startswith(READ_STATEMENTS):
            return execute(sql, params, many, context)
        turn = writer_turn(str(self.settings_dict["NAME"]))
        turn.acquire(timeout=self._busy_timeout())
        try:
            return execute(sql, params, many, context)
        finally:
            turn.release()

    def _busy_timeout(self) -> float:
        """As long as SQLite itself would wait for the lock (the `timeout` option)."""
        return float(self.settings_dict["OPTIONS"].get("timeout", 5))
