"""Read queries for /metrics: per account, five aggregate queries whatever the history's length."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Min, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import ACTIVE_RUN_STATUSES, AdAccount, ApiClient, AttemptStatus, Campaign, SyncAttempt, SyncRun

# The runs' call counters, as the metrics name their outcomes; "ok" is what is left of `requests`.
CALL_OUTCOMES = {"429": "rate_limited", "5xx": "server_errors", "timeout": "timeouts"}


@dataclass
class AccountMetrics:
    slug: str
    runs: dict[str, int] = field(default_factory=dict)  # by run status
    calls: dict[str, int] = field(default_factory=dict)  # by outcome: ok, 429, 5xx, timeout
    campaigns: dict[str, int] = field(default_factory=dict)  # by last sync status
    oldest_campaign_age_seconds: float | None = None
    attempts_pending: int = 0
    budget_calls: int = 0  # 0: no budget
    budget_window_seconds: float = 0.0


def account_metrics(*, now: datetime | None = None) -> list[AccountMetrics]:
    """What /metrics reports for every account, from the database as it is now."""
    now = now or timezone.now()
    accounts = list(AdAccount.objects.order_by("slug").only("slug", "base_url", "client_id", "rate_limit"))
    metrics = {account.pk: AccountMetrics(slug=account.slug) for account in accounts}
    _add_runs(metrics)
    _add_campaigns(metrics, now)
    _add_pending(metrics)
    _add_budgets(metrics, accounts)
    return [metrics[account.pk] for account in accounts]


def _add_runs(metrics: dict[int, AccountMetrics]) -> None:
    sums = {name: Sum(name) for name in ("requests", *CALL_OUTCOMES.values())}
    rows = SyncRun.objects.order_by().values("account_id", "status").annotate(count=Count("id"), **sums)
    for row in rows:
        account = metrics[row["account_id"]]
        account.runs[row["status"]] = row["count"]
        for outcome, column in CALL_OUTCOMES.items():
            account.calls[outcome] = account.calls.get(outcome, 0) + row[column]
        # Every try is a request; the ones without a 429, a 5xx or a timeout are "ok".
        account.calls["ok"] = account.calls.get("ok", 0) + row["requests"] - sum(row[c] for c in CALL_OUTCOMES.values())


def _add_campaigns(metrics: dict[int, AccountMetrics], now: datetime) -> None:
    # A campaign never synced is as old as its first sighting.
    rows = (Campaign.objects.order_by().values("account_id", "last_sync_status")
            .annotate(count=Count("id"), oldest=Min(Coalesce("last_synced_at", "first_seen_at"))))
    oldest: dict[int, datetime] = {}
    for row in rows:
        metrics[row["account_id"]].campaigns[row["last_sync_status"]] = row["count"]
        if row["oldest"] is not None:
            oldest[row["account_id"]] = min(row["oldest"], oldest.get(row["account_id"], row["oldest"]))
    for account_id, when in oldest.items():
        metrics[account_id].oldest_campaign_age_seconds = max((now - when).total_seconds(), 0.0)


def _add_pending(metrics: dict[int, AccountMetrics]) -> None:
    # Only an active run has pending attempts: from run_status_idx to the (run, status) index, never all history.
    rows = (SyncAttempt.objects.filter(run__status__in=ACTIVE_RUN_STATUSES, status=AttemptStatus.PENDING)
            .order_by().values("run__account_id").annotate(count=Count("id")))
    for row in rows:
        metrics[row["run__account_id"]].attempts_pending = row["count"]


def _add_budgets(metrics: dict[int, AccountMetrics], accounts: list[AdAccount]) -> None:
    """The budget the account's platform client paces to; before its first run, the account's own."""
    clients = {(client.base_url, client.client_id): client for client in ApiClient.objects.all()}
    for account in accounts:
        client = clients.get(ApiClient.key_of(account))
        budget = client.configured_budget if client else account.budget
        if budget is not None:
            metrics[account.pk].budget_calls = budget.calls
            metrics[account.pk].budget_window_seconds = budget.window_seconds

