"""Ad accounts as the sync engine sees them: the default one, and a client for each."""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError

from campaigns.models import ACTIVE_RUN_STATUSES, AdAccount, SyncRun
from syncer.calls import ClientSettings
from syncer.client import PlatformClient
from syncer.connections import connection_release
from syncer.limiter import limiter_for

log = logging.getLogger(__name__)

DEFAULT_SLUG = "default"

# One client per account in this process, with the shape it was built for: account pk -> (shape, client), the
# most recently used last. A bounded cache: past its bound the least recently used client is closed and dropped
# (its secrets leave the log redaction with it). The bound is twice the drain threads a process hosts (each run
# has one at least), so a client still in use is never the one dropped.
_clients: OrderedDict[int, tuple[tuple, PlatformClient]] = OrderedDict()
_clients_lock = threading.Lock()


def clients_bound() -> int:
    return 2 * settings.SYNC["THREADS_PER_WORKER"]


class AccountNotFound(LookupError):
    pass


def account_default_get() -> AdAccount:
    """The account described by the AD_PLATFORM_* variables, created or updated to match them."""
    platform, sync = settings.AD_PLATFORM, settings.SYNC
    wanted = {
        "name": "Default account", "base_url": platform["URL"], "email": platform["EMAIL"],
        "client_id": platform["CLIENT_ID"], "rate_limit": platform["RATE_LIMIT"], "platform": platform["KIND"],
        "fresh_active_seconds": sync["FRESH_ACTIVE"], "fresh_paused_seconds": sync["FRESH_PAUSED"],
        "fresh_other_seconds": sync["FRESH_OTHER"],
    }
    account = AdAccount.objects.filter(slug=DEFAULT_SLUG).first()
    if account is None:
        account = AdAccount(slug=DEFAULT_SLUG, **wanted)
        account.set_password(platform["PASSWORD"])
        try:
            account.save()
        except IntegrityError:  # another process created it first
            return account_default_get()
        return account
    changed = {key: value for key, value in wanted.items() if key != "name" and getattr(account, key) != value}
    if changed or account.get_password() != platform["PASSWORD"]:
        for key, value in changed.items():
            setattr(account, key, value)
        account.set_password(platform["PASSWORD"])
        account.save()
    return account


def account_get(*, slug: str | None) -> AdAccount:
    if not slug or slug == DEFAULT_SLUG:
        return account_default_get()
    account = AdAccount.objects.filter(slug=slug).first()
    if account is None:
        known = ", ".join(AdAccount.objects.values_list("slug", flat=True)) or "none yet"
        raise AccountNotFound(f"no ad account with slug {slug!r} (known: {known})")
    return account


def client_settings_for(account: AdAccount, *, pool_size: int | None = None) -> ClientSettings:
    sync = settings.SYNC
    return ClientSettings(
        base_url=account.base_url, email=account.email, password=account.get_password(),
        client_id=account.client_id, connect_timeout=sync["CONNECT_TIMEOUT"], read_timeout=sync["REQUEST_TIMEOUT"],
        max_attempts=sync["MAX_ATTEMPTS"], max_wait=sync["MAX_WAIT"], backoff_base=sync["BACKOFF_BASE"],
        backoff_cap=sync["BACKOFF_CAP"], max_outage=sync["MAX_OUTAGE"], pool_size=pool_size or sync["CONCURRENCY"],
        max_body_mb=sync["MAX_BODY_MB"], platform=account.platform,
    )


def client_for(account: AdAccount, *, pool_size: int | None = None) -> PlatformClient:
    """One client per account and process, so its token, connections and outage breaker are shared.

    The shape holds everything that makes the client, so an edited account
    gets a fresh one; the one it replaces is closed (calls still in flight
    on it end normally) and dropped.
    """
    client_settings = client_settings_for(account, pool_size=pool_size)
    shape = (account.rate_limit, repr(client_settings), client_settings.password)
    with _clients_lock:
        cached = _clients.get(account.pk)
        if cached is not None and cached[0] == shape:
            _clients.move_to_end(account.pk)
            return cached[1]
    # Never read the database under the lock: the threads queued for it may hold every pooled connection
    # (a thousand accounts starting at once on PostgreSQL wedged that way).
    limiter = limiter_for(account)
    connection_release()
    client = PlatformClient(client_settings, limiter,
                            on_outage=lambda since: platform_unavailable_mark(account_id=account.pk, since=since))
    with _clients_lock:
        replaced = _clients.get(account.pk)
        if replaced is not None and replaced[0] == shape:
            return replaced[1]  # another thread of the account made it meanwhile: this one was never used
        _clients[account.pk] = (shape, client)
        _clients.move_to_end(account.pk)
        dropped = [replaced[1]] if replaced is not None else []
        while len(_clients) > clients_bound():
            dropped.append(_clients.popitem(last=False)[1][1])
    for old_client in dropped:
        old_client.close()
    return client


def platform_unavailable_mark(*, account_id: int, since: float | None) -> None:
    """The account's platform is in an outage since `since` (wall time), or no longer (None): say so on its runs."""
    runs = SyncRun.objects.filter(account_id=account_id)
    try:
        if since is None:
            runs.filter(platform_unavailable_since__isnull=False).update(platform_unavailable_since=None)
        else:
            runs.filter(status__in=ACTIVE_RUN_STATUSES).update(
                platform_unavailable_since=datetime.fromtimestamp(since, UTC))
    except DatabaseError as error:  # the status page is late; the calls go on
        log.warning("could not record the platform's availability on the runs (%s)", type(error).__name__)
    finally:
        connection_release()
