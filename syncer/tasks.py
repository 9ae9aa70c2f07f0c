"""django-q2 task entry points: each loads by id and calls the services; nothing else lives here.

Every task is idempotent (django-q2 may deliver one twice) and ends well
inside the cluster's timeout: the drain threads it starts are hosted by the
worker process (syncer/hosting.py) and outlive it. Whatever a task meets,
its run does not stay active without a worker: an unexpected error fails
the run at once, and a step that cannot be put on the broker fails its run,
saying so (syncer/queueing.py).
"""
from __future__ import annotations

import functools
import logging

from campaigns.models import AdAccount, SyncRun, Trigger
from syncer import hosting, keep_fresh, retention, services
from syncer.alerting.check import alerts_check
from syncer.queueing import drain_enqueue, fan_out_shape, run_fan_out

log = logging.getLogger(__name__)


def _failing_the_run(step: str):
    """A task whose unexpected error fails its run at once (the log keeps the traceback)."""
    def decorate(task):
        @functools.wraps(task)
        def guarded(run_id: int, *args) -> None:
            try:
                task(run_id, *args)
            except Exception as error:
                services.run_fail_internal(run_id=run_id, step=step, error=error)
        return guarded
    return decorate


@_failing_the_run("preparing")
def run_prepare_task(run_id: int, tasks: int | None = None, threads: int | None = None) -> None:
    """Prepare the run and start draining it here at once; the other drain tasks go to the queue.

    Draining where the run was prepared means a run does not wait for its
    drain tasks to come up through a queue that may hold a hundred other
    runs' prepares. The run's fan-out shape comes with the task when it
    was known at enqueue.
    """
    if threads is None:
        tasks, threads = fan_out_shape(SyncRun.objects.select_related("account").get(pk=run_id))
    if hosting.host(run_id, threads, lambda: _prepare_and_drain(run_id, tasks, threads), step="preparing"):
        return
    if services.run_prepare(run_id=run_id):
        run_fan_out(run_id)
    else:
        services.run_finish_if_done(run_id=run_id)


def _prepare_and_drain(run_id: int, tasks: int, threads: int) -> None:
    if not services.run_prepare(run_id=run_id):
        services.run_finish_if_done(run_id=run_id)
        return
    for index in range(1, tasks):
        if not drain_enqueue(run_id, threads, index):
            return  # the run failed: the broker is away
    services.run_drain(run_id=run_id, threads=threads, stop=hosting.stopping(), beat_now=False)
    keep_fresh.keep_fresh_continue(run_id=run_id, stop=hosting.stopping())


@_failing_the_run("syncing")
def run_drain_task(run_id: int, threads: int) -> None:
    def drain() -> None:
        services.run_drain(run_id=run_id, threads=threads, stop=hosting.stopping())
        keep_fresh.keep_fresh_continue(run_id=run_id, stop=hosting.stopping())  # a keep-fresh run: the next one

    if not hosting.host(run_id, threads, drain, step="syncing"):
        hosting.drain_one_slice(run_id, threads)


def scheduled_sync_task(account_id: int) -> int | None:
    """Start the account's periodic sync; skip (and say so) when one is still going."""
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


def prune_history_task() -> str:
    """The daily prune (syncer/schedules.py), with the SYNC_PRUNE_* limits."""
    return retention.history_prune().summary()

def keep_fresh_tick_task() -> int:
    """Every minute: start the next run of every keep-fresh account that has none (syncer/keep_fresh.py)."""
    return keep_fresh.keep_fresh_tick()


def alerts_check_task() -> int:
    """Every minute: open and resolve alerts and send their messages; how many transitions it found."""
    evaluation = alerts_check()
    return len(evaluation.opened) + len(evaluation.resolved)
