"""Platform clients (base URL + client id) as the limiter sees them: their rows, shared budgets and slots."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from django.db.models import Count

from campaigns.models import AdAccount, ApiClient, RateSlot
from syncer.budget import RateBudget, budget_shared, parse_budget


def slots_ensure(accounts: Iterable[AdAccount]) -> None:
    """Write the accounts' platform clients and create the slots they lack, at the start of each run.

    A budget may have changed since the last run, or another account joined
    the client. A few reads for all the accounts, writes only for what
    changed: a read needs no turn for SQLite's lock.
    """
    clients = api_clients_refresh(list(accounts))
    _slots_create_missing({client.pk: client.configured_calls for client in clients.values()})


def api_client_of(account: AdAccount, *, fresh: bool = False) -> ApiClient | None:
    """The account's platform client as last written; `fresh` writes it first when it is missing or looser
    than the account's own budget (the account was edited since its last run, or never ran)."""
    base_url, client_id = ApiClient.key_of(account)
    client = ApiClient.objects.filter(base_url=base_url, client_id=client_id).first()
    if fresh and (client is None or budget_shared([client.configured_budget, account.budget])
                  != client.configured_budget):
        client = api_clients_refresh([account])[base_url, client_id]
        _slots_create_missing({client.pk: client.configured_calls})
    return client


def client_slots_ensure(api_client_id: int) -> bool:
    """Create the client's missing slots; False when it has no budget (so no slots to take)."""
    calls = ApiClient.objects.filter(pk=api_client_id).values_list("configured_calls", flat=True).first()
    if not calls:
        return False
    _slots_create_missing({api_client_id: calls})
    return True


def api_clients_refresh(accounts: list[AdAccount]) -> dict[tuple[str, str], ApiClient]:
    """The accounts' platform clients, each written with the budget that keeps every account it has."""
    keys = {ApiClient.key_of(account) for account in accounts}
    if not keys:
        return {}
    wanted = _budgets_shared(keys, accounts)
    have = _clients(keys)
    stale = [ApiClient(base_url=base_url, client_id=client_id, configured_calls=budget.calls if budget else 0,
                       configured_window_seconds=budget.window_seconds if budget else 0.0)
             for (base_url, client_id), budget in wanted.items()
             if (base_url, client_id) not in have or have[base_url, client_id].configured_budget != budget]
    if stale:
        ApiClient.objects.bulk_create(stale, update_conflicts=True, unique_fields=["base_url", "client_id"],
                                      update_fields=["configured_calls", "configured_window_seconds"])
        have = _clients(keys)
    return have


def _budgets_shared(keys: set[tuple[str, str]], accounts: list[AdAccount]) -> dict[tuple[str, str], RateBudget | None]:
    """Per client, the budget every account on it allows (`budget_shared`), the accounts given as they are now."""
    budgets: dict[tuple[str, str], list[RateBudget | None]] = defaultdict(list)
    given = {account.pk for account in accounts}
    others = AdAccount.objects.filter(client_id__in={client_id for _, client_id in keys}).exclude(pk__in=given)
    for base_url, client_id, rate_limit in others.values_list("base_url", "client_id", "rate_limit"):
        key = (base_url.rstrip("/"), client_id)
        if key in keys:
            budgets[key].append(_readable_budget(rate_limit))
    for account in accounts:
        budgets[ApiClient.key_of(account)].append(account.budget)
    return {key: budget_shared(budgets[key]) for key in keys}


def _readable_budget(rate_limit: str) -> RateBudget | None:
    """Another account's budget; one it cannot read (stored before the caps) fails that account's own runs."""
    try:
        return parse_budget(rate_limit)
    except ValueError:
        return None


def _clients(keys: set[tuple[str, str]]) -> dict[tuple[str, str], ApiClient]:
    rows = ApiClient.objects.filter(client_id__in={client_id for _, client_id in keys},
                                    base_url__in={base_url for base_url, _ in keys})
    return {(client.base_url, client.client_id): client for client in rows
            if (client.base_url, client.client_id) in keys}


def _slots_create_missing(calls_by_client: dict[int, int]) -> None:
    """One read for all the clients, one insert for what is missing."""
    calls_by_client = {client_id: calls for client_id, calls in calls_by_client.items() if calls}
    if not calls_by_client:
        return
    have = dict(RateSlot.objects.filter(api_client_id__in=calls_by_client).values("api_client_id")
                .annotate(n=Count("pk")).values_list("api_client_id", "n"))
    missing = [RateSlot(api_client_id=client_id, index=index) for client_id, calls in calls_by_client.items()
               if have.get(client_id, 0) < calls for index in range(calls)]
    if missing:
        RateSlot.objects.bulk_create(missing, ignore_conflicts=True)


def budget_shares(accounts: list[AdAccount], clients: dict[tuple[str, str], ApiClient] | None = None,
                  sharing: Counter | None = None) -> dict[int, RateBudget | None]:
    """The budget each account may spend: its own (or the one its client learned from the platform, when lower),
    split evenly among the accounts on that client (`sharing`: how many there are, by client key; counted among
    `accounts` if not given)."""
    if clients is None:
        clients = _clients({ApiClient.key_of(account) for account in accounts})
    sharing = sharing or Counter(ApiClient.key_of(account) for account in accounts)
    shares = {}
    for account in accounts:
        key = ApiClient.key_of(account)
        client, budget = clients.get(key), account.budget
        learned = client.learned_budget if client is not None else None
        if learned is not None and (budget is None or learned.seconds_per_call > budget.seconds_per_call):
            budget = learned
        shares[account.pk] = None if budget is None else RateBudget(
            calls=budget.calls, window_seconds=budget.window_seconds * max(sharing[key], 1))
    return shares


def budget_share(account: AdAccount) -> RateBudget | None:
    """One account's share of its client's budget (see budget_shares)."""
    key = ApiClient.key_of(account)
    on_client = sum(1 for other in AdAccount.objects.filter(client_id=account.client_id).only("base_url", "client_id")
                    if ApiClient.key_of(other) == key)
    return budget_shares([account], sharing=Counter({key: on_client}))[account.pk]
