"""A platform client's rate budget, shared by every thread, process and host, and by each of its accounts.

The platform counts calls per client, a base URL and a client id
(`ApiClient`), not per account: two accounts with one client id share one
window. The client's budget `N/Ws` is kept as N slots in the database, each
holding when the call that last used it went, on the slot clock every
process shares (`slot_clock`). A call may go once the oldest slot is W
seconds old; taking a slot is one compare-and-set UPDATE, so two workers
can never take the same slot. That is a sliding window, the same shape as
the platform's own, so a client that waits for a slot is never told 429.
Accounts of one client whose configured budgets differ pace to one that
keeps each of them (`budget_shared`), kept on the client's row and read
with every slot, so every process paces to the same one.

Within a process, the threads of every run on a client queue for the
budget on a lock, one at a time: otherwise all of them wake for the same
oldest slot, read it, and all but one lose the compare-and-set, which with
a hundred accounts side by side is most of the database's work.

The platform may allow less than configured, and say so: usage headers
(X-RateLimit-Limit) or throttles. `learn` keeps what it says on the
client's row (`learned_calls`), and every process paces to the smaller of
the two from its next call on; when the headers allow the configured
budget again, or a dialect without headers has gone LEARNED_STEP_WINDOWS
windows without a throttle, the budget goes back up.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from contextlib import nullcontext

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from campaigns.models import AdAccount, ApiClient, RateSlot
from syncer import sql
from syncer.answer_times import answer_noted, safety_margin
from syncer.api_clients import api_client_of, client_slots_ensure, slots_ensure
from syncer.budget import RateBudget
from syncer.connections import connection_release, patiently
from syncer.pacing import Limiter, NoLimit, Permit
from syncer.platforms.base import BudgetSignal
from syncer.slot_clock import ProcessCall, ProcessWindow, now_sql
from syncer.stops import Stopped, pause

__all__ = ["DatabaseLimiter", "SlotPermit", "limiter_for", "slots_ensure"]

log = logging.getLogger(__name__)


class _InProcess:
    """What this process keeps of one platform client: its queue for the budget, its own last calls, and
    what it last learned of the platform's budget (so an answer that says the same costs no write)."""

    def __init__(self) -> None:
        self.queue = threading.Lock()
        self.window = ProcessWindow()
        self.learn_lock = threading.Lock()
        self.heard_limit: int | None = None
        self.learned_change = -math.inf  # time.monotonic() of this process's last change of the learned budget
        self.window_seconds = math.inf  # the client's window, as last read
        self.throttles: list[float] = []  # time.monotonic() of the throttles heard within the last window


# One per client, whichever accounts use it, while a limiter of the client lives (the cached clients of
# syncer/accounts.py hold theirs): bounded by that cache. A limiter made after the last one went reads the learned
# budget's age back from the database.
_in_process: weakref.WeakValueDictionary[tuple[int, str, str], _InProcess] = weakref.WeakValueDictionary()
_in_process_lock = threading.Lock()

# Without usage headers: so many throttles within one window lower the pacing by a call. A lone 429 in a
# fleet on several hosts is our own timing, and lowering on it cost a run a window (scale-out, 2026-12-02).
THROTTLES_TO_LOWER = 2
LEARNED_STEP_WINDOWS = 10  # without usage headers: a window without a throttle this often buys one call back
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

    def __init__(self, limiter: DatabaseLimiter, slot_id: int, taken_at: float, call: ProcessCall) -> None:
        self.limiter, self.slot_id, self.taken_at, self.call = limiter, slot_id, taken_at, call
        self.taken_monotonic = call.read_by

    def sent(self, method: str, at: float, answered_at: float | None, *, succeeded: bool = True) -> None:
        read_by = self.read_by_after_take(method, at, answered_at, succeeded=succeeded)
        if read_by > LATE_SECONDS:
            self.limiter.window.moved(self.call, self.taken_monotonic + read_by)
            self.limiter.redate(self.slot_id, self.taken_at, self.taken_at + read_by)

    def read_by_after_take(self, method: str, at: float, answered_at: float | None, *,
                           succeeded: bool = True) -> float:
        """The latest the platform can have read the call, in seconds after the slot was taken.

        An error answer (a 429, a 503 in an outage) may come back in a few
        milliseconds: it is dated at its answer and teaches nothing of how
        fast the platform syncs. Noted as the fastest answer, one such made
        every later slot wait the whole answer time of a sync call more (at
        2 s answers and 10/60s, 20 s over a reference run).

        Measured on the monotonic clock since the take, so the slot moves by
        a duration, never by a difference of two clocks. The client gives
        `at` and `answered_at` as wall-clock times: only how long before now
        they were counts, held between the take and now, so a step of the
        wall clock during the call can neither make it negative nor later
        than now.
        """
        since_take = max(0.0, time.monotonic() - self.taken_monotonic)
        wall_now = time.time()

        def after_take(moment: float) -> float:
            return min(max(since_take - (wall_now - moment), 0.0), since_take)

        departed = after_take(at)
        if answered_at is None:
            return departed
        answered = max(after_take(answered_at), departed)
        if not succeeded:
            return answered
        return max(departed, answered - answer_noted(method, answered - departed))


