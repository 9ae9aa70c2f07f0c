"""Claiming attempts: the durable queue's "take the next ones".

A claim marks pending attempts (or ones whose lease ran out) of a running
run as running, with a lease and a claim token unique to this claim;
completing one is a compare-and-set on that token (syncer/recording.py), so
an attempt taken over after its lease ran out is counted once.

This runs once per campaign or so, so it is plain SQL (syncer/sql.py).
"""
from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from campaigns.models import AttemptStatus, RunStatus, SyncAttempt, SyncRun
from syncer import sql


def attempts_claim(*, run_id: int, worker: str, limit: int = 1) -> list[SyncAttempt]:
    """Claim up to `limit` attempts of a running run: pending ones first, then ones whose lease ran out.

    Pending ones come first through the (run, status) index, so a claim
    costs the same at the start of a run of 100,000 as at its end. Each
    kind is claimed by one UPDATE of the rows its subquery locks (skipping
    rows other workers hold, on PostgreSQL): no transaction around it, which
    at 167 calls a second (a thousand accounts at the real budget) were two
    round trips a call more.
    """
    now = timezone.now()
    token = f"{worker}:{uuid.uuid4().hex[:8]}"
    lease_until = now + timedelta(seconds=settings.SYNC["LEASE_SECONDS"])
    claim = [AttemptStatus.RUNNING, token, sql.db_time(lease_until), sql.db_time(now)]
    with connection.cursor() as cursor:
        rows = _claim(cursor, claim, run_id, "a.status = %s", [AttemptStatus.PENDING], limit)
        if len(rows) < limit:
            rows += _claim(cursor, claim, run_id, "a.status = %s AND a.lease_expires_at < %s",
                           [AttemptStatus.RUNNING, sql.db_time(now)], limit - len(rows))
    return [SyncAttempt(id=pk, run_id=run_id, platform_id=platform_id, campaign_id=campaign_id,
                        status=AttemptStatus.RUNNING, claimed_by=token, lease_expires_at=lease_until, started_at=now)
            for pk, platform_id, campaign_id in sorted(rows)]


def _claim(cursor, claim: list, run_id: int, condition: str, params: list, limit: int) -> list[tuple]:
    skip_locked = " FOR UPDATE OF a SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    attempts = sql.table(SyncAttempt)
    cursor.execute(
        f"UPDATE {attempts} SET status = %s, claimed_by = %s, lease_expires_at = %s, started_at = %s "
        f"WHERE id IN (SELECT a.id FROM {attempts} a JOIN {sql.table(SyncRun)} r ON r.id = a.run_id "
        f"WHERE a.run_id = %s AND r.status = %s AND {condition} ORDER BY a.id LIMIT %s{skip_locked}) "
        f"RETURNING id, platform_id, campaign_id",
        [*claim, run_id, RunStatus.RUNNING, *params, limit])
    return cursor.fetchall()


def claims_release(attempts: list[SyncAttempt]) -> int:
    """Put claimed attempts that were never sent back in the queue (a worker stopping); how many went back.

    A compare-and-set on each claim's token: an attempt taken over since stays with its taker.
    """
    return SyncAttempt.objects.filter(
        pk__in=[attempt.pk for attempt in attempts], status=AttemptStatus.RUNNING,
        claimed_by__in={attempt.claimed_by for attempt in attempts},
    ).update(status=AttemptStatus.PENDING, claimed_by="", lease_expires_at=None, started_at=None)
