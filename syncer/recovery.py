"""Resume runs whose workers died: a run without a heartbeat for a lease is picked up again.

Every cluster worker process runs a small watchdog thread (started by
django-q2's `post_spawn`) that looks once a lease for such runs, so a
cluster that was stopped, killed or crashed, here or on another host, is
carried on by whichever cluster is alive. A compare-and-set on the
heartbeat lets exactly one worker resume a run, a bounded number of times
(SYNC_MAX_RESUMES): a run whose workers fall silent every time fails,
saying so, instead of being listed again every lease.

The same thread publishes this cluster's SECRET_KEY fingerprint
(syncer/cluster_keys.py), fails the runs whose queued step it could never
verify, and closes the attempts nobody will finish in runs that ended
(syncer/janitor.py).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import ACTIVE_RUN_STATUSES, ErrorCategory, SyncRun
from syncer import janitor
from syncer.cluster_keys import MISMATCH, cluster_key_publish, key_fingerprint
from syncer.failures import mark_cluster_worker
from syncer.heartbeat import lease_seconds
from syncer.logs import bind_run
from syncer.queueing import prepare_enqueue, run_fan_out
from syncer.run_end import run_fail, run_fail_internal

log = logging.getLogger(__name__)


def stale_runs():
    """Active runs with no sign of life for a lease, except those whose next step waits in the queue.

    A step queued after the last heartbeat is still on its way (a busy
    queue may hold it for long) until the cluster's `retry` time, when
    django-q2 itself presumes a task lost; resuming such a run sooner would
    only queue more copies of the same step behind it.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=lease_seconds())
    lapsed = Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True, created_at__lt=stale_before)
    waiting_in_queue = Q(queued_at__gt=now - timedelta(seconds=settings.Q_CLUSTER["retry"])) & _step_queued()
    return SyncRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).filter(lapsed).exclude(waiting_in_queue)


def _step_queued() -> Q:
    """The run's last sign is a step put on the queue, not yet taken by a worker."""
    return Q(queued_at__isnull=False) & (Q(heartbeat_at__isnull=True) | Q(queued_at__gt=F("heartbeat_at")))


def runs_fail_unverifiable() -> list[int]:
    """Fail the active runs whose queued step was signed with another SECRET_KEY than this cluster's.

    This cluster drops such a task as unverifiable (django-q2 checks its
    signature), so the run would wait for it for good.
    """
    foreign = SyncRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).filter(_step_queued()).exclude(
        queued_key__in=["", key_fingerprint()])
    return [run_id for run_id in foreign.values_list("pk", flat=True)
            if run_fail(run_id=run_id, reason=f"its task could not be verified: {MISMATCH}",
                                 category=ErrorCategory.INTERNAL)]


def runs_resume_stale() -> list[int]:
    """Enqueue the next step of every active run nobody is working on; return their ids."""
    resumed = []
    for run in stale_runs():
        if run.resumes >= settings.SYNC["MAX_RESUMES"]:
            _fail_resumed_too_often(run)
            continue
        taken = SyncRun.objects.filter(pk=run.pk, heartbeat_at=run.heartbeat_at, queued_at=run.queued_at).update(
            queued_at=timezone.now(), queued_key=key_fingerprint(), resumes=F("resumes") + 1)
        if not taken:
            continue  # another worker resumed it a moment ago
        with bind_run(run.pk):
            log.warning("resuming run: no worker has shown signs of life for %s s", lease_seconds())
        try:
            if run.prepared_at:
                run_fan_out(run.pk)
            else:
                prepare_enqueue(run.pk)
        except Exception as error:
            run_fail_internal(run_id=run.pk, step="resuming", error=error)
            continue
        resumed.append(run.pk)
    return resumed


def _fail_resumed_too_often(run: SyncRun) -> None:
    most = settings.SYNC["MAX_RESUMES"]
    run_fail(run_id=run.pk, category=ErrorCategory.INTERNAL, reason=(
        f"its workers fell silent {run.resumes + 1} times (the watchdog resumes a run {most} "
        f"time{'' if most == 1 else 's'} at most, SYNC_MAX_RESUMES); see the cluster log for why"))


_watchdog_started = threading.Event()


WATCHDOG_DUTIES = (
    (cluster_key_publish, "publish this cluster's key fingerprint"),
    (runs_fail_unverifiable, "look for runs queued with another SECRET_KEY"),
    (runs_resume_stale, "look for runs to resume"),
    (janitor.ended_runs_sweep, "close the attempts left open in ended runs"),
)


def watchdog_pass() -> None:
    """One look at everything; a duty that fails (the database briefly away) is tried again next time."""
    for duty, what in WATCHDOG_DUTIES:
        try:
            duty()
        except Exception:
            log.exception("could not %s", what)
        finally:
            connection.close()


def watchdog_loop() -> None:
    while True:
        watchdog_pass()
        time.sleep(lease_seconds())


def on_worker_spawn(sender, proc_name: str = "", **kwargs) -> None:
    mark_cluster_worker()
    if not _watchdog_started.is_set():
        _watchdog_started.set()
        threading.Thread(target=watchdog_loop, name="resume-watchdog", daemon=True).start()
