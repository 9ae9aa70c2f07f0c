"""What the client asks of a rate limiter: a permit per call, and what answers say of the budget.

The database limiter (syncer/limiter.py) is the real one; `NoLimit` is for
an account without a budget, and for the client alone in tests.
"""
from __future__ import annotations

import threading
from typing import Protocol

from syncer.platforms.base import BudgetSignal


class Permit(Protocol):
    # The call (GET: a listing page, POST: a sync) left at `at` and was answered at `answered_at`
    # (None: no answer), both time.time(); `succeeded`: the adapter read it as OK (its time says how fast
    # the platform works; a 429, a 503 or a metered throttle, an HTTP 200, says nothing of it).
    def sent(self, method: str, at: float, answered_at: float | None, *, succeeded: bool = True) -> None: ...


class Limiter(Protocol):
    # Wait for the budget; raise Stopped (syncer/stops.py) once `stop` is set: no call goes a window late.
    def acquire(self, stop: threading.Event | None = None) -> Permit: ...

    # What an answer said of the platform's real budget for this client.
    def learn(self, signal: BudgetSignal) -> None: ...


class _FreePermit:
    def sent(self, method: str, at: float, answered_at: float | None, *, succeeded: bool = True) -> None:
        return None


class NoLimit:
    def acquire(self, stop: threading.Event | None = None) -> Permit:
        return _FreePermit()

    def learn(self, signal: BudgetSignal) -> None:
        return None  # no configured budget: the platform's own is not ours to pace to
