"""The admin as its users see it: columns, the write-only secret, actions and their effects, read-only history."""
from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.admin import CappedCountPaginator
from campaigns.models import AdAccount, AttemptStatus, RunStatus, SyncAttempt, SyncRun, Trigger
from tests.conftest import FAKE_PASSWORD
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
def operator(client_as):
    """Staff with view rights and `trigger_sync`, not a superuser: what the actions really need."""
    return client_as("staff_trigger")


def act(client, model: str, action: str, pks: list[int]):
    return client.post(f"/admin/campaigns/{model}/", {"action": action, "_selected_action": pks, "index": 0},
                       follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- ad accounts ------------------------------------------------------------------------------

def test_the_account_password_is_write_only(admin_client, account):
    html = admin_client.get(f"/admin/campaigns/adaccount/{account.pk}/change/").content.decode()
    assert re.search(r'<input type="password" name="password"[^>]*>', html)
    assert FAKE_PASSWORD not in html and account.encrypted_password not in html
    assert "encrypted_password" not in html


def test_a_blank_password_keeps_the_old_one_and_a_new_one_replaces_it(admin_client, account):
    form = {"name": "Acme", "slug": "acme", "base_url": account.base_url, "email": account.email,
            "client_id": account.client_id, "rate_limit": "none", "password": "", "platform": "reference"}
    response = admin_client.post(f"/admin/campaigns/adaccount/{account.pk}/change/", form)
    assert response.status_code == 302
    assert AdAccount.objects.get(pk=account.pk).get_password() == FAKE_PASSWORD
    admin_client.post(f"/admin/campaigns/adaccount/{account.pk}/change/", {**form, "password": "new-secret"})
    assert AdAccount.objects.get(pk=account.pk).get_password() == "new-secret"


def test_a_new_account_needs_a_password_and_stores_it_encrypted(admin_client):
    form = {"name": "New", "slug": "new", "base_url": "http://127.0.0.1:9", "email": "a@b.test", "client_id": "c",
            "rate_limit": "10/60s", "password": "", "platform": "metered"}
    assert admin_client.post("/admin/campaigns/adaccount/add/", form).status_code == 200  # form error
    assert admin_client.post("/admin/campaigns/adaccount/add/", {**form, "password": "s3cret"}).status_code == 302
    created = AdAccount.objects.get(slug="new")
    assert created.get_password() == "s3cret" and "s3cret" not in created.encrypted_password
    assert created.platform == "metered", "the account names its platform's dialect"


def test_sync_now_enqueues_a_full_admin_run_and_links_to_it(operator, account, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = act(operator, "adaccount", "sync_now", [account.pk])
    run = SyncRun.objects.get()
    assert (run.trigger, run.triggered_by, run.campaign_filter, run.status) == (
        Trigger.ADMIN, "staff_trigger", None, RunStatus.QUEUED)
    assert len(queued_tasks()) == 1
    assert messages_of(response) == [f'<a href="/admin/campaigns/syncrun/{run.pk}/change/">Run #{run.pk}</a> '
                                     f'started for Acme.']


def test_sync_now_on_a_busy_account_shows_the_refusal_as_a_warning(operator, account):
    active = make_active_run(account, make_campaigns(account, 2))
    response = act(operator, "adaccount", "sync_now", [account.pk])
    assert SyncRun.objects.count() == 1
    [message] = response.context["messages"]
    assert message.level_tag == "warning" and f"run #{active.pk} is running" in str(message)
    assert f'see <a href="/admin/campaigns/syncrun/{active.pk}/change/">Run #{active.pk}</a>.' in str(message)


def test_test_connection_reports_success_from_the_platform(operator, account):
    [message] = act(operator, "adaccount", "test_connection", [account.pk]).context["messages"]
    assert message.level_tag == "success"
    assert "Acme: connected to" in str(message) and "lists 100 campaigns" in str(message)


def test_test_connection_gives_the_reason_and_never_the_secret(operator, make_account):
    wrong = make_account(slug="wrong", password="not-the-password")
    [message] = act(operator, "adaccount", "test_connection", [wrong.pk]).context["messages"]
    assert message.level_tag == "error" and str(message).startswith("Wrong: ")
    assert "not-the-password" not in str(message) and FAKE_PASSWORD not in str(message)


# --- campaigns ----------------------------------------------------------------------------------

def test_the_campaign_list_shows_status_badges_relative_times_and_escaped_truncated_names(operator):
    account = make_offline_account()
    make_campaigns(account, 1, failed=1, name="<script>alert('x {i}')</script>")
    make_campaigns(account, 1, name="Campaign {i} " + "very long name " * 700, start=2)
    html = operator.get("/admin/campaigns/campaign/").content.decode()
    assert "<script>alert(" not in html and "&lt;script&gt;alert(&#x27;x 1&#x27;)&lt;/script&gt;" in html
    assert "very long name " * 10 not in html
    assert 'data-status="failed"' in html and 'data-status="succeeded"' in html
    assert "just now" in html
    for column in ("platform id", "account", "budget", "last synced", "last sync"):
        assert f">{column.capitalize()}<" in html or f">{column}<" in html.lower()


def test_campaigns_filter_by_account_status_and_last_sync_and_search_by_name_or_id(operator):
    first, second = make_offline_account("first"), make_offline_account("second")
    make_campaigns(first, 3, failed=1)
    make_campaigns(second, 2, name="Other {i}", start=10)

    def listed(query: str) -> int:
        return operator.get(f"/admin/campaigns/campaign/?{query}").context["cl"].result_count

    assert listed(f"account__id__exact={second.pk}") == 2
    assert listed("last_sync_status__exact=failed") == 1
    assert listed("status__exact=active") == 5
    assert listed("q=Other") == 2 and listed("q=campaign_11") == 1


def test_sync_selected_campaigns_starts_one_run_per_account_with_just_those_campaigns(
        operator, django_capture_on_commit_callbacks):
    first, second = make_offline_account("first"), make_offline_account("second")
    picked = make_campaigns(first, 3)[:2] + make_campaigns(second, 2, start=10)[:1]
    with django_capture_on_commit_callbacks(execute=True):
        response = act(operator, "campaign", "sync_selected", [campaign.pk for campaign in picked])
    runs = {run.account.slug: run for run in SyncRun.objects.select_related("account")}
    assert runs["first"].campaign_filter == ["campaign_1", "campaign_2"]
    assert runs["second"].campaign_filter == ["campaign_10"]
    assert {run.trigger for run in runs.values()} == {Trigger.ADMIN}
    assert len(queued_tasks()) == 2
    assert sorted(messages_of(response)) == [
        f'<a href="/admin/campaigns/syncrun/{runs["first"].pk}/change/">Run #{runs["first"].pk}</a> started for 2 '
        'campaigns of First.',
        f'<a href="/admin/campaigns/syncrun/{runs["second"].pk}/change/">Run #{runs["second"].pk}</a> started for 1 '
        'campaign of Second.',
    ]


def test_campaigns_are_read_only_data_from_the_platform(operator):
    campaign = make_campaigns(make_offline_account(), 1)[0]
    assert operator.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").status_code == 200
    assert operator.get("/admin/campaigns/campaign/add/").status_code == 403


def test_a_campaign_page_links_to_every_attempt_of_that_campaign(operator):
    account = make_offline_account()
    campaigns = make_campaigns(account, 2)
    make_finished_run(account, campaigns, ago_minutes=10)
    make_finished_run(account, campaigns)
    html = operator.get(f"/admin/campaigns/campaign/{campaigns[0].pk}/change/").content.decode()
    assert f"/admin/campaigns/syncattempt/?campaign__exact={campaigns[0].pk}" in html
    listed = operator.get(f"/admin/campaigns/syncattempt/?campaign__exact={campaigns[0].pk}")
    assert listed.status_code == 200 and listed.context["cl"].result_count == 2


# --- runs -----------------------------------------------------------------------------------------

def test_the_run_list_shows_status_trigger_duration_counts_success_rate_and_429s(operator):
    account = make_offline_account()
    run = make_finished_run(account, make_campaigns(account, 4), failed=1)
    html = operator.get("/admin/campaigns/syncrun/").content.decode()
    assert f"#{run.pk}" in html and 'data-status="partial"' in html
    assert "Command · test" in html and ">30 s<" in html and "3 / 1" in html and "75%" in html
    assert '<td class="field-rate_limited">1</td>' in html


def test_the_run_page_links_to_its_attempts_by_status_and_error_category(operator):
    account = make_offline_account()
    run = make_finished_run(account, make_campaigns(account, 4), failed=1)
    html = operator.get(f"/admin/campaigns/syncrun/{run.pk}/change/").content.decode()
    assert f"?run__exact={run.pk}&amp;status__exact=failed&amp;error_category__exact=server_error" in html
    listed = operator.get(f"/admin/campaigns/syncattempt/?run__exact={run.pk}&status__exact=failed"
                               f"&error_category__exact=server_error")
    assert listed.status_code == 200 and listed.context["cl"].result_count == 1


def test_retry_failed_campaigns_starts_a_run_for_exactly_the_failures(operator,
                                                                     django_capture_on_commit_callbacks):
    account = make_offline_account()
    run = make_finished_run(account, make_campaigns(account, 5, failed=2), failed=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(operator, "syncrun", "retry_failed", [run.pk])
    retry = SyncRun.objects.exclude(pk=run.pk).get()
    assert (retry.retry_of, retry.trigger, retry.campaign_filter) == (run, Trigger.ADMIN, ["campaign_1", "campaign_2"])
    assert len(queued_tasks()) == 1
    assert messages_of(response) == [
        f'<a href="/admin/campaigns/syncrun/{retry.pk}/change/">Run #{retry.pk}</a> started to retry the failures of '
        f'<a href="/admin/campaigns/syncrun/{run.pk}/change/">Run #{run.pk}</a>.'
    ]


def test_retry_failed_of_a_clean_run_warns_that_there_is_nothing_to_retry(operator):
    account = make_offline_account()
    run = make_finished_run(account, make_campaigns(account, 2))
    [message] = act(operator, "syncrun", "retry_failed", [run.pk]).context["messages"]
    assert message.level_tag == "warning" and "has no failed campaigns to retry" in str(message)


def test_cancel_run_stops_an_active_run_and_warns_about_ended_ones(operator):
    account = make_offline_account()
    campaigns = make_campaigns(account, 3)
    ended = make_finished_run(account, campaigns)
    active = make_active_run(account, campaigns, done=1)
    response = act(operator, "syncrun", "cancel_run", [active.pk, ended.pk])
    active.refresh_from_db()
    assert active.status == RunStatus.CANCELLED and active.error_message == "cancelled by staff_trigger"
    assert set(active.attempts.values_list("status", flat=True)) == {AttemptStatus.SUCCEEDED, AttemptStatus.CANCELLED}
    levels = sorted(message.level_tag for message in response.context["messages"])
    assert levels == ["success", "warning"]


# --- speed with history -------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/admin/campaigns/syncrun/", "/admin/campaigns/syncattempt/",
                                 "/admin/campaigns/campaign/"])
def test_changelists_ask_the_same_number_of_queries_for_5_or_50_runs(operator, url):
    account = make_offline_account()
    campaigns = make_campaigns(account, 10, failed=2)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert operator.get(url).status_code == 200
        return len(captured)

    for index in range(5):
        make_finished_run(account, campaigns, failed=index % 3, ago_minutes=100 - index)
    with_5 = queries()
    for index in range(45):
        make_finished_run(account, campaigns, failed=index % 3, ago_minutes=50 - index)
    assert queries() == with_5


def test_the_attempt_list_stops_counting_at_a_cap(operator, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 15)
    account = make_offline_account()
    campaigns = make_campaigns(account, 10)
    make_finished_run(account, campaigns)
    make_finished_run(account, campaigns)
    html = operator.get("/admin/campaigns/syncattempt/").content.decode()
    assert "more than 15 sync attempts" in html
    assert SyncAttempt.objects.count() == 20
