"""Signs of life: a working process renews its claims and the run's heartbeat.

Leases stay short (SYNC_LEASE_SECONDS) so that the claims of a killed
worker are taken over within seconds, while a live worker keeps its claims
however long a call takes.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from campaigns.models import AttemptStatus, SyncAttempt, SyncRun
from syncer.connections import connection_release


def lease_seconds() -> float:
    return settings.SYNC["LEASE_SECONDS"]


def beat(*, run_id: int, claim_prefix: str | None) -> None:
    with transaction.atomic():
        _beat(run_id=run_id, claim_prefix=claim_prefix)


def _beat(*, run_id: int, claim_prefix: str | None) -> None:
    """Attempts first, then the run: the order an outcome locks them in, so the two never deadlock."""
    now = timezone.now()
    if claim_prefix:
        SyncAttempt.objects.filter(
            run_id=run_id, status=AttemptStatus.RUNNING, claimed_by__startswith=claim_prefix,
        ).update(lease_expires_at=now + timedelta(seconds=lease_seconds()))
    SyncRun.objects.filter(pk=run_id).update(heartbeat_at=now)


@contextmanager
def heartbeat(*, run_id: int, claim_prefix: str | None = None, beat_now: bool = True):
    """Beat now (unless the caller just did) and every third of a lease until the block ends."""
    stop = threading.Event()
    if beat_now:
        beat(run_id=run_id, claim_prefix=claim_prefix)
    connection_release()  # the block waits on other things than the database

    def loop() -> None:
        try:
            while not stop.wait(lease_seconds() / 3):
                try:
                    beat(run_id=run_id, claim_prefix=claim_prefix)
                except DatabaseError:  # a database restart: beat again next time
                    connection.close()
                finally:
                    connection_release()
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name=f"heartbeat-run{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
