"""The limiter's clocks: one clock every process shares for slot dates, and each process's own calls.

Slot dates are compared by every process and host that uses the database,
so they come from one clock they all read. On PostgreSQL that is the
database server's (`clock_timestamp()`), read in the very statement that
reads or takes a slot: no extra round trip. On SQLite, whose processes are
on one host by construction, it is the host's CLOCK_MONOTONIC
(`time.monotonic()`, the same in every process of a host), which no step
of the wall clock moves. Each process's time.time() is neither: two hosts
disagree, and a wall clock set back by an hour held every slot for an hour.

A slot dated later than the clock now reads was dated before that clock
stepped back (the database host's clock set right, or a reboot, which
restarts CLOCK_MONOTONIC): it counts as just used, so the limiter waits one
interval for it, not until the old clock's time comes round.

A step forward makes every slot look old. `ProcessWindow` keeps one
process from sending more than N calls in any window all the same: it
keeps the process's own last N calls in monotonic time, which never steps.
Processes that each sent some of the window's calls before such a step can
still, together, send up to N more: no clock they all share is monotonic.
"""
from __future__ import annotations

import threading
import time

from django.db import connection


def now_sql() -> tuple[str, list[float]]:
    """The slot clock's "now" as an SQL expression and its parameters; build it just before its statement runs."""
    if connection.vendor == "postgresql":
        return "EXTRACT(EPOCH FROM clock_timestamp())::float8", []
    return "%s", [time.monotonic()]


class ProcessCall:
    """One call this process sent on a client: the latest monotonic moment the platform can have read it."""

    __slots__ = ("read_by",)

    def __init__(self, read_by: float) -> None:
        self.read_by = read_by


def _read_by(call: ProcessCall) -> float:
    return call.read_by


class ProcessWindow:
    """This process's last N calls on one platform client, in monotonic time: never N+1 in one interval.

    The shared slots already pace the process; this is the backstop for
    when the shared clock jumps forward. The limiter consults it under the
    client's queue, so its takes are one at a time; `moved` comes from the
    thread whose call was read late, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[ProcessCall] = []

    def wait(self, calls: int, interval: float) -> float:
        """Seconds until the process may send another call on the client; 0 when it may now."""
        with self._lock:
            if len(self._calls) < calls:
                return 0.0
            self._calls.sort(key=_read_by)  # already in order but for calls read late: one pass
            return max(0.0, self._calls[-calls].read_by + interval - time.monotonic())

    def note(self, calls: int) -> ProcessCall:
        """Note a call that goes now; keep only what a window of `calls` calls needs."""
        with self._lock:
            self._calls.sort(key=_read_by)
            del self._calls[:max(0, len(self._calls) - calls + 1)]
            call = ProcessCall(time.monotonic())
            self._calls.append(call)
            return call

    def moved(self, call: ProcessCall, read_by: float) -> None:
        with self._lock:
            call.read_by = max(call.read_by, read_by)
