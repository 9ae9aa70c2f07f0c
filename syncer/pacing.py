"""What the client asks of a rate limiter: a permit per call, a turn in the queue, and what answers say.

The database limiter (syncer/limiter.py) is the real one; `NoLimit` is for
an account without a budget, and for the client alone in tests.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from syncer.platforms.base import BudgetSignal


class Permit(Protocol):
    # The call (GET: a listing page, POST: a sync) left at `at` and was answered at `answered_at`
    # (None: no answer), both time.time().
    def sent(self, method: str, at: float, answered_at: float | None) -> None: ...


class Limiter(Protocol):
    def acquire(self) -> Permit: ...

    # Wait until this thread's next call is the next for the budget; that call's `acquire` ends the turn.
    def turn(self) -> AbstractContextManager[None]: ...

    # What an answer said of the platform's real budget for this client.
    def learn(self, signal: BudgetSignal) -> None: ...


class _FreePermit:
    def sent(self, method: str, at: float, answered_at: float | None) -> None:
        return None


class NoLimit:
    def acquire(self) -> Permit:
        return _FreePermit()

    def turn(self) -> AbstractContextManager[None]:
        return nullcontext()

    def learn(self, signal: BudgetSignal) -> None:
        return None  # no configured budget: the platform's own is not ours to pace to
