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
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from campaigns.models import AttemptStatus, SyncAttempt, SyncRun
from syncer.connections import connection_release


def lease_seconds() -> float:
    return settings.SYNC["LEASE_SECONDS"]


def process_claims_prefix() -> str:
    """What every claim of this process starts with (a drain's claims add its thread and index)."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def beat(run_ids: list[int]) -> None:
    """Renew this process's claims on the runs, then the runs, skipping rows another transaction holds.

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


def _unlocked_update(rows, **values) -> None:
    with transaction.atomic():  # SQLite has no row locks (nor SKIP LOCKED): every row is free there
        free = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True))
        rows.model.objects.filter(pk__in=free).update(**values)


class ProcessHeartbeat:
    """The runs this process works on (a count of the blocks open on each), and the one thread beating for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: Counter[int] = Counter()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: int) -> None:
        with self._lock:
            self._runs[run_id] += 1
            if self._thread is None or not self._thread.is_alive():  # none yet, or a forked worker's copy
                self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
                self._thread.start()
        self._woken.set()  # the lease may be another now (a test's, an edited setting): time the next beat anew

    def remove(self, run_id: int) -> None:
        with self._lock:
            self._runs[run_id] -= 1
            if self._runs[run_id] <= 0:
                del self._runs[run_id]
            if not self._runs:
                self._woken.set()  # the last run ended: give the connection back now

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
                beat(run_ids)
            except DatabaseError:  # a database restart: beat again next time, on a new connection
                connection.close()


PROCESS_HEARTBEAT = ProcessHeartbeat()


@contextmanager
def heartbeat(*, run_id: int, beat_now: bool = True):
    """Beat now (unless the caller just did) and every third of a lease until the block ends."""
    if beat_now:
        beat([run_id])
    connection_release()  # the block waits on other things than the database
    PROCESS_HEARTBEAT.add(run_id)
    try:
        yield
    finally:
        PROCESS_HEARTBEAT.remove(run_id)
