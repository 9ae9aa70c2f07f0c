"""The status page, /status.json, its two buttons and /healthz, as a staff member (permissions: test_permissions)."""
from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import selectors
from campaigns.models import AdAccount, ApiClient, AttemptStatus, RunStatus, SyncAttempt, SyncRun, Trigger
from tests.queue import queued_tasks

pytest.register_assert_rewrite("tests.people_fixtures")  # it is a plugin too (below): rewrite before importing

from tests.people_fixtures import (  # noqa: E402
    make_active_run,
    make_campaigns,
    make_finished_run,
    make_offline_account,
)

pytest_plugins = ["tests.people_fixtures"]  # client_as, private_cache, cluster_heartbeat

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_cache")]


@pytest.fixture
def staff(client_as):
    return client_as("staff_trigger")


def page(client) -> str:
    response = client.get("/status/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_site_root_leads_to_the_status_page(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/status/"


def test_an_active_run_shows_its_progress_and_an_eta_paced_by_the_rate_budget(staff):
    account = make_offline_account(rate_limit="10/60s")  # 6 s per call
    run = make_active_run(account, make_campaigns(account, 30), done=10)
    html = page(staff)
    assert f'href="/admin/campaigns/syncrun/{run.pk}/change/"' in html
    assert 'aria-valuenow="33"' in html and "width: 33.3%" in html
    assert "10 / 30 done" in html
    # 20 campaigns left x 6 s beats the observed ~1 s per campaign.
    assert "about 2 min 00 s" in html
    data = staff.get("/status.json").json()
    assert data["accounts"][0]["run"]["eta_seconds"] == pytest.approx(120)
    assert data["accounts"][0]["run"]["percent"] == pytest.approx(100 / 3)


def test_the_eta_is_paced_by_the_budget_the_platform_allows_when_lower_and_by_the_accounts_share(staff):
    account = make_offline_account(rate_limit="10/60s")
    make_active_run(account, make_campaigns(account, 30), done=10)
    ApiClient.objects.create(base_url=account.base_url, client_id=account.client_id, configured_calls=10,
                             configured_window_seconds=60, learned_calls=5)  # 12 s per call
    assert staff.get("/status.json").json()["accounts"][0]["run"]["eta_seconds"] == pytest.approx(20 * 12)
    other = make_offline_account("other")  # a second account on the same client halves each one's share
    AdAccount.objects.filter(pk=other.pk).update(client_id=account.client_id)
    eta = {row["slug"]: row["run"] for row in staff.get("/status.json").json()["accounts"]}
    assert eta["offline"]["eta_seconds"] == pytest.approx(20 * 24)


def test_without_a_budget_the_eta_follows_the_runs_observed_pace(staff):
    account = make_offline_account(rate_limit="none")
    make_active_run(account, make_campaigns(account, 30), done=10)  # 10 done in the 10 s since it was prepared
    eta = staff.get("/status.json").json()["accounts"][0]["run"]["eta_seconds"]
    assert 19 < eta < 25


def test_freshness_is_the_time_since_the_last_run_that_synced(staff):
    account = make_offline_account()
    campaigns = make_campaigns(account, 3)
    make_finished_run(account, campaigns, ago_minutes=180)
    make_finished_run(account, campaigns, failed=3, status=RunStatus.FAILED, ago_minutes=5)
    html = page(staff)
    assert "3\xa0hours ago" in html
    account_data = staff.get("/status.json").json()["accounts"][0]
    assert account_data["freshness_seconds"] == pytest.approx(180 * 60, abs=5)
    assert account_data["run"]["status"] == "failed"  # the latest run, with its own status


def test_the_last_20_runs_are_listed_with_a_bar_each_in_the_chart(staff):
    account = make_offline_account()
    campaigns = make_campaigns(account, 4)
    runs = [make_finished_run(account, campaigns, failed=index % 2, ago_minutes=100 - index) for index in range(25)]
    html = page(staff)
    assert html.count('<rect class="synced"') == 20
    assert f"Run #{runs[-2].pk}: 3 synced, 1 failed" in html
    assert f">#{runs[4].pk}</a>" not in html  # the 21st newest is not listed
    assert "75%" in html  # success rate of a run with 1 of 4 failed
    assert len(staff.get("/status.json").json()["runs"]) == 20


def test_call_health_shows_latency_percentiles_and_the_runs_error_counters(staff):
    account = make_offline_account()
    campaigns = make_campaigns(account, 100)
    run = make_finished_run(account, campaigns, failed=7)
    for latency, attempt in enumerate(SyncAttempt.objects.filter(run=run).order_by("id"), start=1):
        SyncAttempt.objects.filter(pk=attempt.pk).update(latency_ms=latency)
    SyncRun.objects.filter(pk=run.pk).update(rate_limited=4, server_errors=7, timeouts=2, retries=9)
    health = staff.get("/status.json").json()["accounts"][0]["run"]["health"]
    assert health == {"p50_ms": 50, "p95_ms": 95, "samples": 100, "requests": 102, "rate_limited": 4,
                      "server_errors": 7, "timeouts": 2, "retries": 9}
    html = page(staff)
    assert ">50 ms<" in html and ">95 ms<" in html


def test_the_dead_letter_list_shows_failed_campaigns_with_their_latest_failure_and_a_count(staff):
    account = make_offline_account()
    campaigns = make_campaigns(account, 70, failed=60)
    make_finished_run(account, campaigns, failed=60)
    data = staff.get("/status.json").json()["dead_letter"]
    assert data["count"] == 60 and len(data["campaigns"]) == selectors.DEAD_LETTER_LIMIT
    assert data["campaigns"][0]["category"] == "server_error"
    assert data["campaigns"][0]["message"] == "the platform answered 503 five times"
    html = page(staff)
    assert "Dead letter: 60 campaigns whose last sync failed" in html
    assert "Showing 50 of 60" in html
    assert "Retry failed of Offline" in html


def test_hostile_campaign_and_account_names_are_escaped_and_long_ones_truncated(staff):
    account = make_offline_account(slug="evil")
    account.name = "<script>alert('account')</script>"
    account.save()
    script = make_campaigns(account, 1, failed=1, name="<script>alert('campaign {i}')</script>")
    long = make_campaigns(account, 1, failed=1, name="Campaign {i} " + "very long name " * 700, start=2)
    emoji = make_campaigns(account, 1, failed=1, name="Été 🚀 {i}'); DROP TABLE campaigns; --", start=3)
    make_finished_run(account, script + long + emoji, failed=3)
    html = page(staff)
    assert "<script>alert(" not in html
    assert "&lt;script&gt;alert(&#x27;campaign 1&#x27;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#x27;account&#x27;)&lt;/script&gt;" in html
    assert "very long name " * 10 not in html
    assert "Été 🚀 3&#x27;); DROP TABLE" in html
    body = staff.get("/status.json").json()
    assert all(len(item["name"]) <= 80 for item in body["dead_letter"]["campaigns"])


def test_the_page_asks_the_database_the_same_number_of_questions_for_5_or_50_runs(staff):
    account = make_offline_account()
    other = make_offline_account(slug="other")
    campaigns, other_campaigns = make_campaigns(account, 20, failed=2), make_campaigns(other, 5)

    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as page_queries:
            assert staff.get("/status/").status_code == 200
        with CaptureQueriesContext(connection) as json_queries:
            assert staff.get("/status.json").status_code == 200
        return len(page_queries), len(json_queries)

    for index in range(5):
        make_finished_run(account, campaigns, failed=2, ago_minutes=200 - index)
    make_active_run(other, other_campaigns, done=2)
    with_5 = queries()
    for index in range(45):
        make_finished_run(account, campaigns, failed=index % 3, ago_minutes=100 - index)
    assert SyncRun.objects.count() == 51
    assert queries() == with_5


def test_cluster_health_counts_workers_alive_and_tasks_queued(staff, cluster_heartbeat):
    cluster = staff.get("/status.json").json()["cluster"]
    assert cluster == {"state": "ok", "clusters": 1, "workers": 2, "queued": 0}
    assert 'data-cluster-field="workers">2<' in page(staff)


def test_a_broken_broker_reads_unknown_and_never_breaks_the_page(staff, monkeypatch):
    def broken():
        raise ConnectionError("redis is down")

    monkeypatch.setattr(selectors, "get_broker", broken)
    assert staff.get("/status.json").json()["cluster"] == {"state": "unknown", "clusters": None, "workers": None,
                                                           "queued": None}
    assert 'data-cluster-field="state">unknown<' in page(staff)


def test_sync_now_starts_a_status_page_run_on_the_cluster_and_links_to_it(staff, django_capture_on_commit_callbacks):
    account = make_offline_account()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(f"/status/accounts/{account.pk}/sync/", follow=True)
    run = SyncRun.objects.get()
    assert (run.trigger, run.triggered_by, run.status, run.campaign_filter) == (
        Trigger.STATUS_PAGE, "staff_trigger", RunStatus.QUEUED, None)
    assert len(queued_tasks()) == 1  # the prepare task, queued once the run was committed
    assert f'<a href="/admin/campaigns/syncrun/{run.pk}/change/">Run #{run.pk}</a> started' in \
        response.content.decode()


def test_sync_now_while_a_run_is_active_says_why_it_cannot_start(staff):
    account = make_offline_account()
    active = make_active_run(account, make_campaigns(account, 3))
    response = staff.post(f"/status/accounts/{account.pk}/sync/", follow=True)
    assert f"run #{active.pk} is running" in response.content.decode()
    assert SyncRun.objects.count() == 1


def test_retry_failed_redrives_the_whole_dead_letter_list(staff, django_capture_on_commit_callbacks):
    account = make_offline_account()
    campaigns = make_campaigns(account, 5, failed=3)  # campaign_1..3 failed their last sync
    make_finished_run(account, campaigns, failed=3, ago_minutes=60)
    make_finished_run(account, campaigns[1:], failed=2)  # campaign_1's failure is older than the latest run
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(f"/status/accounts/{account.pk}/retry-failed/", follow=True)
    retry = SyncRun.objects.order_by("-id").first()
    assert retry.campaign_filter == ["campaign_1", "campaign_2", "campaign_3"]
    assert retry.trigger == Trigger.STATUS_PAGE
    assert len(queued_tasks()) == 1
    assert "retry the 3 failed campaigns" in response.content.decode()


def test_retry_failed_with_an_empty_dead_letter_list_says_so(staff):
    account = make_offline_account()
    make_campaigns(account, 3)
    response = staff.post(f"/status/accounts/{account.pk}/retry-failed/", follow=True)
    assert "has no failed campaigns to retry" in response.content.decode()
    assert not SyncRun.objects.exists()


@pytest.mark.parametrize("url", ["/status/accounts/{pk}/sync/", "/status/accounts/{pk}/retry-failed/"])
def test_buttons_answer_only_post(staff, url):
    account = make_offline_account()
    assert staff.get(url.format(pk=account.pk)).status_code == 405
    assert not SyncRun.objects.exists()


# --- /healthz -------------------------------------------------------------------------

def test_healthz_is_200_when_the_database_answers_and_a_cluster_was_seen(client, cluster_heartbeat):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "cluster": "ok"}


def test_healthz_is_503_without_a_cluster_heartbeat(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "cluster": "down"}


def test_healthz_is_503_without_details_when_the_database_fails(client, cluster_heartbeat, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise RuntimeError("secret-connection-string@db.internal")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "error", "cluster": "ok"}
    assert b"secret-connection-string" not in response.content and b"Traceback" not in response.content


def test_healthz_reports_a_broken_cache_as_a_cluster_error(client, monkeypatch):
    from django_q.status import Stat

    def broken(*args, **kwargs):
        raise ConnectionError("cache unreachable")

    monkeypatch.setattr(Stat, "get_all", broken)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json() == {"database": "ok", "cluster": "error"}


def test_status_json_is_plain_json_for_monitors(staff):
    account = make_offline_account()
    make_finished_run(account, make_campaigns(account, 2))
    response = staff.get("/status.json")
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"generated_at", "accounts", "runs", "dead_letter", "cluster", "alerts"}
    assert body["accounts"][0]["display"]["run_status"] == "Succeeded"
    assert AttemptStatus.SUCCEEDED in {run["status"] for run in body["runs"]}
