"""Who may do what: anonymous, non-staff, staff, and staff with `campaigns.trigger_sync`.

Viewing needs staff; starting, retrying or cancelling needs the permission.
Anonymous visitors go to the login page; a logged-in user without the right
gets 403 (the admin itself sends non-staff users to its login page, as
Django's admin always does). Every state change is a POST with CSRF.
"""
from __future__ import annotations

import pytest
from django.middleware.csrf import get_token
from django.test import RequestFactory

from campaigns.models import RunStatus, SyncRun, Trigger

pytest.register_assert_rewrite("tests.people_fixtures")  # it is a plugin too (below): rewrite before importing

from tests.people_fixtures import (  # noqa: E402
    make_active_run,
    make_campaigns,
    make_finished_run,
    make_offline_account,
)

pytest_plugins = ["tests.people_fixtures"]  # client_as, private_cache, cluster_heartbeat

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_cache")]

LOGIN = "/admin/login/"


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(LOGIN)


@pytest.fixture
def world(account):
    """An idle account on the fake platform, one with a failed run to retry, one with a run to cancel."""
    idle_campaigns = make_campaigns(account, 3)
    retry_account = make_offline_account("retry")
    finished = make_finished_run(retry_account, make_campaigns(retry_account, 4, failed=2), failed=2)
    cancel_account = make_offline_account("cancel")
    active = make_active_run(cancel_account, make_campaigns(cancel_account, 4), done=1)
    return {"account": account, "campaigns": idle_campaigns, "retry_account": retry_account, "finished": finished,
            "active": active}


# --- pages ---------------------------------------------------------------------------

@pytest.mark.parametrize("role, expected", [
    ("anonymous", "login"), ("non_staff", 403), ("staff", 200), ("staff_trigger", 200),
])
@pytest.mark.parametrize("url", ["/status/", "/status.json"])
def test_viewing_the_status_page_and_its_json_needs_staff(client_as, world, role, expected, url):
    response = client_as(role).get(url)
    if expected == "login":
        assert is_login_redirect(response) and f"next={url}" in response["Location"]
    else:
        assert response.status_code == expected


def test_only_holders_of_trigger_sync_see_the_buttons(client_as, world):
    html = client_as("staff").get("/status/").content
    assert b"Sync now" not in html and b"Retry failed of" not in html
    html = client_as("staff_trigger").get("/status/").content
    assert b"Sync now" in html and b"Retry failed of Retry" in html


@pytest.mark.parametrize("role, expected", [
    ("anonymous", "login"), ("non_staff", 403), ("staff", 403), ("staff_trigger", 302),
])
@pytest.mark.parametrize("button", ["sync", "retry-failed"])
def test_the_status_page_buttons_need_trigger_sync(client_as, world, role, expected, button):
    account = world["account"] if button == "sync" else world["retry_account"]
    runs_before = SyncRun.objects.count()
    response = client_as(role).post(f"/status/accounts/{account.pk}/{button}/")
    if expected == "login":
        assert is_login_redirect(response)
    else:
        assert response.status_code == expected
    started = SyncRun.objects.filter(trigger=Trigger.STATUS_PAGE)
    assert started.count() == (1 if expected == 302 else 0)
    assert SyncRun.objects.count() == runs_before + started.count()


@pytest.mark.parametrize("button", ["sync", "retry-failed"])
def test_the_status_page_buttons_refuse_a_post_without_a_csrf_token(client_as, world, button):
    account = world["account"] if button == "sync" else world["retry_account"]
    client = client_as("staff_trigger", enforce_csrf_checks=True)
    response = client.post(f"/status/accounts/{account.pk}/{button}/")
    assert response.status_code == 403
    assert not SyncRun.objects.filter(trigger=Trigger.STATUS_PAGE).exists()


