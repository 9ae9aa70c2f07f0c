"""An account's rate budget, shared by every thread, process and host.

The budget `N/Ws` is kept as N slots in the database, each holding the time
of the call that last used it. A call may go once the oldest slot is W
seconds old; taking a slot is one compare-and-set UPDATE, so two workers
can never take the same slot. That is a sliding window, the same shape as
the platform's own, so a client that waits for a slot is never told 429.
"""
from __future__ import annotations

import time

from syncer.budget import RateBudget
from syncer.client import Limiter, NoLimit
from syncer.writes import writer_turn

LATE_SECONDS = 0.02  # a call leaving later than this after taking its slot moves the slot's time


class SlotPermit:
    """A taken slot; `sending()` re-dates it when the call leaves late (a busy machine, a slow database).

    The platform counts a call when it arrives: a slot dated before a late
    departure would free up too early and earn a 429.
    """

    def __init__(self, limiter: DatabaseLimiter, slot_id: int, taken_at: float) -> None:
        self.limiter, self.slot_id, self.taken_at = limiter, slot_id, taken_at

    def sending(self) -> None:
        now = time.time()
        if now - self.taken_at > LATE_SECONDS:
            self.limiter.redate(self.slot_id, self.taken_at, now)


def safety_margin(budget: RateBudget) -> float:
    """Extra wait per slot for the gap between taking a slot and the call reaching the platform."""
    return max(0.1, budget.window_seconds * 0.01)


class DatabaseLimiter:
    def __init__(self, *, account_id: int, budget: RateBudget) -> None:
        self.account_id = account_id
        self.budget = budget
        self.margin = safety_margin(budget)
        self._slots_ready = False

    def acquire(self) -> SlotPermit:
        self._ensure_slots()
        while True:
            slot_id, last_used = self._oldest_slot()
            wait = last_used + self.budget.window_seconds + self.margin - time.time()
            if wait > 0:
                time.sleep(wait)
                continue
            taken_at = time.time()
            if self._take(slot_id, last_used, taken_at):
                return SlotPermit(self, slot_id, taken_at)

    def redate(self, slot_id: int, taken_at: float, sent_at: float) -> None:
        with writer_turn():
            self._slots().filter(id=slot_id, last_used=taken_at).update(last_used=sent_at)

    def _slots(self):
        from campaigns.models import RateSlot

        return RateSlot.objects.filter(account_id=self.account_id, index__lt=self.budget.calls)

    def _ensure_slots(self) -> None:
        if self._slots_ready:
            return
        from campaigns.models import RateSlot

        RateSlot.objects.bulk_create(
            [RateSlot(account_id=self.account_id, index=i) for i in range(self.budget.calls)],
            ignore_conflicts=True,
        )
        self._slots_ready = True

    def _oldest_slot(self) -> tuple[int, float]:
        return self._slots().order_by("last_used", "index").values_list("id", "last_used")[0]

    def _take(self, slot_id: int, last_used: float, taken_at: float) -> bool:
        """Compare-and-set: only one caller can move a slot from the time it read."""
        with writer_turn():
            return self._slots().filter(id=slot_id, last_used=last_used).update(last_used=taken_at) == 1


def limiter_for(*, account_id: int, budget: RateBudget | None) -> Limiter:
    if budget is None:
        return NoLimit()
    return DatabaseLimiter(account_id=account_id, budget=budget)
