"""/metrics: Prometheus' text format, computed from the database at scrape time.

Every host and worker shares the database, so whichever web process answers
counts everything once. The collector sits on a registry of its own: the
global one would add this process's Python and GC metrics, which say nothing
about the syncs and differ from process to process.
"""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from campaigns.metrics_selectors import AccountMetrics, account_metrics
from campaigns.models import ACTIVE_RUN_STATUSES, RunStatus, SyncStatus

PRUNE_NOTE = " Computed from the database: it drops when old history is pruned (prune_history)."
FINISHED_RUN_STATUSES = [status for status in RunStatus.values if status not in ACTIVE_RUN_STATUSES]
CALL_OUTCOMES = ("ok", "429", "5xx", "timeout")


class SyncCollector:
    """One scrape: the accounts' figures from five aggregate queries, as metric families."""

    def collect(self):
        rows = account_metrics()
        yield self._labelled(CounterMetricFamily, "campaign_sync_runs", "Finished sync runs by status." + PRUNE_NOTE,
                             "status", FINISHED_RUN_STATUSES, rows, lambda row: row.runs)
        yield self._labelled(GaugeMetricFamily, "campaign_sync_runs_active", "Queued and running sync runs.",
                             "status", list(ACTIVE_RUN_STATUSES), rows, lambda row: row.runs)
        yield self._labelled(GaugeMetricFamily, "campaign_sync_campaigns",
                             "Campaigns by the status of their last sync (succeeded, failed, never).",
                             "status", SyncStatus.values, rows, lambda row: row.campaigns)
        yield self._labelled(CounterMetricFamily, "campaign_sync_calls",
                             "Calls to the platform, every try, by outcome: 429, 5xx, timeout, and ok for the "
                             "others." + PRUNE_NOTE, "outcome", CALL_OUTCOMES, rows, lambda row: row.calls)
        yield self._per_account("campaign_sync_oldest_campaign_age_seconds",
                                "Seconds since the least recently synced campaign last synced (or was first seen).",
                                rows, lambda row: row.oldest_campaign_age_seconds)
        yield self._per_account("campaign_sync_attempts_pending", "Attempts of active runs waiting for their call.",
                                rows, lambda row: row.attempts_pending)
        yield self._per_account("campaign_sync_budget_calls",
                                "Calls per window the account's platform client is configured for; 0: no budget.",
                                rows, lambda row: row.budget_calls)
        yield self._per_account("campaign_sync_budget_window_seconds",
                                "The window of that budget in seconds; 0: no budget.",
                                rows, lambda row: row.budget_window_seconds)

    @staticmethod
    def _labelled(family_class, name: str, documentation: str, label: str, values, rows: list[AccountMetrics],
                  counts):
        """Every (account, value) pair, zeros included: a series that appears late breaks rate() and alerts."""
        family = family_class(name, documentation, labels=["account", label])
        for row in rows:
            for value in values:
                family.add_metric([row.slug, value], counts(row).get(value, 0))
        return family

    @staticmethod
    def _per_account(name: str, documentation: str, rows: list[AccountMetrics], value):
        family = GaugeMetricFamily(name, documentation, labels=["account"])
        for row in rows:
            if value(row) is not None:  # an account without campaigns has no oldest one
                family.add_metric([row.slug], value(row))
        return family


REGISTRY = CollectorRegistry(auto_describe=False)  # no scrape at import: the database may not be there yet
REGISTRY.register(SyncCollector())


def bearer_token_matches(request: HttpRequest) -> bool | None:
    """None without an Authorization header; else whether it carries METRICS_TOKEN, compared in constant time."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    expected = settings.METRICS_TOKEN
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                                 expected.encode())


def _unauthorized(error: str = "") -> HttpResponse:
    response = HttpResponse("a bearer token (METRICS_TOKEN) or a staff login is needed\n", status=401,
                            content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"' + (f', error="{error}"' if error else "")
    return response


@require_safe
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """The scrape: a bearer token or a staff session; 401 with neither, 403 for a login without staff."""
    token = bearer_token_matches(request)
    if token is False:
        return _unauthorized("invalid_token")
    if token is None and not request.user.is_authenticated:
        return _unauthorized()
    if token is None and not request.user.is_staff:
        return HttpResponse("staff only\n", status=403, content_type="text/plain")
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # OpenMetrics when asked for
    return HttpResponse(encode(REGISTRY), content_type=content_type)
