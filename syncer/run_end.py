"""How a run ends: finished when no attempt is left, failed, or cancelled; exactly one caller wins each.

Below the services, so the queueing and the watchdog can fail a run without
reaching up to them; the services offer the same functions to their callers.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from campaigns.models import ACTIVE_RUN_STATUSES, AttemptStatus, ErrorCategory, RunStatus, SyncAttempt, SyncRun
from syncer import drain, janitor
from syncer.api_clients import api_client_of
from syncer.connections import patiently
from syncer.failures import internal_reason
from syncer.heartbeat import PROCESS_HEARTBEAT
from syncer.logs import bind_run

log = logging.getLogger(__name__)


def run_note_budget(*, run_id: int) -> None:
    """Say on the run when its platform allows less than configured ("the platform allows 6/60s; ..."), once."""
    run = SyncRun.objects.select_related("account").get(pk=run_id)
    api_client = api_client_of(run.account, fresh=True)
    note = api_client.budget_note if api_client else None
    if note and note not in run.warnings:
        SyncRun.objects.filter(pk=run_id).update(warnings=[*run.warnings, note])
        with bind_run(run_id):
            log.warning("%s", note)


def run_finish_if_done(*, run_id: int) -> bool:
    """End the run once no attempt is pending or running; exactly one caller wins.

    A run whose listing missed campaigns (campaigns_unlisted) never ends
    succeeded: partial, or failed when nothing synced.
    """
    if drain.unfinished_attempts(run_id).exists():
        return False
    run = SyncRun.objects.get(pk=run_id)
    if run.status != RunStatus.RUNNING or not run.prepared_at:
        return False
    if run.campaigns_failed == 0 and run.campaigns_unlisted == 0:
        status = RunStatus.SUCCEEDED
    else:
        status = RunStatus.PARTIAL if run.campaigns_synced else RunStatus.FAILED
    won = SyncRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(status=status, finished_at=timezone.now())
    if won:
        run_note_budget(run_id=run_id)
        with bind_run(run_id):
            log.info("run finished: %s (%s synced, %s failed)", status, run.campaigns_synced, run.campaigns_failed)
    return bool(won)


def run_fail(*, run_id: int, reason: str, category: str = "network") -> bool:
    """End a run that cannot go on; its unstarted attempts fail with the reason."""
    return _run_stop(run_id=run_id, status=RunStatus.FAILED, reason=reason, category=category)


def run_fail_internal(*, run_id: int, step: str, error: Exception) -> bool:
    """Fail the run at once on an error nobody planned for: one line on the run, the traceback in the log.

    The run's account can then sync again; left running, the watchdog would
    only resume the same error every lease.
    """
    with bind_run(run_id):
        log.error("internal error while %s", step, exc_info=error)
        try:
            return patiently(run_fail, run_id=run_id, reason=internal_reason(step, error),
                                   category=ErrorCategory.INTERNAL)
        except Exception:  # the database is away for good: the watchdog resumes the run, a bounded number of times
            log.exception("could not record the failure of the run")
            return False


def run_cancel(*, run_id: int, who: str = "") -> bool:
    """Stop a queued or running run: no new work starts, finished attempts are kept."""
    reason = f"cancelled by {who}" if who else "cancelled"
    return _run_stop(run_id=run_id, status=RunStatus.CANCELLED, reason=reason)


def _run_stop(*, run_id: int, status: str, reason: str, category: str = "") -> bool:
    now = timezone.now()
    with transaction.atomic():
        stopped = SyncRun.objects.filter(pk=run_id, status__in=ACTIVE_RUN_STATUSES).update(
            status=status, finished_at=now, error_message=reason[:1000],
        )
        if not stopped:
            return False
        pending = SyncAttempt.objects.filter(run_id=run_id, status=AttemptStatus.PENDING)
        if status == RunStatus.CANCELLED:
            janitor.attempts_cancel(attempts=pending, message=reason, now=now)
        else:
            janitor.attempts_fail(run_id=run_id, attempts=pending, message=f"not attempted: {reason}",
                                  category=category, now=now)
    if status == RunStatus.CANCELLED:
        PROCESS_HEARTBEAT.cancelled([run_id])  # this process's drains of it stop now, others' at their next beat
    with bind_run(run_id):
        log.warning("run %s: %s", status, reason)
    return True
