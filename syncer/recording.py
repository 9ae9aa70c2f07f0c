"""Record one attempt's outcome: the attempt, the run's counters and the campaign, in one transaction.

This runs once per campaign, so it is three plain SQL statements
(syncer/sql.py): compiling the same three ORM updates with F() expressions
cost a fifth of a sync's CPU.
The attempt update is a compare-and-set on the claim, so an attempt taken
over by another worker is counted once.
"""
from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction

from campaigns.models import AttemptStatus, Campaign, SyncAttempt, SyncRun
from syncer import sql
from syncer.calls import CallStats
from syncer.client import PlatformError

CALL_COUNTERS = ("requests", "retries", "rate_limited", "server_errors", "timeouts", "pages")


def _statements() -> dict[str, str]:
    attempts, runs, campaigns = (sql.table(model) for model in (SyncAttempt, SyncRun, Campaign))
    counters = ", ".join(f"{name} = {name} + %s" for name in CALL_COUNTERS)
    return {
        "attempt": f"UPDATE {attempts} SET status = %s, tries = tries + %s, http_status = %s, error_category = %s, "
                   f"message = %s, latency_ms = %s, finished_at = %s, lease_expires_at = NULL "
                   f"WHERE id = %s AND status = %s AND claimed_by = %s",
        "run": f"UPDATE {runs} SET campaigns_synced = campaigns_synced + %s, "
               f"campaigns_failed = campaigns_failed + %s, {counters}, heartbeat_at = %s WHERE id = %s",
        "synced": f"UPDATE {campaigns} SET last_sync_status = 'succeeded', last_synced_at = %s WHERE id = %s",
        "failed": f"UPDATE {campaigns} SET last_sync_status = 'failed' WHERE id = %s",
    }


def outcome_record(*, attempt: SyncAttempt, error: PlatformError | None, stats: CallStats, latency_ms: int,
                   now: datetime) -> bool:
    """Write the outcome unless the claim is no longer ours; True when it was written."""
    statements, succeeded = _statements(), error is None
    finished_at = sql.db_time(now)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statements["attempt"], [
            AttemptStatus.SUCCEEDED if succeeded else AttemptStatus.FAILED, 1 + stats.retries, stats.last_status,
            "" if succeeded else error.category, "" if succeeded else error.message[:500], latency_ms, finished_at,
            attempt.pk, AttemptStatus.RUNNING, attempt.claimed_by,
        ])
        if cursor.rowcount != 1:
            return False
        cursor.execute(statements["run"], [int(succeeded), int(not succeeded),
                                           *(getattr(stats, name) for name in CALL_COUNTERS), finished_at,
                                           attempt.run_id])  # an outcome is its run's sign of life too
        if attempt.campaign_id and succeeded:
            cursor.execute(statements["synced"], [finished_at, attempt.campaign_id])
        elif attempt.campaign_id:
            cursor.execute(statements["failed"], [attempt.campaign_id])
    return True
