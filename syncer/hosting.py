"""Drain threads hosted in a cluster worker process, so a run does not hold a worker for its length.

A drain is I/O-bound (it mostly waits on the platform and on the rate
budget), so a drain task hosts the run's drain threads in the worker
process and returns, and the worker takes the next task. That lets four
workers carry a hundred accounts side by side. When a process hosts its
share of threads already, the task works in the foreground instead: a
drain for one time slice, then it queues its own continuation.

(Working a run in the foreground would spread one run over more cores, but
it holds a worker for the run's length: with a hundred accounts queued,
that starved the runs behind it.)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from multiprocessing import util as multiprocessing_util

from django.conf import settings
from django.db import connection

from campaigns.models import RunStatus, SyncRun
from syncer import services
from syncer.queueing import drain_enqueue
from syncer.stops import Stop


@dataclass
class _Hosting:
    """What this worker process hosts: the threads in use, and the signal that stops them at exit."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: int = 0
    stopping: Stop = field(default_factory=Stop)
    exit_hook: object = None


HOSTING = _Hosting()


def stopping() -> Stop:
    """Set when this worker process exits: hosted drains finish their calls in flight and stop claiming."""
    return HOSTING.stopping


def host(run_id: int, threads: int, work, *, step: str) -> bool:
    """Run `work()` in a thread of this process if it has room for `threads` more (it outlives the task)."""
    with HOSTING.lock:
        if HOSTING.threads + threads > settings.SYNC["THREADS_PER_WORKER"]:
            return False
        HOSTING.threads += threads
        _stop_hosted_drains_at_exit()
    threading.Thread(target=_hosted, args=(run_id, threads, work, step), name=f"drain-run{run_id}").start()
    return True


def _hosted(run_id: int, threads: int, work, step: str) -> None:
    try:
        work()
    except Exception as error:  # resumed, it would meet the same error every lease
        services.run_fail_internal(run_id=run_id, step=step, error=error)
    finally:
        with HOSTING.lock:
            HOSTING.threads -= threads
        connection.close()


def _stop_hosted_drains_at_exit() -> None:
    """When the worker exits (cluster stop, recycle), hosted drains stop; the process waits for them.

    The threads are not daemons; a run left unfinished is resumed by the
    watchdog once its heartbeat lapses.
    """
    if HOSTING.exit_hook is None:
        HOSTING.exit_hook = multiprocessing_util.Finalize(None, HOSTING.stopping.set, exitpriority=100)


def drain_slice_seconds() -> float:
    """How long one foreground drain task works before handing over: half the cluster's timeout."""
    return settings.Q_CLUSTER["timeout"] / 2


def drain_one_slice(run_id: int, threads: int) -> None:
    """Drain in the foreground for one time slice, then queue the run's continuation if work is left."""
    services.run_drain(run_id=run_id, threads=threads, max_seconds=drain_slice_seconds())
    run = SyncRun.objects.get(pk=run_id)
    if run.status == RunStatus.RUNNING and not services.run_finish_if_done(run_id=run_id):
        drain_enqueue(run_id, threads)  # time slice used up: carry on in a fresh task
