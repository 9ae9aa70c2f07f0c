"""An account's rate budget, shared by every thread, process and host.

The budget `N/Ws` is kept as N slots in the database, each holding the time
of the call that last used it. A call may go once the oldest slot is W
seconds old; taking a slot is one compare-and-set UPDATE, so two workers
can never take the same slot. That is a sliding window, the same shape as
the platform's own, so a client that waits for a slot is never told 429.

Within a process, a run's threads queue for the budget on a lock, one at
a time: otherwise all of them wake for the same oldest slot, read it, and
all but one lose the compare-and-set, which with a hundred accounts side by
side is most of the database's work.

Once a run knows how many calls it needs, `slots_spread` dates its free
slots so that its calls go evenly and its last call goes when it would have
anyway (see there).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection, transaction
from django.db.models import Count

from syncer import sql
from syncer.budget import RateBudget
from syncer.client import Limiter, NoLimit
from syncer.connections import connection_release

log = logging.getLogger(__name__)

_queues: dict[int, threading.Lock] = {}  # one queue for the budget per account in this process
_queues_lock = threading.Lock()
_turns = threading.local()  # the queue a thread holds from `turn()` until its call takes a slot
_fastest_answers: dict[str, float] = {}  # per kind of call, by any account in this process
_fastest_lock = threading.Lock()

LATE_SECONDS = 0.02  # a call that may have been read later than this after its slot's date moves the slot


class SlotPermit:
    """A taken slot; once its call is over, `sent()` re-dates it if the call may have arrived late.

    The platform counts a call when it reads it. A slot dated before then (a
    late departure on a busy machine, a wait for the database, a platform
    slow to read) would free up too early and earn a 429. The latest the
    call can have been read is its answer's time less the fastest answer
    seen: re-dating to that after the call keeps the write off the path
    between the slot's date and the departure.
    """

    def __init__(self, limiter: DatabaseLimiter, slot_id: int, taken_at: float) -> None:
        self.limiter, self.slot_id, self.taken_at = limiter, slot_id, taken_at

    def sent(self, method: str, at: float, answered_at: float | None) -> None:
        if answered_at is None:
            read_by = at
        else:
            read_by = max(at, answered_at - fastest_answer(method, answered_at - at))
        if read_by - self.taken_at > LATE_SECONDS:
            self.limiter.redate(self.slot_id, self.taken_at, read_by)


def fastest_answer(method: str, seconds: float) -> float:
    """The fastest answer seen before this one (of `seconds`) to this kind of call, 0 for the first; note this one.

    A listing page and a sync differ, so each method has its own. The
    answers of every account in the process count: one account's first
    calls, all slow on a machine busy starting a fleet, would otherwise set
    a fastest answer far above the platform's, and date its slots before
    the platform counted them. With nothing seen yet, the call may have been
    read as late as its answer.
    """
    with _fastest_lock:
        fastest = _fastest_answers.get(method, 0.0)
        _fastest_answers[method] = min(_fastest_answers.get(method, seconds), seconds)
        return fastest


def safety_margin(budget: RateBudget) -> float:
    """Extra wait per slot for the gap between taking a slot and the call reaching the platform."""
    return max(0.1, budget.window_seconds * 0.01)


def slot_interval(budget: RateBudget) -> float:
    """How long after its last call a slot can be taken again."""
    return budget.window_seconds + safety_margin(budget)


class DatabaseLimiter:
    def __init__(self, *, account_id: int, budget: RateBudget) -> None:
        self.account_id = account_id
        self.budget = budget
        self.interval = slot_interval(budget)

    def acquire(self) -> SlotPermit:
        connection_release()  # never queue holding a pooled connection: the thread ahead may need one
        queue = _queue_for(self.account_id)
        if getattr(_turns, "queue", None) is queue:
            _turns.queue = None  # the call of this thread's turn: its slot ends the turn
        else:
            queue.acquire()
        try:
            return self._acquire()
        finally:
            queue.release()

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Be next in this process's queue for the budget; the next call's slot ends the turn.

        A drain claims its next attempt in its turn. Claimed while ten calls
        ahead of it still waited for the budget, an attempt sat claimed for
        a window, and a hundred runs starting at once spent their first
        seconds on claims instead of on their listings.
        """
        connection_release()
        queue = _queue_for(self.account_id)
        queue.acquire()
        _turns.queue = queue
        try:
            yield
        finally:
            if getattr(_turns, "queue", None) is queue:  # no call took a slot in the turn
                _turns.queue = None
                queue.release()

    def _acquire(self) -> SlotPermit:
        while True:
            slot = self._oldest_slot()
            if slot is None:  # never ensured: an account's "Test connection" before its first run
                _slots_create_missing({self.account_id: self.budget.calls})
                continue
            slot_id, last_used = slot
            wait = last_used + self.interval - time.time()
            if wait > 0:
                connection_release()
                time.sleep(wait)
                continue
            taken_at = self._take(slot_id, last_used)
            connection_release()
            if taken_at is not None:
                return SlotPermit(self, slot_id, taken_at)

    def redate(self, slot_id: int, dated: float, new_date: float) -> None:
        """Best effort: a slot left at its first date risks one 429, which the client waits out."""
        try:
            self._move(slot_id, dated, new_date)
        except DatabaseError as error:
            log.warning("could not re-date a rate slot (%s); its next call may be told 429", type(error).__name__)
        finally:
            connection_release()

    # Plain SQL: a hundred accounts take a slot per call, and building ORM
    # queries for them was a fifth of a worker's CPU.

    def _oldest_slot(self) -> tuple[int, float] | None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, last_used FROM {_table()} WHERE account_id = %s AND {_index()} < %s "
                           f"ORDER BY last_used, {_index()} LIMIT 1", [self.account_id, self.budget.calls])
            return cursor.fetchone()

    def _take(self, slot_id: int, last_used: float) -> float | None:
        """Compare-and-set: only one caller can move a slot from the time it read; the time it took it, or None."""
        with transaction.atomic():  # on SQLite, BEGIN waits for the write lock
            taken_at = time.time()  # so a wait for the database is not counted as the call's departure
            return taken_at if self._move(slot_id, last_used, taken_at) else None

    @staticmethod
    def _move(slot_id: int, last_used: float, new_time: float) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(_move_statement(), [new_time, slot_id, last_used])
            return cursor.rowcount == 1


