"""Thin django-q2 task wrappers: they take ids and call the services.

Every task is idempotent (django-q2 may deliver one twice) and ends well
inside the cluster's timeout: a drain works for one slice of time and
enqueues its own continuation while the run still has work.
"""
from __future__ import annotations

import logging
import math

from django.conf import settings
from django.db import transaction
from django_q.tasks import async_task

from campaigns.models import RunStatus, SyncRun
from syncer import services
from syncer.logs import bind_run

log = logging.getLogger(__name__)


def drain_slice_seconds() -> float:
    """How long one drain task works before handing over: half the cluster's timeout."""
    return settings.Q_CLUSTER["timeout"] / 2


def run_enqueue(run: SyncRun) -> None:
    """Queue the run's first step on the cluster once the run row is committed."""
    transaction.on_commit(lambda: prepare_enqueue(run.pk))


def prepare_enqueue(run_id: int) -> None:
    async_task("syncer.tasks.run_prepare_task", run_id, group=f"run-{run_id}", task_name=f"run-{run_id}-prepare")


def run_prepare_task(run_id: int) -> None:
    if services.run_prepare(run_id=run_id):
        run_fan_out(run_id)
    else:
        services.run_finish_if_done(run_id=run_id)


def run_fan_out(run_id: int) -> None:
    """Split the run's concurrency over several drain tasks, so several workers and hosts share it."""
    run = SyncRun.objects.get(pk=run_id)
    tasks = max(1, min(settings.SYNC["FAN_OUT"], run.concurrency))
    threads = math.ceil(run.concurrency / tasks)
    with bind_run(run_id):
        log.info("fanning out: %s drain tasks x %s threads", tasks, threads)
    for index in range(tasks):
        drain_enqueue(run_id, threads, index)


def drain_enqueue(run_id: int, threads: int, index: int = 0) -> None:
    async_task("syncer.tasks.run_drain_task", run_id, threads, group=f"run-{run_id}",
               task_name=f"run-{run_id}-drain-{index}")


def run_drain_task(run_id: int, threads: int) -> None:
    services.run_drain(run_id=run_id, threads=threads, max_seconds=drain_slice_seconds())
    run = SyncRun.objects.get(pk=run_id)
    if run.status == RunStatus.RUNNING and not services.run_finish_if_done(run_id=run_id):
        drain_enqueue(run_id, threads)  # time slice used up: carry on in a fresh task


def scheduled_sync_task(account_id: int) -> int | None:
    """Start the account's periodic sync; skip (and say so) when one is still going."""
    from campaigns.models import AdAccount, Trigger

    account = AdAccount.objects.filter(pk=account_id).first()
    if account is None:
        log.warning("scheduled sync skipped: account %s no longer exists", account_id)
        return None
    try:
        run = services.sync_run_start(account=account, trigger=Trigger.SCHEDULE, triggered_by="schedule", enqueue=True)
    except services.SyncRefused as refused:
        log.info("scheduled sync skipped: %s", refused)
        return None
    return run.pk
