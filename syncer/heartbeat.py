"""Signs of life: a working process renews its claims and its runs' heartbeats.

Leases stay short (SYNC_LEASE_SECONDS) so that the claims of a killed
worker are taken over within seconds, while a live worker keeps its claims
however long a call takes.

One thread per process beats for every run the process works on, in a
few statements every third of a lease however many runs that is. It keeps
its connection while it has runs, so a beat never queues for one behind
the drains' steps. A thread per
run was 30 % of a worker's time with a thousand accounts synced at the
real budget (py-spy, fleet-real: 125 runs a worker, 100 beats a second
across the fleet).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from campaigns.models import AttemptStatus, RunStatus, SyncAttempt, SyncRun
from syncer.connections import connection_release


def lease_seconds() -> float:
    return settings.SYNC["LEASE_SECONDS"]


def process_claims_prefix() -> str:
    """What every claim of this process starts with (a drain's claims add its thread and index)."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def beat(run_ids: list[int]) -> list[int]:
    """Renew this process's claims on the runs, then the runs, skipping rows another transaction holds;
    return the runs among them that were cancelled (from the admin, the status page, another process).

    A row held is being written by a live worker (an outcome or a prepared
    listing beats its run itself, a claim sets a fresh lease), so waiting
    for it adds nothing, and on a machine out of CPU it costs: one beat for
    a hundred runs waits for each of their writers in turn, holding the
    rows it has updated meanwhile. (A fleet-real run on a machine also
    running py-spy had the watchdog resume 132 live runs, whose calls then
    went twice.)
    """
    now = timezone.now()
    _unlocked_update(SyncAttempt.objects.filter(
        run_id__in=run_ids, status=AttemptStatus.RUNNING, claimed_by__startswith=process_claims_prefix(),
    ), lease_expires_at=now + timedelta(seconds=lease_seconds()))
    _unlocked_update(SyncRun.objects.filter(pk__in=run_ids), heartbeat_at=now)
    return list(SyncRun.objects.filter(pk__in=run_ids, status=RunStatus.CANCELLED).values_list("pk", flat=True))


def _unlocked_update(rows, **values) -> None:
    with transaction.atomic():  # SQLite has no row locks (nor SKIP LOCKED): every row is free there
        free = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True))
        rows.model.objects.filter(pk__in=free).update(**values)


class ProcessHeartbeat:
    """The runs this process works on (the blocks open on each), and the one thread beating for them.

    A block may bring an event to set when its run is found cancelled:
    its drain's stop, so calls waiting for the budget or a retry go back
    unsent instead of going out a window after the cancel.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, list[threading.Event | None]] = defaultdict(list)  # per run, each open block's event
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: int, on_cancel: threading.Event | None = None) -> None:
        with self._lock:
            self._runs[run_id].append(on_cancel)
            if self._thread is None or not self._thread.is_alive():  # none yet, or a forked worker's copy
                self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
                self._thread.start()
        self._woken.set()  # the lease may be another now (a test's, an edited setting): time the next beat anew

    def remove(self, run_id: int, on_cancel: threading.Event | None = None) -> None:
        with self._lock:
            self._runs[run_id].remove(on_cancel)
            if not self._runs[run_id]:
                del self._runs[run_id]
            if not self._runs:
                self._woken.set()  # the last run ended: give the connection back now

    def cancelled(self, run_ids: list[int]) -> None:
        """The runs were cancelled: set the events their blocks here brought."""
        with self._lock:
            events = [event for run_id in run_ids for event in self._runs.get(run_id, ())]
        for event in events:
            if event is not None:
                event.set()

    def _loop(self) -> None:
        last = time.monotonic()
        while True:
            self._woken.wait(max(0.0, last + lease_seconds() / 3 - time.monotonic()))
            self._woken.clear()
            with self._lock:
                run_ids = list(self._runs)
            if not run_ids:
                connection.close()  # nothing to beat for: hold no connection while idle
                continue
            if time.monotonic() < last + lease_seconds() / 3:
                continue
            last = time.monotonic()
            try:
                self.cancelled(beat(run_ids))
            except DatabaseError:  # a database restart: beat again next time, on a new connection
                connection.close()


PROCESS_HEARTBEAT = ProcessHeartbeat()


@contextmanager
def heartbeat(*, run_id: int, beat_now: bool = True, on_cancel: threading.Event | None = None):
    """Beat now (unless the caller just did) and every third of a lease until the block ends; set `on_cancel`
    when a beat finds the run cancelled (within a third of a lease), or at once on a cancel in this process."""
    PROCESS_HEARTBEAT.add(run_id, on_cancel)
    try:
        if beat_now:
            PROCESS_HEARTBEAT.cancelled(beat([run_id]))
        connection_release()  # the block waits on other things than the database
        yield
    finally:
        PROCESS_HEARTBEAT.remove(run_id, on_cancel)
