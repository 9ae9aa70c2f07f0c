"""Read queries for the status page and the admin: a fixed number of queries, however long the history."""
from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.status import Stat

from campaigns.alert_models import Alert
from campaigns.freshness_selectors import AccountFreshness, accounts_freshness
from campaigns.models import (
    ACTIVE_RUN_STATUSES,
    AdAccount,
    ApiClient,
    AttemptStatus,
    Campaign,
    RunStatus,
    SyncAttempt,
    SyncRun,
    SyncStatus,
)
from syncer.api_clients import budget_shares
from syncer.budget import RateBudget

log = logging.getLogger(__name__)

RECENT_RUNS = 20
DEAD_LETTER_LIMIT = 50
OPEN_ALERTS_LIMIT = 20
# A run that synced at least one campaign freshened the data, even if some failed.
FRESHENING_STATUSES = (RunStatus.SUCCEEDED, RunStatus.PARTIAL)


@dataclass
class CallHealth:
    """Sync-call latency of one run; its 429s, 5xx, timeouts and retries are counters on the run."""

    p50_ms: int | None = None
    p95_ms: int | None = None
    samples: int = 0


@dataclass
class AccountStatus:
    account: AdAccount
    last_success_at: datetime | None
    campaigns: int
    failed_campaigns: int
    run: SyncRun | None  # the active run, else the latest one
    budget_note: str | None = None  # the platform allows less than configured (ApiClient.budget_note)
    budget: RateBudget | None = None  # the account's share of the budget in effect (learned, when lower)
    freshness: AccountFreshness | None = None  # its classes against their targets, and what they ask of the budget
    health: CallHealth = field(default_factory=CallHealth)
    now: datetime = field(default_factory=timezone.now)

    @property
    def freshness_seconds(self) -> float | None:
        if not self.last_success_at:
            return None
        return max((self.now - self.last_success_at).total_seconds(), 0.0)  # a host's clock may have been ahead

    @property
    def eta_seconds(self) -> float | None:
        return run_eta_seconds(self.run, budget=self.budget, now=self.now) if self.run else None

    @property
    def progress_percent(self) -> float | None:
        return run_progress_percent(self.run) if self.run else None


@dataclass
class ClusterHealth:
    """What django-q2 says about itself; None where it could not be asked."""

    clusters: int | None
    workers: int | None
    queued: int | None

    @property
    def state(self) -> str:
        if self.clusters is None:
            return "unknown"
        return "ok" if self.clusters else "down"


@dataclass
class StatusOverview:
    accounts: list[AccountStatus]
    runs: list[SyncRun]
    dead_letter: list[Campaign]
    dead_letter_count: int
    cluster: ClusterHealth
    generated_at: datetime
    alerts: list[Alert] = field(default_factory=list)  # the newest open ones
    alerts_open_count: int = 0


def status_overview() -> StatusOverview:
    """Everything the status page and /status.json show, in ten queries whatever the history."""
    now = timezone.now()
    accounts = account_statuses(now=now)
    alerts, alerts_open_count = alerts_open()
    return StatusOverview(
        alerts=alerts,
        alerts_open_count=alerts_open_count,
        accounts=accounts,
        runs=runs_recent(),
        dead_letter=dead_letter_list(),
        dead_letter_count=sum(status.failed_campaigns for status in accounts),
        cluster=cluster_health(),
        generated_at=now,
    )


# --- accounts -----------------------------------------------------------------

def account_statuses(*, now: datetime) -> list[AccountStatus]:
    accounts = list(_accounts_with_current_run())
    counts = _campaign_counts()
    runs = SyncRun.objects.in_bulk([account.current_run_id for account in accounts if account.current_run_id])
    latencies = run_latencies(run_ids=list(runs))
    clients = {(client.base_url, client.client_id): client for client in ApiClient.objects.all()}
    budgets = budget_shares(accounts, clients)
    freshness = accounts_freshness(accounts, budgets=budgets, page_size=settings.SYNC["PAGE_SIZE"], now=now)
    statuses = []
    for account in accounts:
        run = runs.get(account.current_run_id)
        if run is not None:
            run.account = account  # no second query for run.account
        statuses.append(AccountStatus(
            account=account, last_success_at=account.last_success_at,
            campaigns=sum(counts[account.pk].values()), failed_campaigns=counts[account.pk][SyncStatus.FAILED],
            run=run, health=call_health(latencies.get(run.pk, []) if run else []), now=now,
            budget_note=_budget_note(clients.get(ApiClient.key_of(account))), freshness=freshness.get(account.pk),
            budget=budgets[account.pk],
        ))
    return statuses


def _budget_note(client: ApiClient | None) -> str | None:
    return client.budget_note if client is not None else None


def _accounts_with_current_run():
    # Each subquery walks the (account, -created_at) index: cheap however many runs an account has.
    runs = SyncRun.objects.filter(account=OuterRef("pk")).order_by("-created_at", "-id")
    return AdAccount.objects.annotate(
        current_run_id=Coalesce(
            Subquery(runs.filter(status__in=ACTIVE_RUN_STATUSES).values("id")[:1]),
            Subquery(runs.values("id")[:1]),
        ),
        last_success_at=Subquery(runs.filter(status__in=FRESHENING_STATUSES).values("finished_at")[:1]),
    ).order_by("name", "pk")


def _campaign_counts() -> dict[int, Counter]:
    """Campaigns per account and last sync status, answered from the (account, last_sync_status) index."""
    counts: dict[int, Counter] = defaultdict(Counter)
    rows = Campaign.objects.order_by().values_list("account_id", "last_sync_status").annotate(n=Count("id"))
    for account_id, status, number in rows:
        counts[account_id][status] = number
    return counts


