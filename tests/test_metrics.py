"""/metrics over real HTTP after a real sync: Prometheus' text format, values equal to the database's, access."""
from __future__ import annotations

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Count, Min, Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from campaigns.models import AttemptStatus, Campaign, SyncAttempt, SyncRun, Trigger
from syncer.services import run_execute, sync_run_start

pytest.register_assert_rewrite("tests.people_fixtures")  # it is a plugin too (below): rewrite before importing

from tests.people_fixtures import (  # noqa: E402
    make_active_run,
    make_campaigns,
    make_finished_run,
    make_offline_account,
)

pytest_plugins = ["tests.people_fixtures"]  # make_user

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-the-tests-0123456789"


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def synced(fake_platform, make_account):
    """A real sync of 30 campaigns through 503s and hangs, an idle account, and one mid-run with 3 pending."""
    fake_platform.update(campaigns=30, server_error_rate=0.15, hang_rate=0.05, seed=11)
    account = make_account(slug="acme")
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    run = run_execute(run_id=run.pk)
    make_offline_account("idle", rate_limit="10/60s")
    busy = make_offline_account("busy", rate_limit="5/2s")
    make_active_run(busy, make_campaigns(busy, 5), done=2)
    return run


def scrape(live_server, **kwargs) -> requests.Response:
    return requests.get(f"{live_server.url}/metrics", timeout=30, **kwargs)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a scrape, read by Prometheus' own parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def bearer(token: str) -> dict:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def test_a_scrape_after_a_real_sync_reports_what_the_database_holds(synced, live_server, metrics_token):
    before = timezone.now()
    response = scrape(live_server, **bearer(TOKEN))
    after = timezone.now()
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain; version=")
    values = samples(response.text)

    def value(name: str, **labels) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    assert synced.requests > 30 and synced.server_errors > 0, "the faults should have cost tries"
    for account_id, status, count in SyncRun.objects.values_list("account__slug", "status").annotate(Count("id")):
        family = "campaign_sync_runs_active" if status in ("queued", "running") else "campaign_sync_runs_total"
        assert value(family, account=account_id, status=status) == count
    assert value("campaign_sync_runs_total", account="idle", status="succeeded") == 0
    assert value("campaign_sync_runs_active", account="busy", status="running") == 1
    assert value("campaign_sync_calls_total", account="acme", outcome="429") == synced.rate_limited
    assert value("campaign_sync_calls_total", account="acme", outcome="5xx") == synced.server_errors
    assert value("campaign_sync_calls_total", account="acme", outcome="timeout") == synced.timeouts
    assert value("campaign_sync_calls_total", account="acme", outcome="ok") == \
        synced.requests - synced.rate_limited - synced.server_errors - synced.timeouts
    for slug, status, count in Campaign.objects.values_list("account__slug", "last_sync_status").annotate(Count("id")):
        assert value("campaign_sync_campaigns", account=slug, status=status) == count
    assert value("campaign_sync_campaigns", account="acme", status="succeeded") + \
        value("campaign_sync_campaigns", account="acme", status="failed") == 30
    oldest = Campaign.objects.filter(account__slug="acme").aggregate(oldest=Min("last_synced_at"))["oldest"]
    age = value("campaign_sync_oldest_campaign_age_seconds", account="acme")
    assert (before - oldest).total_seconds() - 1 <= age <= (after - oldest).total_seconds() + 1
    assert ("campaign_sync_oldest_campaign_age_seconds", (("account", "idle"),)) not in values  # no campaigns
    pending = SyncAttempt.objects.filter(run__account__slug="busy", status=AttemptStatus.PENDING).count()
    assert value("campaign_sync_attempts_pending", account="busy") == pending == 3
    assert value("campaign_sync_attempts_pending", account="acme") == 0
    assert (value("campaign_sync_budget_calls", account="idle"),
            value("campaign_sync_budget_window_seconds", account="idle")) == (10, 60)
    assert (value("campaign_sync_budget_calls", account="busy"),
            value("campaign_sync_budget_window_seconds", account="busy")) == (5, 2)
    assert value("campaign_sync_budget_calls", account="acme") == 0  # "none": no budget


