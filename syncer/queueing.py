"""Putting a run's steps on the task broker, and how a run's concurrency is split over drain tasks.

Below the services (they queue a new run's first step here) and above the
run's ending (a step that cannot be queued fails its run at once, saying
so). Left queued, such a run would wait for the cluster's retry time (an
hour) before the watchdog presumed its step lost.
"""
from __future__ import annotations

import functools
import logging
import math

from django.conf import settings
from django.db import transaction
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from campaigns.models import ErrorCategory, RunStatus, SyncRun
from syncer.cluster_keys import key_fingerprint
from syncer.failures import not_queued_reason
from syncer.logs import bind_run
from syncer.run_end import run_fail

log = logging.getLogger(__name__)

PREPARE_TASK = "syncer.tasks.run_prepare_task"
DRAIN_TASK = "syncer.tasks.run_drain_task"
SLOW_CALL_SECONDS = 2.0  # the platform's documented time for a sync call


def run_enqueue(run: SyncRun) -> None:
    """Queue the run's first step on the cluster once the run row is committed.

    Each run's callback stands on its own: one whose enqueue fails fails
    its run (and says so on `run`, for the caller) instead of stopping the
    callbacks of the other runs committed with it.
    """
    shape = fan_out_shape(run)  # known now: the worker need not read the run to know it
    transaction.on_commit(lambda: _first_step_enqueue(run, shape))


def _first_step_enqueue(run: SyncRun, shape: tuple[int, int]) -> None:
    reason = _queue_step(run.pk, PREPARE_TASK, *shape, step="prepare")
    if reason:  # the caller tells its user which run failed, and why
        run.status, run.error_message = RunStatus.FAILED, reason


def prepare_enqueue(run_id: int, shape: tuple[int, int] | None = None) -> bool:
    """Queue the run's prepare step; False when the broker took nothing (then the run has failed)."""
    return not _queue_step(run_id, PREPARE_TASK, *(shape or ()), step="prepare")


def drain_enqueue(run_id: int, threads: int, index: int = 0) -> bool:
    """Queue one drain task of the run, noting whose SECRET_KEY signs it; False when the run failed instead."""
    SyncRun.objects.filter(pk=run_id).exclude(queued_key=key_fingerprint()).update(queued_key=key_fingerprint())
    return not _queue_step(run_id, DRAIN_TASK, threads, step=f"drain-{index}")


def run_fan_out(run_id: int) -> None:
    """Split the run's concurrency over several drain tasks, so several workers and hosts share it."""
    tasks, threads = fan_out_shape(SyncRun.objects.select_related("account").get(pk=run_id))
    with bind_run(run_id):
        log.info("fanning out: %s drain tasks x %s threads", tasks, threads)
    for index in range(tasks):
        if not drain_enqueue(run_id, threads, index):
            return  # the run failed: the broker is away


def fan_out_shape(run: SyncRun) -> tuple[int, int]:
    """How the run's concurrency is split: so many drain tasks of so many threads each.

    A run whose rate budget one drain keeps up with, even at the platform's
    slow SLOW_CALL_SECONDS a call, stays in one task: a second task would
    only add a client, a token, a heartbeat and connections on another worker
    (at the reference 10/60s a run makes one call every six seconds), and
    only with the threads its budget keeps busy.
    """
    budget = run.account.budget
    needed = budget_threads(budget) if budget is not None else None
    if needed is not None and needed - 1 <= run.concurrency:  # the run's threads carry its budget at 2 s a call
        return 1, min(run.concurrency, needed)
    tasks = max(1, min(settings.SYNC["FAN_OUT"], run.concurrency))
    return tasks, math.ceil(run.concurrency / tasks)


def budget_threads(budget) -> int:
    """Threads that keep a budget's calls going at SLOW_CALL_SECONDS a call, and one for a call that hangs.

    At the reference 10/60s that is 2, not the account's 10: a thousand
    accounts synced together on two clusters hosted ten thousand idle
    threads, and the workers, full, held the runs queued behind them.
    """
    return math.ceil(budget.calls / budget.window_seconds * SLOW_CALL_SECONDS) + 1


def _queue_step(run_id: int, func: str, *args, step: str) -> str | None:
    """Put one of the run's steps on the broker; one that cannot be queued fails its run at once: why, or None.

    Nothing here raises, so the enqueues of the other runs committed with
    this one still happen.
    """
    try:
        async_task(func, run_id, *args, group=f"run-{run_id}", task_name=f"run-{run_id}-{step}",
                   broker=broker_for(Conf.CLUSTER_NAME))
        return None
    except Exception as error:
        reason = not_queued_reason(error)
        with bind_run(run_id):
            log.error("could not queue the run's %s step on the task broker", step, exc_info=error)
            try:
                run_fail(run_id=run_id, reason=reason, category=ErrorCategory.INTERNAL)
            except Exception:  # the database is away too: the watchdog resumes the run once it is back
                log.exception("could not record that the run's task was not queued")
        return reason


@functools.lru_cache(maxsize=8)
def broker_for(queue_name: str) -> Broker:
    """This process's broker for a queue (a bounded cache: one entry per queue name).

    django-q2 builds one per task unless given one; with Redis that was a
    new connection per task, and opening one costs a millisecond of CPU: a
    tenth of a second to start a hundred accounts.
    """
    return get_broker(queue_name)