def test_sync_now_goes_through_with_the_csrf_token_of_the_page(client_as, world):
    client = client_as("staff_trigger", enforce_csrf_checks=True)
    html = client.get("/status/").content.decode()
    token = html.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    response = client.post(f"/status/accounts/{world['account'].pk}/sync/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/status/"
    assert SyncRun.objects.filter(trigger=Trigger.STATUS_PAGE, account=world["account"]).count() == 1


@pytest.mark.parametrize("role", ["anonymous", "non_staff", "staff", "staff_trigger"])
@pytest.mark.parametrize("button", ["sync", "retry-failed"])
def test_the_buttons_refuse_get_for_everyone(client_as, world, role, button):
    assert client_as(role).get(f"/status/accounts/{world['account'].pk}/{button}/").status_code == 405


def test_healthz_needs_no_login(client, world):
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/healthz")["Content-Type"] == "application/json"


# --- admin actions -----------------------------------------------------------------------

def _sync_selected(world):
    return "campaign", "sync_selected", [c.pk for c in world["campaigns"][:2]]


def _sync_now(world):
    return "adaccount", "sync_now", [world["account"].pk]


def _test_connection(world):
    return "adaccount", "test_connection", [world["account"].pk]


def _retry_failed(world):
    return "syncrun", "retry_failed", [world["finished"].pk]


def _cancel_run(world):
    return "syncrun", "cancel_run", [world["active"].pk]


def effect_seen(name: str, world, response) -> bool:
    """Whether the action did its work (and answered with its message)."""
    active = SyncRun.objects.get(pk=world["active"].pk)
    admin_runs = SyncRun.objects.filter(trigger=Trigger.ADMIN).exclude(pk=world["active"].pk)
    messages = " ".join(str(message) for message in response.context["messages"]) if response.context else ""
    if name == "sync_selected":
        return admin_runs.filter(account=world["account"], campaign_filter=["campaign_1", "campaign_2"]).exists()
    if name == "sync_now":
        return admin_runs.filter(account=world["account"], campaign_filter__isnull=True).exists()
    if name == "test_connection":
        return "connected to" in messages
    if name == "retry_failed":
        return admin_runs.filter(retry_of=world["finished"]).exists()
    return active.status == RunStatus.CANCELLED


ACTIONS = [_sync_selected, _sync_now, _test_connection, _retry_failed, _cancel_run]


@pytest.mark.parametrize("role, expected", [
    ("anonymous", "login"), ("non_staff", "login"), ("staff", 403), ("staff_trigger", 200),
])
@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: action.__name__.strip("_"))
def test_every_admin_action_needs_trigger_sync(client_as, world, role, expected, action):
    model, name, pks = action(world)
    response = client_as(role).post(f"/admin/campaigns/{model}/", {"action": name, "_selected_action": pks,
                                                                   "index": 0}, follow=expected == 200)
    if expected == "login":
        assert is_login_redirect(response)
    else:
        assert response.status_code == expected
    assert effect_seen(name, world, response) is (expected == 200)


@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: action.__name__.strip("_"))
def test_admin_actions_are_offered_only_to_holders_of_trigger_sync(client_as, world, action):
    model, name, _ = action(world)
    assert f'value="{name}"'.encode() not in client_as("staff").get(f"/admin/campaigns/{model}/").content
    assert f'value="{name}"'.encode() in client_as("staff_trigger").get(f"/admin/campaigns/{model}/").content


def test_an_admin_action_without_a_csrf_token_is_refused(client_as, world):
    client = client_as("staff_trigger", enforce_csrf_checks=True)
    response = client.post("/admin/campaigns/adaccount/", {"action": "sync_now", "index": 0,
                                                           "_selected_action": [world["account"].pk]})
    assert response.status_code == 403
    assert not SyncRun.objects.filter(trigger=Trigger.ADMIN).exists()


def test_an_admin_action_with_the_csrf_token_goes_through(client_as, world):
    client = client_as("staff_trigger", enforce_csrf_checks=True)
    client.get("/admin/campaigns/adaccount/")
    token = client.cookies["csrftoken"].value
    response = client.post("/admin/campaigns/adaccount/", {"action": "sync_now", "index": 0,
                                                           "_selected_action": [world["account"].pk],
                                                           "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert SyncRun.objects.filter(trigger=Trigger.ADMIN, account=world["account"]).count() == 1


@pytest.mark.parametrize("model", ["syncrun", "syncattempt"])
@pytest.mark.parametrize("role", ["staff", "staff_trigger"])
def test_runs_and_attempts_are_records_nobody_adds_edits_or_deletes(client_as, world, model, role):
    client = client_as(role)
    record = world["finished"] if model == "syncrun" else world["finished"].attempts.first()
    assert client.get(f"/admin/campaigns/{model}/").status_code == 200
    assert client.get(f"/admin/campaigns/{model}/{record.pk}/change/").status_code == 200  # view only
    assert client.get(f"/admin/campaigns/{model}/add/").status_code == 403
    assert client.post(f"/admin/campaigns/{model}/{record.pk}/change/", {"status": "failed"}).status_code == 403
    assert client.post(f"/admin/campaigns/{model}/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert type(record).objects.filter(pk=record.pk, status=record.status).exists()


def test_even_a_superuser_cannot_edit_a_run(client, world, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.test", "pw-123456789"))
    run = world["finished"]
    assert client.get(f"/admin/campaigns/syncrun/{run.pk}/change/").status_code == 200
    assert b'name="_save"' not in client.get(f"/admin/campaigns/syncrun/{run.pk}/change/").content
    assert client.post(f"/admin/campaigns/syncrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403


def test_csrf_tokens_are_issued_to_the_status_page(client_as):
    # Guards the CSRF tests above: the form token is what a browser would send back.
    request = RequestFactory().get("/status/")
    assert get_token(request)