def test_metrics_are_named_and_typed_as_prometheus_advises(synced, live_server, metrics_token):
    families = {family.name: family for family in text_string_to_metric_families(scrape(live_server,
                                                                                        **bearer(TOKEN)).text)}
    assert {name: family.type for name, family in families.items()} == {
        "campaign_sync_runs": "counter", "campaign_sync_runs_active": "gauge", "campaign_sync_campaigns": "gauge",
        "campaign_sync_calls": "counter", "campaign_sync_oldest_campaign_age_seconds": "gauge",
        "campaign_sync_attempts_pending": "gauge", "campaign_sync_budget_calls": "gauge",
        "campaign_sync_budget_window_seconds": "gauge",
    }
    for name in ("campaign_sync_runs", "campaign_sync_calls"):
        assert "pruned" in families[name].documentation
        assert all(sample.name == f"{name}_total" for sample in families[name].samples)
    assert not any(name.startswith(("python_", "process_")) for name in families)  # a private registry


def test_a_scrape_costs_the_same_queries_however_long_the_history(metrics_token):
    account = make_offline_account("history")
    campaigns = make_campaigns(account, 10)
    make_finished_run(account, campaigns)
    client = Client()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
        return len(captured)

    few = queries()
    for index in range(5):
        more = make_offline_account(f"more-{index}")
        make_finished_run(more, make_campaigns(more, 10), failed=2)
        make_active_run(more, list(Campaign.objects.filter(account=more)), done=3)
    assert queries() == few <= 6


def test_counters_sum_every_run_of_the_account(live_server, metrics_token):
    account = make_offline_account("sums")
    campaigns = make_campaigns(account, 4)
    for failed in (0, 1, 2):
        make_finished_run(account, campaigns, failed=failed)
    totals = SyncRun.objects.aggregate(requests=Sum("requests"), rate_limited=Sum("rate_limited"))
    values = samples(scrape(live_server, **bearer(TOKEN)).text)
    assert values[("campaign_sync_calls_total", (("account", "sums"), ("outcome", "429")))] == totals["rate_limited"]
    assert sum(value for (name, labels), value in values.items() if name == "campaign_sync_calls_total") == \
        totals["requests"]


# --- access -------------------------------------------------------------------------------------

def session_cookie(user) -> dict:
    client = Client()
    client.force_login(user)
    return {"cookies": {django_settings.SESSION_COOKIE_NAME: client.cookies[django_settings.SESSION_COOKIE_NAME].value}}


def test_without_credentials_a_scrape_is_401_asking_for_a_bearer_token(live_server, metrics_token):
    response = scrape(live_server)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "campaign_sync" not in response.text


@pytest.mark.parametrize("header", ["Bearer wrong-token-of-the-right-length!", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
                                    "Bearer", f"bearer  {TOKEN[:-1]}"])
def test_a_wrong_token_is_401_and_the_answer_never_shows_the_token(live_server, metrics_token, header):
    response = scrape(live_server, headers={"Authorization": header})
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert TOKEN not in response.text and TOKEN[:-1] not in response.text


def test_a_staff_login_scrapes_and_a_login_without_staff_is_403(live_server, metrics_token, make_user):
    assert scrape(live_server, **session_cookie(make_user("staff"))).status_code == 200
    assert scrape(live_server, **session_cookie(make_user("non_staff"))).status_code == 403


def test_without_metrics_token_only_staff_can_scrape(live_server, settings, make_user):
    settings.METRICS_TOKEN = ""
    assert scrape(live_server, **bearer("")).status_code == 401
    assert scrape(live_server, **bearer(TOKEN)).status_code == 401
    assert scrape(live_server, **session_cookie(make_user("staff"))).status_code == 200
