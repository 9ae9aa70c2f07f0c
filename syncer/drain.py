"""The second step of a run: workers claim pending attempts and sync them.

The attempt rows are the durable queue. A claim marks an attempt running
with a lease and a claim token unique to this claim; completing it is a
compare-and-set on that token, so an attempt taken over after its lease ran
out is counted once, by whoever finished it first.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import AttemptStatus, Campaign, RunStatus, SyncAttempt, SyncRun
from syncer.client import CallStats, PlatformClient, PlatformError
from syncer.writes import write_transaction

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.5
DATABASE_PATIENCE_SECONDS = 120  # how long a worker waits out a database restart


@dataclass
class Outcome:
    error: PlatformError | None
    stats: CallStats
    latency_ms: int


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


def attempt_claim(*, run_id: int, worker: str) -> SyncAttempt | None:
    """Claim the next pending attempt (or one whose lease ran out) of a running run."""
    now = timezone.now()
    claimable = SyncAttempt.objects.filter(run_id=run_id, run__status=RunStatus.RUNNING).filter(
        Q(status=AttemptStatus.PENDING) | Q(status=AttemptStatus.RUNNING, lease_expires_at__lt=now)
    )
    if connection.features.has_select_for_update_skip_locked:
        claimable = claimable.select_for_update(skip_locked=True, of=("self",))
    with write_transaction():  # on SQLite an IMMEDIATE transaction: one claimer at a time
        attempt = claimable.order_by("id").first()
        if attempt is None:
            return None
        attempt.status = AttemptStatus.RUNNING
        attempt.claimed_by = f"{worker}:{uuid.uuid4().hex[:8]}"
        attempt.lease_expires_at = now + timedelta(seconds=settings.SYNC["LEASE_SECONDS"])
        attempt.started_at = now
        attempt.save(update_fields=["status", "claimed_by", "lease_expires_at", "started_at"])
    return attempt


def attempt_sync(*, attempt: SyncAttempt, client: PlatformClient) -> Outcome:
    stats = CallStats()
    started = time.monotonic()
    try:
        client.sync_campaign(attempt.platform_id, stats=stats)
        error = None
    except PlatformError as platform_error:
        error = platform_error
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return Outcome(error, stats, stats.last_latency_ms if stats.last_latency_ms is not None else elapsed_ms)


def attempt_complete(*, attempt: SyncAttempt, outcome: Outcome) -> bool:
    """Record the outcome and count it on the run, unless another worker took the attempt over."""
    now = timezone.now()
    error, stats = outcome.error, outcome.stats
    succeeded = error is None
    with write_transaction():
        updated = SyncAttempt.objects.filter(
            pk=attempt.pk, status=AttemptStatus.RUNNING, claimed_by=attempt.claimed_by,
        ).update(
            status=AttemptStatus.SUCCEEDED if succeeded else AttemptStatus.FAILED,
            tries=F("tries") + 1 + stats.retries, http_status=stats.last_status,
            error_category="" if succeeded else error.category, message="" if succeeded else error.message[:500],
            latency_ms=outcome.latency_ms, finished_at=now, lease_expires_at=None,
        )
        if not updated:
            return False
        SyncRun.objects.filter(pk=attempt.run_id).update(
            campaigns_synced=F("campaigns_synced") + int(succeeded),
            campaigns_failed=F("campaigns_failed") + int(not succeeded),
            **counter_increments(stats),
        )
        if attempt.campaign_id:
            fields = {"last_sync_status": "succeeded", "last_synced_at": now} if succeeded else {"last_sync_status": "failed"}
            Campaign.objects.filter(pk=attempt.campaign_id).update(**fields)
    return True


def counter_increments(stats: CallStats) -> dict:
    return {
        "requests": F("requests") + stats.requests, "retries": F("retries") + stats.retries,
        "rate_limited": F("rate_limited") + stats.rate_limited, "server_errors": F("server_errors") + stats.server_errors,
        "timeouts": F("timeouts") + stats.timeouts, "pages": F("pages") + stats.pages,
    }


def unfinished_attempts(run_id: int):
    return SyncAttempt.objects.filter(run_id=run_id, status__in=[AttemptStatus.PENDING, AttemptStatus.RUNNING])


def drain_loop(*, run_id: int, client: PlatformClient, worker: str, deadline: float,
               on_fatal, stop: threading.Event | None = None) -> int:
    """Claim and sync attempts until none is left, the deadline passes or `stop` is set; return how many."""
    done = 0
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            attempt = patiently(attempt_claim, run_id=run_id, worker=worker)
            if attempt is None:
                if not patiently(_others_still_working, run_id):
                    break
                time.sleep(IDLE_POLL_SECONDS)  # take over their claims if their leases run out
                continue
            outcome = attempt_sync(attempt=attempt, client=client)
            if patiently(attempt_complete, attempt=attempt, outcome=outcome):
                done += 1
                _log_outcome(attempt, outcome)
            if outcome.error is not None and outcome.error.fatal:
                on_fatal(outcome.error)
                break
    finally:
        close_old_connections()
        connection.close()  # each thread has its own connection: give it back
    return done


def patiently(step, *args, **kwargs):
    """Run one database step, waiting out a briefly unavailable database (a restart, a lock)."""
    started, delay = time.monotonic(), 0.2
    while True:
        try:
            return step(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() - started > DATABASE_PATIENCE_SECONDS:
                raise
            log.warning("database unavailable (%s); trying again in %.1f s", type(error).__name__, delay)
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _others_still_working(run_id: int) -> bool:
    return SyncRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).exists() and \
        unfinished_attempts(run_id).exists()


def _log_outcome(attempt: SyncAttempt, outcome: Outcome) -> None:
    if outcome.error is None:
        log.info("synced %s in %s ms (%s tries)", attempt.platform_id, outcome.latency_ms, 1 + outcome.stats.retries)
    else:
        log.warning("failed %s: %s: %s", attempt.platform_id, outcome.error.category, outcome.error.message)
