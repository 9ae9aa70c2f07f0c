"""Resume runs whose workers died: a run without a heartbeat for a lease is picked up again.

Every cluster worker process runs a small watchdog thread (started by
django-q2's `post_spawn`) that looks once a lease for such runs, so a
cluster that was stopped, killed or crashed, here or on another host, is
carried on by whichever cluster is alive. A compare-and-set on the
heartbeat lets exactly one worker resume a run.
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

from campaigns.models import ACTIVE_RUN_STATUSES, SyncRun
from syncer.heartbeat import lease_seconds
from syncer.logs import bind_run

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
    waiting_in_queue = Q(queued_at__gt=now - timedelta(seconds=settings.Q_CLUSTER["retry"])) & (
        Q(heartbeat_at__isnull=True) | Q(queued_at__gt=F("heartbeat_at")))
    return SyncRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).filter(lapsed).exclude(waiting_in_queue)


def runs_resume_stale() -> list[int]:
    """Enqueue the next step of every active run nobody is working on; return their ids."""
    from syncer import tasks

    resumed = []
    for run in stale_runs():
        taken = SyncRun.objects.filter(pk=run.pk, heartbeat_at=run.heartbeat_at, queued_at=run.queued_at).update(
            queued_at=timezone.now())
        if not taken:
            continue  # another worker resumed it a moment ago
        with bind_run(run.pk):
            log.warning("resuming run: no worker has shown signs of life for %s s", lease_seconds())
        if run.prepared_at:
            tasks.run_fan_out(run.pk)
        else:
            tasks.prepare_enqueue(run.pk)
        resumed.append(run.pk)
    return resumed


_watchdog_started = threading.Event()


def watchdog_loop() -> None:
    while True:
        try:
            runs_resume_stale()
        except Exception:  # the database may be briefly away; look again next time
            log.exception("could not look for runs to resume")
        finally:
            connection.close()
        time.sleep(lease_seconds())


def on_worker_spawn(sender, proc_name: str = "", **kwargs) -> None:
    if not _watchdog_started.is_set():
        _watchdog_started.set()
        threading.Thread(target=watchdog_loop, name="resume-watchdog", daemon=True).start()
