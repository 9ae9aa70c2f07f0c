"""Which SECRET_KEY signs the tasks: a process that enqueues and the cluster that runs them must share it.

django-q2 signs every task with SECRET_KEY; a cluster on another key
drops the task as unverifiable and the run would wait in the queue for
good. So each queued step records its enqueuer's key fingerprint on the
run (`SyncRun.queued_key`), cluster workers publish theirs in the cache
django-q2 already shares between processes, an enqueue while a live
cluster runs on another key is refused, and a cluster's watchdog fails a
run whose queued step it cannot verify. A fingerprint is an HMAC of a fixed
label under the key: it tells keys apart and gives nothing of the key away.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django_q.conf import Conf

log = logging.getLogger(__name__)

MISMATCH = ("the task cluster runs with another SECRET_KEY: give the web server, the command and the "
            "cluster the same SECRET_KEY")
PUBLISHED_FOR_LEASES = 3  # a fingerprint not published again within three leases belongs to no live cluster


def key_fingerprint() -> str:
    """This process's SECRET_KEY, told apart from others without being given away: 16 hex digits."""
    return hmac.new(settings.SECRET_KEY.encode(), b"campaign-sync/task-signing-key", hashlib.sha256).hexdigest()[:16]


def _cache_key() -> str:
    return f"campaign-sync:cluster-keys:{Conf.CLUSTER_NAME}"  # per queue: only its clusters take its tasks


def cluster_key_publish() -> None:
    """Say, for a few leases, that a live cluster worker on this queue verifies tasks with this key."""
    now, lifetime = time.time(), PUBLISHED_FOR_LEASES * settings.SYNC["LEASE_SECONDS"]
    # Read, add, write: two clusters publishing at once may drop one entry until its next beat.
    published = {fingerprint: until for fingerprint, until in (cache.get(_cache_key()) or {}).items() if until > now}
    published[key_fingerprint()] = now + lifetime
    cache.set(_cache_key(), published, timeout=lifetime)


def foreign_cluster_refusal() -> str | None:
    """The reason to refuse an enqueue, when a live cluster on this queue verifies tasks with another key."""
    try:
        published = cache.get(_cache_key()) or {}
    except Exception:  # the cache is away: the enqueue itself will say whether the broker is
        log.warning("could not read the task cluster's key fingerprints from the cache", exc_info=True)
        return None
    now = time.time()
    live = {fingerprint for fingerprint, until in published.items() if until > now}
    return MISMATCH if live - {key_fingerprint()} else None