def slots_ensure(accounts) -> None:
    """Create the budget slots the accounts lack, at the start of each run (a budget may have grown since)."""
    _slots_create_missing({account.pk: account.budget.calls for account in accounts if account.budget is not None})


def _slots_create_missing(calls_by_account: dict[int, int]) -> None:
    """One read for all the accounts, one insert for what is missing: a read needs no turn for SQLite's lock."""
    from campaigns.models import RateSlot

    if not calls_by_account:
        return
    have = dict(RateSlot.objects.filter(account_id__in=calls_by_account).values("account_id")
                .annotate(n=Count("pk")).values_list("account_id", "n"))
    missing = [RateSlot(account_id=account_id, index=index) for account_id, calls in calls_by_account.items()
               if have.get(account_id, 0) < calls for index in range(calls)]
    if missing:
        RateSlot.objects.bulk_create(missing, ignore_conflicts=True)


def slots_spread(account, calls: int) -> None:
    """Date the account's slots so its next `calls` calls go evenly and the last goes when it would anyway.

    Taking the oldest free slot, a run of 100 calls on a 10-call budget sends
    ten calls the moment its listing is in, then ten more every window: the
    last call goes ten windows after the listing. Spread over the window,
    call j of n goes one step (window / calls per window) after call j-1 and
    the last still goes ten windows after the listing: same end, but a
    steady trickle instead of bursts, which a busy machine (a fleet of
    accounts starting at once) sends on time. Each of the first slots gets
    the date that frees it for its call of the even schedule; the calls that
    follow on it keep the step. A slot is only ever dated later, and a run
    with fewer calls than free slots is left alone: its calls go at once.
    """
    from campaigns.models import RateSlot

    budget = account.budget
    if budget is None or calls < 1:
        return
    interval, now = slot_interval(budget), time.time()
    slots = list(RateSlot.objects.filter(account_id=account.pk, index__lt=budget.calls)
                 .order_by("last_used", "index").values_list("pk", "last_used"))
    if not slots:
        return
    # As the limiter would send them: call j on the j-th oldest slot, and a slot's next call an interval later.
    frees = [max(now, last_used + interval) for _, last_used in slots]
    last_call = frees[(calls - 1) % len(slots)] + (calls - 1) // len(slots) * interval
    step = interval / len(slots)
    moves = []
    for j, (slot_id, last_used) in enumerate(slots[:calls]):
        even_free = last_call - (calls - 1 - j) * step  # when call j goes on the even schedule
        if even_free > frees[j]:
            moves.append([even_free - interval, slot_id, last_used])
    if moves:
        with transaction.atomic(), connection.cursor() as cursor:  # a move lost to a take leaves that slot as it is
            cursor.executemany(_move_statement(), moves)


def _move_statement() -> str:
    """Compare-and-set a slot's date: parameters are the new date, the slot's id and the date it was read with."""
    return f"UPDATE {_table()} SET last_used = %s WHERE id = %s AND last_used = %s"


def _table() -> str:
    from campaigns.models import RateSlot

    return sql.table(RateSlot)


def _index() -> str:
    return connection.ops.quote_name("index")


def _queue_for(account_id: int) -> threading.Lock:
    with _queues_lock:
        return _queues.setdefault(account_id, threading.Lock())


def limiter_for(*, account_id: int, budget: RateBudget | None) -> Limiter:
    if budget is None:
        return NoLimit()
    return DatabaseLimiter(account_id=account_id, budget=budget)
