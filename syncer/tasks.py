"""Thin django-q2 task wrappers: they take ids and call the services.

Every task is idempotent (django-q2 may deliver one twice) and ends well
inside the cluster's timeout. A drain is I/O-bound (it mostly waits on the
platform and on the rate budget), so a drain task does not hold a worker
process for the run's length: it hosts the run's drain threads in the
worker process and returns, and the worker takes the next task. That lets
four workers carry a hundred accounts side by side. The prepare task does
the same and starts draining as soon as the run is prepared. When a process
hosts its share of threads already, the task works in the foreground (a
drain for one time slice, then it queues its own continuation).

Whatever a task meets, its run does not stay active without a worker: an
unexpected error fails the run at once (services.run_fail_internal), and a
step that cannot be put on the broker fails its run, saying so.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
from multiprocessing import util as multiprocessing_util

from django.conf import settings
from django.db import connection, transaction
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from campaigns.models import ErrorCategory, RunStatus, SyncRun
from syncer import services
from syncer.cluster_keys import key_fingerprint
from syncer.failures import not_queued_reason
from syncer.logs import bind_run

log = logging.getLogger(__name__)

_hosting_lock = threading.Lock()
_hosted_threads = 0
_stopping = threading.Event()  # set when this worker process exits: hosted drains stop claiming
_exit_hook = None
_brokers: dict[str, Broker] = {}  # one per queue name in this process
_brokers_lock = threading.Lock()

SLOW_CALL_SECONDS = 2.0  # the platform's documented time for a sync call


def drain_slice_seconds() -> float:
    """How long one foreground drain task works before handing over: half the cluster's timeout."""
    return settings.Q_CLUSTER["timeout"] / 2


def run_enqueue(run: SyncRun) -> None:
    """Queue the run's first step on the cluster once the run row is committed.

    Each run's callback stands on its own: one whose enqueue fails fails
    its run (and says so on `run`, for the caller) instead of stopping the
    callbacks of the other runs committed with it.
    """
    shape = fan_out_shape(run)  # known now: the worker need not read the run to know it
    transaction.on_commit(lambda: _first_step_enqueue(run, shape))


def _first_step_enqueue(run: SyncRun, shape: tuple[int, int]) -> None:
    reason = _queue_step(run.pk, "syncer.tasks.run_prepare_task", *shape, step="prepare")
    if reason:  # the caller tells its user which run failed, and why
        run.status, run.error_message = RunStatus.FAILED, reason


def prepare_enqueue(run_id: int, shape: tuple[int, int] | None = None) -> bool:
    """Queue the run's prepare step; False when the broker took nothing (then the run has failed)."""
    return not _queue_step(run_id, "syncer.tasks.run_prepare_task", *(shape or ()), step="prepare")


def _queue_step(run_id: int, func: str, *args, step: str) -> str | None:
    """Put one of the run's steps on the broker; one that cannot be queued fails its run at once: why, or None.

    Left queued, the run would wait for the cluster's retry time (an hour)
    before the watchdog presumed its step lost. Nothing here raises, so the
    enqueues of the other runs committed with this one still happen.
    """
    try:
        async_task(func, run_id, *args, group=f"run-{run_id}", task_name=f"run-{run_id}-{step}", broker=_broker())
        return None
    except Exception as error:
        reason = not_queued_reason(error)
        with bind_run(run_id):
            log.error("could not queue the run's %s step on the task broker", step, exc_info=error)
            try:
                services.run_fail(run_id=run_id, reason=reason, category=ErrorCategory.INTERNAL)
            except Exception:  # the database is away too: the watchdog resumes the run once it is back
                log.exception("could not record that the run's task was not queued")
        return reason


