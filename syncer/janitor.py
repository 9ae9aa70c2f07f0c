"""A run that has ended keeps no open attempt, whatever crashed on the way.

When a run ends, its pending attempts are closed with it (services
`_run_stop`); an attempt whose worker thread died stays running until its
lease runs out. These close such attempts: when a drain's threads have all
ended (their own claims are certainly abandoned), and from the watchdog for
runs that ended recently. Failed attempts are counted on the run in the
same transaction, so its counters stay equal to its attempts.
"""
from __future__ import annotations

import functools
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from campaigns.models import (
    ACTIVE_RUN_STATUSES,
    AttemptStatus,
    Campaign,
    ErrorCategory,
    RunStatus,
    SyncAttempt,
    SyncRun,
)

OPEN_ATTEMPT_STATUSES = (AttemptStatus.PENDING, AttemptStatus.RUNNING)
RECENTLY_ENDED = timedelta(days=1)  # the watchdog looks this far back; an abandoned claim's lease is seconds long
MESSAGE_LENGTH = 500
WORKER_STOPPED = "its worker stopped before recording the outcome"


def attempts_fail(*, run_id: int, attempts, message: str, category: str, now: datetime) -> int:
    """Fail `attempts` (a queryset of the run's open ones) and count them on the run; how many there were."""
    closing = list(attempts.values_list("pk", flat=True))
    count = SyncAttempt.objects.filter(pk__in=closing, status__in=OPEN_ATTEMPT_STATUSES).update(
        status=AttemptStatus.FAILED, error_category=category, message=message[:MESSAGE_LENGTH], finished_at=now,
        lease_expires_at=None)
    closed = SyncAttempt.objects.filter(pk__in=closing, status=AttemptStatus.FAILED, finished_at=now)
    Campaign.objects.filter(pk__in=closed.exclude(campaign__isnull=True).values("campaign_id")).update(
        last_sync_status="failed")
    SyncRun.objects.filter(pk=run_id).update(campaigns_failed=F("campaigns_failed") + count)
    return count


def attempts_cancel(*, attempts, message: str, now: datetime) -> int:
    return attempts.update(status=AttemptStatus.CANCELLED, message=message[:MESSAGE_LENGTH], finished_at=now,
                           lease_expires_at=None)


def attempts_close_abandoned(*, run_id: int, claim_prefix: str | None = None) -> int:
    """Close the open attempts of an ended run that no worker will finish; how many were closed.

    Those are the pending ones, the running ones whose lease ran out, and
    with `claim_prefix` the claims of a drain whose threads have all ended.
    Nothing happens while the run is active: its attempts are others' work.
    """
    run = SyncRun.objects.exclude(status__in=ACTIVE_RUN_STATUSES).filter(pk=run_id).first()
    if run is None:
        return 0
    now = timezone.now()
    abandoned = Q(status=AttemptStatus.PENDING) | Q(status=AttemptStatus.RUNNING, lease_expires_at__lt=now)
    if claim_prefix:
        abandoned |= Q(status=AttemptStatus.RUNNING, claimed_by__startswith=claim_prefix)
    attempts = SyncAttempt.objects.filter(run_id=run_id).filter(abandoned)
    never_claimed = attempts.filter(status=AttemptStatus.PENDING)
    claimed = attempts.filter(status=AttemptStatus.RUNNING)
    with transaction.atomic():
        if run.status == RunStatus.CANCELLED:
            reason = run.error_message or "cancelled"
            return attempts_cancel(attempts=never_claimed, message=reason, now=now) + \
                attempts_cancel(attempts=claimed, message=f"{reason}; {WORKER_STOPPED}", now=now)
        ended = f"the run {run.status}" + (f": {run.error_message}" if run.error_message else "")
        fail = functools.partial(attempts_fail, run_id=run_id, category=ErrorCategory.INTERNAL, now=now)
        return fail(attempts=never_claimed, message=f"not attempted: {run.error_message or ended}") + \
            fail(attempts=claimed, message=f"{WORKER_STOPPED}; {ended}")


def ended_runs_sweep() -> list[int]:
    """Close what nobody will finish in the runs that ended lately; the ids of the runs that had any."""
    since = timezone.now() - RECENTLY_ENDED
    open_attempts = SyncAttempt.objects.filter(run=OuterRef("pk"), status__in=OPEN_ATTEMPT_STATUSES)
    ended = SyncRun.objects.exclude(status__in=ACTIVE_RUN_STATUSES).filter(finished_at__gt=since)
    swept = []
    for run_id in ended.filter(Exists(open_attempts)).values_list("pk", flat=True):
        if attempts_close_abandoned(run_id=run_id):
            swept.append(run_id)
    return swept
