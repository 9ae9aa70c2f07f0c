"""The second step of a run: workers claim pending attempts (syncer/claims.py) and sync them."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from campaigns.models import AttemptStatus, RunStatus, SyncAttempt, SyncRun
from syncer.calls import CallStats
from syncer.claims import attempts_claim, claims_release
from syncer.client import PlatformClient, PlatformError
from syncer.connections import patiently
from syncer.heartbeat import process_claims_prefix
from syncer.recording import CALL_COUNTERS, outcome_record
from syncer.stops import Stopped

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.5


@dataclass
class Outcome:
    error: PlatformError | None
    stats: CallStats
    latency_ms: int
    stopped: bool = False  # its stop was set while it waited: nothing to record, its claim goes back


def worker_name() -> str:
    return f"{process_claims_prefix()}{threading.get_ident() % 100000}"


class ClaimSize:
    """How many attempts a worker claims at once: one while calls are slow, up to ten when they are quick.

    Claiming several saves a transaction each when the platform answers in
    milliseconds; with slow calls claims stay single, so a cancel or another
    worker never waits on work held back in a batch.
    """

    HOLD_SECONDS, MOST = 0.05, 10

    def __init__(self) -> None:
        self.seconds_per_attempt: float | None = None

    def observe(self, seconds: float) -> None:
        previous = self.seconds_per_attempt
        self.seconds_per_attempt = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def next(self) -> int:
        if not self.seconds_per_attempt:
            return 1
        return max(1, min(self.MOST, int(self.HOLD_SECONDS / self.seconds_per_attempt)))


def attempt_sync(*, attempt: SyncAttempt, client: PlatformClient, stop: threading.Event | None = None) -> Outcome:
    """Sync one attempt's campaign; a stopped outcome when `stop` is set while it waits (budget, retry, outage)."""
    stats = CallStats()
    started = time.monotonic()
    try:
        client.sync_campaign(attempt.platform_id, stats=stats, stop=stop)
        error = None
    except PlatformError as platform_error:
        error = platform_error
    except Stopped:
        return Outcome(None, stats, 0, stopped=True)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return Outcome(error, stats, stats.last_latency_ms if stats.last_latency_ms is not None else elapsed_ms)


def attempt_complete(*, attempt: SyncAttempt, outcome: Outcome) -> bool:
    """Record the outcome and count it on the run, unless another worker took the attempt over."""
    return outcome_record(attempt=attempt, error=outcome.error, stats=outcome.stats,
                          latency_ms=outcome.latency_ms, now=timezone.now())


def calls_count(run_id: int, stats: CallStats) -> None:
    """Raise the run's call counters by what `stats` cost (one UPDATE with F() expressions)."""
    SyncRun.objects.filter(pk=run_id).update(**{name: F(name) + getattr(stats, name) for name in CALL_COUNTERS})


def unfinished_attempts(run_id: int):
    return SyncAttempt.objects.filter(run_id=run_id, status__in=[AttemptStatus.PENDING, AttemptStatus.RUNNING])


def drain_loop(*, run_id: int, client: PlatformClient, worker: str, deadline: float,
               on_fatal, watch: threading.Lock, stop: threading.Event | None = None) -> int:
    """Claim and sync attempts until none is left, the deadline passes or `stop` is set; return how many.

    Under a budget a claimed attempt waits for its rate slot; when `stop` is
    set meanwhile, it goes back to the queue unsent. When the work left is
    claimed by others, the thread holding `watch` (the first to find
    nothing, one per drain) waits to take over claims whose leases run out;
    the others end.
    """
    done, claim_size, watching = 0, ClaimSize(), False

    def ended() -> bool:
        return time.monotonic() >= deadline or bool(stop and stop.is_set())

    try:
        while not ended():
            attempts = patiently(attempts_claim, run_id=run_id, worker=worker, limit=claim_size.next())
            synced, fatal = _sync_claimed(attempts, client, claim_size, stop)
            done += synced
            if fatal is not None:
                on_fatal(fatal)
                return done
            if not attempts:
                # A hundred runs' idle threads asking twice a second were most of the database's work
                # in the runs' last window: one watcher per drain is enough, and only it asks.
                watching = watching or watch.acquire(blocking=False)
                if not watching or not patiently(_others_still_working, run_id):
                    break
                time.sleep(IDLE_POLL_SECONDS)  # take over their claims if their leases run out
    finally:
        if watching:
            watch.release()
        close_old_connections()
        connection.close()  # each thread has its own connection: give it back
    return done


def _sync_claimed(attempts: list[SyncAttempt], client: PlatformClient, claim_size: ClaimSize,
                  stop: threading.Event | None) -> tuple[int, PlatformError | None]:
    """Sync and record claimed attempts; how many were recorded, and the error that ends the run, if any.

    Stopped while one waits, it and the rest go back to the queue for the run's next worker (in a run
    cancelled meanwhile, the drain's end closes them); the tries it made before are counted on the run.
    """
    done = 0
    for index, attempt in enumerate(attempts):
        started = time.monotonic()
        outcome = attempt_sync(attempt=attempt, client=client, stop=stop)
        if outcome.stopped:
            patiently(claims_release, attempts[index:])
            if outcome.stats.requests:
                patiently(calls_count, attempt.run_id, outcome.stats)
            return done, None
        if patiently(attempt_complete, attempt=attempt, outcome=outcome):
            done += 1
            _log_outcome(attempt, outcome)
        claim_size.observe(time.monotonic() - started)
        if outcome.error is not None and outcome.error.fatal:
            for unstarted in attempts[index + 1:]:  # the same error would end them: say so
                patiently(attempt_complete, attempt=unstarted, outcome=Outcome(outcome.error, CallStats(), 0))
            return done, outcome.error
    return done, None


def _others_still_working(run_id: int) -> bool:
    return SyncRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).exists() and \
        unfinished_attempts(run_id).exists()


def _log_outcome(attempt: SyncAttempt, outcome: Outcome) -> None:
    if outcome.error is None:
        log.debug("synced %s in %s ms (%s tries)", attempt.platform_id, outcome.latency_ms, 1 + outcome.stats.retries)
    else:
        log.warning("failed %s: %s: %s", attempt.platform_id, outcome.error.category, outcome.error.message)