# --- runs -----------------------------------------------------------------------

def alerts_open(*, limit: int = OPEN_ALERTS_LIMIT) -> tuple[list[Alert], int]:
    """The newest open alerts with their accounts, and how many are open in all (two queries)."""
    open_alerts = Alert.objects.filter(resolved_at__isnull=True)
    return list(open_alerts.select_related("account").order_by("-opened_at", "-id")[:limit]), open_alerts.count()


def runs_recent(*, limit: int = RECENT_RUNS) -> list[SyncRun]:
    return list(SyncRun.objects.select_related("account").order_by("-created_at", "-id")[:limit])


def run_progress_percent(run: SyncRun) -> float | None:
    """Share of the run's campaigns done, in percent; None before the listing ended (or if it never did)."""
    if not run.prepared_at:
        return None
    if not run.campaigns_listed:
        return 100.0
    return min(100.0, 100.0 * run.campaigns_done / run.campaigns_listed)


def run_eta_seconds(run: SyncRun, *, budget: RateBudget | None, now: datetime | None = None) -> float | None:
    """Seconds until an active run is done: remaining calls paced by `budget`, the account's share of the
    budget in effect (the one the platform allows, when lower than configured; see budget_shares).

    The budget is only a floor: when the platform answers slower than the
    budget allows, the run's observed pace is the better guess, so the
    larger of the two wins. No budget: the observed pace alone.
    """
    if not run.is_active or not run.prepared_at:
        return None
    remaining = max(run.campaigns_listed - run.campaigns_done, 0)
    if not remaining:
        return 0.0
    guesses = []
    if budget is not None:
        guesses.append(remaining * budget.seconds_per_call)
    observed = _observed_seconds_per_campaign(run, now or timezone.now())
    if observed is not None:
        guesses.append(remaining * observed)
    return max(guesses) if guesses else None


def _observed_seconds_per_campaign(run: SyncRun, now: datetime) -> float | None:
    if not run.campaigns_done:
        return None
    elapsed = (now - run.prepared_at).total_seconds()
    return max(elapsed, 0.0) / run.campaigns_done


# --- call health ----------------------------------------------------------------

def run_latencies(*, run_ids: list[int]) -> dict[int, list[int]]:
    """The sorted sync-call latencies of a few runs, in one query over those runs' attempts only."""
    latencies: dict[int, list[int]] = defaultdict(list)
    if not run_ids:
        return latencies
    rows = (SyncAttempt.objects.filter(run_id__in=run_ids, latency_ms__isnull=False)
            .order_by("run_id", "latency_ms").values_list("run_id", "latency_ms"))
    for run_id, latency in rows:
        latencies[run_id].append(latency)
    return latencies


def call_health(latencies: list[int]) -> CallHealth:
    return CallHealth(p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95), samples=len(latencies))


def percentile(sorted_values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile of an already sorted list; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- dead letter ----------------------------------------------------------------

def dead_letter_list(*, limit: int = DEAD_LETTER_LIMIT) -> list[Campaign]:
    """Campaigns whose last sync failed, each with the category and message of its latest failed attempt."""
    latest_failure = (SyncAttempt.objects.filter(campaign=OuterRef("pk"), status=AttemptStatus.FAILED)
                      .order_by("-id").values("id")[:1])  # walks the (campaign, -id) index
    campaigns = list(
        Campaign.objects.filter(last_sync_status=SyncStatus.FAILED).select_related("account")
        .annotate(failure_id=Subquery(latest_failure)).order_by("account__name", "platform_id")[:limit]
    )
    # One walk of the index per campaign, then one query for the attempts: not three correlated subqueries.
    failures = SyncAttempt.objects.only("run_id", "error_category", "message").in_bulk(
        [campaign.failure_id for campaign in campaigns if campaign.failure_id]
    )
    for campaign in campaigns:
        failure = failures.get(campaign.failure_id)
        campaign.failure_category = failure.error_category if failure else ""
        campaign.failure_message = failure.message if failure else ""
        campaign.failure_run_id = failure.run_id if failure else None
    return campaigns


# --- admin ----------------------------------------------------------------------

def run_attempt_breakdown(*, run: SyncRun) -> list[dict]:
    """Attempts of one run counted by status and error category, from the (run, status) index."""
    return list(run.attempts.order_by().values("status", "error_category").annotate(count=Count("id"))
                .order_by("status", "error_category"))


# --- the task cluster -----------------------------------------------------------

def cluster_health() -> ClusterHealth:
    """Clusters and workers seen in django-q2's heartbeats, and tasks waiting; a broken broker reads "unknown"."""
    clusters = workers = queued = None
    # A monitor page must not fail because the broker did: each question may fail alone.
    try:
        broker = get_broker()
    except Exception:
        log.warning("could not reach the task broker", exc_info=True)
        return ClusterHealth(clusters=None, workers=None, queued=None)
    try:
        stats = Stat.get_all(broker=broker)
        clusters, workers = len(stats), sum(len(stat.workers or []) for stat in stats)
    except Exception:
        log.warning("could not read the task cluster's heartbeats", exc_info=True)
    try:
        queued = broker.queue_size()
    except Exception:
        log.warning("could not count the queued tasks", exc_info=True)
    return ClusterHealth(clusters=clusters, workers=workers, queued=queued)


def cluster_seen() -> bool | None:
    """True when a cluster heartbeat is in the cache (django-q2 keeps them a few seconds); None on error."""
    try:
        return bool(Stat.get_all())
    except Exception:
        log.warning("could not read the task cluster's heartbeats", exc_info=True)
        return None
