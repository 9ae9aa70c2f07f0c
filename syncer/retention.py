"""History retention: old attempts, old runs and old failed-task records go, in short chunks.

What always stays: each campaign's latest attempt (the dead-letter list and
"Retry failed" read it), every attempt of an active run, and a run while
any attempt of it must stay. A kept run whose old attempts went is marked
`attempts_pruned_at`: its counters keep what the run did, so from then on
they are more than its attempts (tests/invariants.py says so).

Each chunk is one short transaction of at most `chunk_size` rows, its ids
read before it, so syncs write between chunks, on SQLite too. After each
chunk the prune rests `PAUSE_PER_WORK` times as long as the chunk took: back
to back, 990,000 attempts went in 26 s beside a fleet sync of 100 accounts
and slowed it by 29 % (SQLite has one writer, the machine two cores);
resting 4 s a second, by 2.8 %. A prune is never in a hurry (README,
Performance: "prune beside fleet").
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django_q.models import Task

from campaigns.models import ACTIVE_RUN_STATUSES, SyncAttempt, SyncRun

log = logging.getLogger(__name__)

CHUNK_SIZE = 2000
PAUSE_PER_WORK = 9.0  # seconds of rest per second of pruning: a tenth of the database's time at most
RUNS_PER_CHUNK = 100  # a run carries its kept attempts along: fewer runs than rows per transaction


@dataclass(frozen=True)
class PruneResult:
    attempts: int
    runs: int
    tasks: int
    dry_run: bool = False

    def summary(self) -> str:
        """"pruned 6 attempts, 1 run and 0 failed task records" (or "would prune" for a dry run)."""
        verb = "would prune" if self.dry_run else "pruned"
        return (f"{verb} {_count(self.attempts, 'attempt')}, {_count(self.runs, 'run')} and "
                f"{_count(self.tasks, 'failed task record')}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def history_prune(*, attempts_older_than: timedelta | None = None, runs_older_than: timedelta | None = None,
                  dry_run: bool = False, chunk_size: int = CHUNK_SIZE, pause: float = PAUSE_PER_WORK,
                  now: datetime | None = None) -> PruneResult:
    """Prune what is older than the limits (default: SYNC_PRUNE_ATTEMPTS_AFTER and SYNC_PRUNE_RUNS_AFTER)."""
    attempts_older_than = attempts_older_than or settings.SYNC["PRUNE_ATTEMPTS_AFTER"]
    runs_older_than = runs_older_than or settings.SYNC["PRUNE_RUNS_AFTER"]
    if runs_older_than < attempts_older_than:
        raise ValueError("runs must be kept at least as long as attempts: a run outlives its attempts")
    now = now or timezone.now()
    attempts_cutoff, runs_cutoff = now - attempts_older_than, now - runs_older_than
    if dry_run:
        return PruneResult(attempts=prunable_attempts(attempts_cutoff).count(),
                           runs=prunable_runs(runs_cutoff).count(),
                           tasks=prunable_tasks(attempts_cutoff).count(), dry_run=True)
    deleted = (_in_chunks(prunable_attempts(attempts_cutoff), chunk_size, lambda ids: _delete_attempts(ids, now),
                          pause)
               + _in_chunks(prunable_runs(runs_cutoff), min(chunk_size, RUNS_PER_CHUNK), _delete_rows(SyncRun), pause)
               + _in_chunks(prunable_tasks(attempts_cutoff), chunk_size, _delete_rows(Task), pause))
    # A pruned run's remaining attempts go with it: they count among the attempts.
    result = PruneResult(attempts=deleted[SyncAttempt._meta.label], runs=deleted[SyncRun._meta.label],
                         tasks=deleted[Task._meta.label])
    log.info("history: %s", result.summary())
    return result


# --- what may go ----------------------------------------------------------------

def _has_newer_attempt():
    # Walks the (campaign, -id) index: one probe per candidate.
    return Exists(SyncAttempt.objects.filter(campaign_id=OuterRef("campaign_id"), id__gt=OuterRef("id")))


def prunable_attempts(cutoff: datetime) -> QuerySet:
    """Attempts older than `cutoff` of ended runs, except each campaign's latest."""
    return (SyncAttempt.objects.filter(created_at__lt=cutoff).exclude(run__status__in=ACTIVE_RUN_STATUSES)
            .filter(Q(campaign__isnull=True) | _has_newer_attempt()))


def prunable_runs(cutoff: datetime) -> QuerySet:
    """Ended runs older than `cutoff` holding no campaign's latest attempt."""
    latest_of_a_campaign = (SyncAttempt.objects.filter(run_id=OuterRef("pk"), campaign__isnull=False)
                            .filter(~_has_newer_attempt()))
    return (SyncRun.objects.filter(created_at__lt=cutoff).exclude(status__in=ACTIVE_RUN_STATUSES)
            .filter(~Exists(latest_of_a_campaign)))


def prunable_tasks(cutoff: datetime) -> QuerySet:
    """django-q2's records of failed tasks that stopped before `cutoff` (successful ones are not kept)."""
    return Task.objects.filter(success=False, stopped__lt=cutoff)


# --- chunks ---------------------------------------------------------------------

def _in_chunks(queryset: QuerySet, chunk_size: int, delete: Callable[[list], dict[str, int]],
               pause: float) -> Counter:
    """Read up to `chunk_size` ids past the last chunk's, delete them in one transaction, rest; until none is left.

    Returns the rows deleted per model, as Django's delete() counts them.
    """
    deleted, after = Counter(), None
    while True:
        started = time.monotonic()
        page = queryset if after is None else queryset.filter(pk__gt=after)
        ids = list(page.order_by("pk").values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return deleted
        deleted.update(delete(ids))
        after = ids[-1]
        time.sleep((time.monotonic() - started) * pause)


def _delete_attempts(ids: list[int], now: datetime) -> dict[str, int]:
    """Delete the attempts and mark their runs: those runs' counters now count more than their attempts."""
    with transaction.atomic():
        run_ids = set(SyncAttempt.objects.filter(pk__in=ids).values_list("run_id", flat=True))
        _, deleted = SyncAttempt.objects.filter(pk__in=ids).delete()
        SyncRun.objects.filter(pk__in=run_ids, attempts_pruned_at__isnull=True).update(attempts_pruned_at=now)
    return deleted


def _delete_rows(model) -> Callable[[list], dict[str, int]]:
    def delete(ids: list) -> dict[str, int]:
        with transaction.atomic():
            return model.objects.filter(pk__in=ids).delete()[1]
    return delete
