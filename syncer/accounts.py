"""Ad accounts as the sync engine sees them: the default one, and a client for each."""
from __future__ import annotations

import threading

from django.conf import settings
from django.db import IntegrityError

from campaigns.models import AdAccount
from syncer.client import ClientSettings, PlatformClient
from syncer.limiter import limiter_for

DEFAULT_SLUG = "default"

_clients: dict[tuple, PlatformClient] = {}
_clients_lock = threading.Lock()


class AccountNotFound(LookupError):
    pass


def account_default_get() -> AdAccount:
    """The account described by the AD_PLATFORM_* variables, created or updated to match them."""
    platform = settings.AD_PLATFORM
    wanted = {
        "name": "Default account", "base_url": platform["URL"], "email": platform["EMAIL"],
        "client_id": platform["CLIENT_ID"], "rate_limit": platform["RATE_LIMIT"],
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
    )


def client_for(account: AdAccount, *, pool_size: int | None = None) -> PlatformClient:
    """One client per account and process, so its token and connections are reused.

    The key holds everything that shapes the client, so an edited account
    gets a fresh one.
    """
    client_settings = client_settings_for(account, pool_size=pool_size)
    key = (account.pk, account.rate_limit, repr(client_settings), client_settings.password)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            limiter = limiter_for(account)
            client = _clients[key] = PlatformClient(client_settings, limiter)
        return client