def slot_interval(budget: RateBudget) -> float:
    """How long after its last call a slot can be taken again."""
    return budget.window_seconds + safety_margin(budget.window_seconds)


class DatabaseLimiter:
    """The limiter of one platform client; the limiters of all its accounts share its slots and queue."""

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client_id = api_client.pk
        with _in_process_lock:  # by key too: a table made anew (a migration) gives its ids out again
            here = _in_process.setdefault((api_client.pk, api_client.base_url, api_client.client_id), _InProcess())
        self.queue, self.window, self.here = here.queue, here.window, here
        if api_client.learned_budget is not None and api_client.learned_at and here.learned_change == -math.inf:
            # Learned by another process, or before a restart: it is given back counting from then.
            age = max(0.0, (timezone.now() - api_client.learned_at).total_seconds())
            here.learned_change = time.monotonic() - age
            here.window_seconds = api_client.configured_window_seconds

    def acquire(self, stop: threading.Event | None = None) -> Permit:
        connection_release()  # never queue holding a pooled connection: the thread ahead may need one
        with self.queue:
            return self._acquire(stop)

    def _acquire(self, stop: threading.Event | None) -> Permit:
        if stop is not None and stop.is_set():
            raise Stopped()  # set while it queued behind another drain's wait: no call goes once stopped
        while isinstance(got := patiently(self._slot_try), float):
            if got > 0:
                pause(got, stop)
        return got

    def _slot_try(self) -> Permit | float:
        """Take the oldest slot if it is free: its permit, else the seconds to wait before looking again."""
        slot = self._oldest_slot()
        if slot is None:  # slots never ensured ("Test connection" before a first run), or no budget now
            return 0.0 if client_slots_ensure(self.api_client_id) else NoLimit().acquire()
        slot_id, last_used, calls, window_seconds, now = slot
        interval = slot_interval(RateBudget(calls=calls, window_seconds=window_seconds))
        if last_used > now:
            self._count_as_just_used()
            return 0.0
        wait = max(last_used + interval - now, self.window.wait(calls, interval))
        if wait > 0:
            return float(wait)
        taken_at = self._take(slot_id, last_used)
        return SlotPermit(self, slot_id, taken_at, self.window.note(calls)) if taken_at is not None else 0.0

    def learn(self, signal: BudgetSignal) -> None:
        """Pace to what the platform says it allows: its limit when it tells, one call less per throttle else."""
        here = self.here
        if signal.limit is not None and signal.limit == here.heard_limit:
            return  # the same as the last answer: nothing to write
        if signal.limit is None and not signal.throttled and (
                here.learned_change == -math.inf
                or time.monotonic() - here.learned_change < LEARNED_STEP_WINDOWS * here.window_seconds):
            return  # an ordinary answer, and nothing learned to give back (yet)
        connection_release()  # the thread learning now reads the database: never wait for it holding a connection
        with here.learn_lock:
            try:
                self._learn(signal)
            except DatabaseError as error:
                log.warning("could not record the platform's budget (%s); pacing as before", type(error).__name__)
            finally:
                connection_release()

    def _learn(self, signal: BudgetSignal) -> None:
        here = self.here
        client = ApiClient.objects.filter(pk=self.api_client_id).values(
            "configured_calls", "configured_window_seconds", "learned_calls").first()
        if client is None or not client["configured_calls"]:
            return
        configured, learned = client["configured_calls"], client["learned_calls"]
        pacing = learned if 0 < learned < configured else configured
        since_change = time.monotonic() - here.learned_change
        window = here.window_seconds = client["configured_window_seconds"]
        if signal.limit is not None:
            here.heard_limit = signal.limit
            wanted = signal.limit if signal.limit < configured else 0
        elif signal.throttled:
            now = time.monotonic()
            here.throttles = [at for at in here.throttles if now - at < window] + [now]
            if len(here.throttles) < THROTTLES_TO_LOWER:
                return  # one 429 is a slip of timing (a call read late), not a sign of a smaller budget
            wanted = max(1, pacing - 1) if since_change >= window else learned  # once a window
        elif since_change >= LEARNED_STEP_WINDOWS * window:  # between each of a burst's calls is not a sign
            wanted = 0 if pacing + 1 >= configured else pacing + 1
        else:
            return
        if wanted == learned or (wanted == 0 and not 0 < learned < configured):
            if wanted == 0 and signal.limit is None:
                here.learned_change = -math.inf
            return
        ApiClient.objects.filter(pk=self.api_client_id).update(learned_calls=wanted, learned_at=timezone.now())
        here.learned_change = time.monotonic() if wanted else -math.inf
        if wanted:
            log.warning("the platform allows %s calls per %g s, fewer than the %s configured: pacing to %s",
                        wanted, window, configured, wanted)
        else:
            log.info("the platform allows the configured %s calls per %g s again", configured, window)

    def redate(self, slot_id: int, dated: float, new_date: float) -> None:
        """Best effort: a slot left at its first date risks one 429, which the client waits out."""
        try:
            _move(slot_id, dated, new_date)
        except DatabaseError as error:
            log.warning("could not re-date a rate slot (%s); its next call may be told 429", type(error).__name__)
        finally:
            connection_release()

    # Plain SQL: a hundred accounts take a slot per call, and building ORM
    # queries for them was a fifth of a worker's CPU.

    def _oldest_slot(self) -> tuple[int, float, int, float, float] | None:
        """The oldest slot within the client's budget, that budget, and the slot clock's now: one statement."""
        now, params = now_sql()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT s.id, s.last_used, {_PACING}, c.configured_window_seconds, {now} "
                           f"FROM {_slots()} s JOIN {sql.table(ApiClient)} c ON c.id = s.api_client_id "
                           f"WHERE s.api_client_id = %s AND s.{_index()} < {_PACING} "
                           f"ORDER BY s.last_used, s.{_index()} LIMIT 1", [*params, self.api_client_id])
            return cursor.fetchone()

    def _take(self, slot_id: int, last_used: float) -> float | None:
        """Compare-and-set: only one caller can move a slot from the date it read; the date it took it, or None."""
        with _clock_after_lock():
            now, params = now_sql()
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {_slots()} SET last_used = {now} WHERE id = %s AND last_used = %s "
                               f"RETURNING last_used", [*params, slot_id, last_used])
                row = cursor.fetchone()
        return row[0] if row else None

    def _count_as_just_used(self) -> None:
        """Date the client's slots dated later than now to now: they then free within one interval."""
        with _clock_after_lock():
            now, params = now_sql()
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {_slots()} SET last_used = {now} WHERE api_client_id = %s "
                               f"AND last_used > {now}", [*params, self.api_client_id, *params])
                moved = cursor.rowcount
        if moved:
            log.warning("%s rate slots were dated later than the slot clock reads (its clock stepped back, or the "
                        "host restarted): counted as just used", moved)


# The calls a window may hold: the configured budget, or the smaller one the platform said it allows.
_PACING = ("(CASE WHEN c.learned_calls > 0 AND c.learned_calls < c.configured_calls THEN c.learned_calls "
           "ELSE c.configured_calls END)")


def _clock_after_lock():
    """On SQLite the clock is a parameter read in Python: read it once BEGIN (IMMEDIATE) holds the write lock,
    or a write that waited for the lock dates its slot too early. PostgreSQL reads its own clock as the
    statement runs, and a transaction around one statement would be two more round trips a call."""
    return transaction.atomic() if connection.vendor == "sqlite" else nullcontext()


def _move(slot_id: int, last_used: float, new_date: float) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_slots()} SET last_used = %s WHERE id = %s AND last_used = %s",
                       [new_date, slot_id, last_used])
        return cursor.rowcount == 1


def _slots() -> str:
    return sql.table(RateSlot)


def _index() -> str:
    return connection.ops.quote_name("index")


def limiter_for(account: AdAccount) -> Limiter:
    """The limiter of the account's platform client: no limit only when none of that client's accounts has one."""
    api_client = api_client_of(account, fresh=True)
    if api_client.configured_budget is None:
        return NoLimit()
    return DatabaseLimiter(api_client)