def _broker() -> Broker:
    """This process's broker for the queue: django-q2 builds one per task unless given one.

    With Redis that was a new connection per task, and opening one costs a
    millisecond of CPU: a tenth of a second to start a hundred accounts.
    """
    with _brokers_lock:
        broker = _brokers.get(Conf.CLUSTER_NAME)
        if broker is None:
            broker = _brokers[Conf.CLUSTER_NAME] = get_broker()
        return broker


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
    if _host(run_id, threads, lambda: _prepare_and_drain(run_id, tasks, threads), step="preparing"):
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
    services.run_drain(run_id=run_id, threads=threads, stop=_stopping, beat_now=False)


def fan_out_shape(run: SyncRun) -> tuple[int, int]:
    """How the run's concurrency is split: so many drain tasks of so many threads each.

    A run whose rate budget one drain keeps up with, even at the platform's
    slow SLOW_CALL_SECONDS a call, stays in one task: a second task would
    only add a client, a token, a heartbeat and connections on another worker
    (at the reference 10/60s a run makes one call every six seconds).
    """
    budget = run.account.budget
    if budget is not None and budget.calls / budget.window_seconds <= run.concurrency / SLOW_CALL_SECONDS:
        return 1, run.concurrency
    tasks = max(1, min(settings.SYNC["FAN_OUT"], run.concurrency))
    return tasks, math.ceil(run.concurrency / tasks)


def run_fan_out(run_id: int) -> None:
    """Split the run's concurrency over several drain tasks, so several workers and hosts share it."""
    tasks, threads = fan_out_shape(SyncRun.objects.select_related("account").get(pk=run_id))
    with bind_run(run_id):
        log.info("fanning out: %s drain tasks x %s threads", tasks, threads)
    for index in range(tasks):
        if not drain_enqueue(run_id, threads, index):
            return  # the run failed: the broker is away


def drain_enqueue(run_id: int, threads: int, index: int = 0) -> bool:
    """Queue one drain task of the run, noting whose SECRET_KEY signs it; False when the run failed instead."""
    SyncRun.objects.filter(pk=run_id).exclude(queued_key=key_fingerprint()).update(queued_key=key_fingerprint())
    return not _queue_step(run_id, "syncer.tasks.run_drain_task", threads, step=f"drain-{index}")


@_failing_the_run("syncing")
def run_drain_task(run_id: int, threads: int) -> None:
    if not _host(run_id, threads, lambda: services.run_drain(run_id=run_id, threads=threads, stop=_stopping),
                 step="syncing"):
        _drain_one_slice(run_id, threads)


def _host(run_id: int, threads: int, work, *, step: str) -> bool:
    """Run `work()` in a thread of this worker process, if it has room for `threads` more; it outlives the task.

    (Working a run in the foreground would spread one run over more cores,
    but it holds a worker for the run's length: with a hundred accounts
    queued, that starved the runs behind it.)
    """
    global _hosted_threads
    with _hosting_lock:
        if _hosted_threads + threads > settings.SYNC["THREADS_PER_WORKER"]:
            return False
        _hosted_threads += threads
        _stop_hosted_drains_at_exit()
    threading.Thread(target=_hosted, args=(run_id, threads, work, step), name=f"drain-run{run_id}").start()
    return True


def _hosted(run_id: int, threads: int, work, step: str) -> None:
    global _hosted_threads
    try:
        work()
    except Exception as error:  # resumed, it would meet the same error every lease
        services.run_fail_internal(run_id=run_id, step=step, error=error)
    finally:
        with _hosting_lock:
            _hosted_threads -= threads
        connection.close()


def _stop_hosted_drains_at_exit() -> None:
    """When the worker exits (cluster stop, recycle), drains finish their calls in flight and stop.

    The threads are not daemons, so the process waits for them; a run left
    unfinished is resumed by the watchdog once its heartbeat lapses.
    """
    global _exit_hook
    if _exit_hook is None:
        _exit_hook = multiprocessing_util.Finalize(None, _stopping.set, exitpriority=100)


def _drain_one_slice(run_id: int, threads: int) -> None:
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
