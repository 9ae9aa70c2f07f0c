"""Alerts reach people: each condition opens one alert and one message per channel, resolves once, storms digest.

Messages travel for real: email through Django's SMTP backend (configured from an EMAIL_URL) to an aiosmtpd
server that requires a login, webhooks over HTTP to a receiver that checks each body's signature.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from campaigns import selectors
from campaigns.alert_models import Alert, AlertCondition, AlertDelivery, DeliveryKind, DeliveryStatus
from campaigns.models import AdAccount, RunStatus, SyncRun, Trigger
from syncer.alerting.check import alerts_check
from syncer.schedules import ALERTS_CHECK_TASK, ALERTS_SCHEDULE_NAME
from syncer.services import run_execute, sync_run_start
from syncer.tasks import alerts_check_task
from tests.alert_receivers import SMTP_PASSWORD, SMTP_USER, free_port
from tests.conftest import FAKE_PASSWORD, OPS_EMAIL

pytest.register_assert_rewrite("tests.people_fixtures")  # a plugin too (below): rewrite before importing
pytest_plugins = ["tests.people_fixtures"]  # private_cache

pytestmark = pytest.mark.django_db(transaction=True)


def plain_account(slug: str = "acme", **fields) -> AdAccount:
    account = AdAccount(name=slug.title(), slug=slug, base_url="http://127.0.0.1:9", email="x@example.com",
                        client_id=f"client-{slug}", **fields)
    account.save()
    return account


def ended_run(account: AdAccount, status: str, *, minutes_ago: float = 1, error: str = "", synced: int = 0,
              failed: int = 0) -> SyncRun:
    """A run that ended `minutes_ago`, saved as the engine leaves one (faster than syncing for real)."""
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return SyncRun.objects.create(account=account, trigger=Trigger.COMMAND, status=status, created_at=at,
                                  started_at=at, prepared_at=None if error else at, finished_at=at,
                                  error_message=error, campaigns_listed=synced + failed, campaigns_synced=synced,
                                  campaigns_failed=failed)


def open_alerts() -> list[tuple[str, str]]:
    return sorted(Alert.objects.filter(resolved_at__isnull=True).values_list("account__slug", "condition"))


def test_the_check_runs_every_minute_on_the_cluster_from_a_schedule_made_by_migrate():
    schedule = Schedule.objects.get(name=ALERTS_SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        ALERTS_CHECK_TASK, Schedule.MINUTES, 1, -1)
    ended_run(plain_account(), RunStatus.FAILED, failed=3)
    assert alerts_check_task() == 1  # the task the schedule names finds the failed run


def test_a_failed_run_opens_one_alert_and_one_message_per_channel_however_often_it_is_checked(alert_channels):
    smtp, hooks = alert_channels
    account = plain_account(alert_emails="owner@example.com, team@example.com")
    run = ended_run(account, RunStatus.FAILED, synced=0, failed=5)
    for _ in range(3):
        alerts_check()
    alert = Alert.objects.get()
    assert (alert.condition, alert.run_id, alert.resolved_at) == (AlertCondition.RUN_FAILED, run.pk, None)
    assert f"run #{run.pk} ended failed" in alert.message
    assert len(smtp.mails) == 1 and len(hooks.posts) == 1
    mail = smtp.mails[0]
    assert mail.recipients == ["owner@example.com", "team@example.com", OPS_EMAIL]
    assert "Subject: [campaign-sync] Alert: Acme: Sync failed" in mail.text and alert.message in mail.text
    assert smtp.logins == [(SMTP_USER, SMTP_PASSWORD)]  # EMAIL_URL's login was used
    post = hooks.posts[0]
    assert post.signed_right, post.signature
    body = post.json
    assert body["text"].startswith("Alert: Acme: Sync failed") and body["state"] == "opened"
    assert body["account"] == {"slug": "acme", "name": "Acme"} and body["run_id"] == run.pk
    assert body["condition"] == "run_failed" and body["resolved_at"] is None
    assert body["status_url"] == "https://sync.example.com/status/"
    assert list(AlertDelivery.objects.values_list("status", "tries")) == [(DeliveryStatus.SENT, 1)] * 2


def test_a_later_successful_run_resolves_the_alert_once(alert_channels):
    smtp, hooks = alert_channels
    account = plain_account()
    ended_run(account, RunStatus.PARTIAL, minutes_ago=5, synced=90, failed=10)
    alerts_check()
    ended_run(account, RunStatus.SUCCEEDED, minutes_ago=1, synced=100)
    for _ in range(3):
        alerts_check()
    alert = Alert.objects.get()
    assert alert.resolved_at is not None
    assert [post.json["state"] for post in hooks.posts] == ["opened", "resolved"]
    assert hooks.posts[1].json["resolved_at"] == alert.resolved_at.isoformat()
    assert len(smtp.mails) == 2 and "Resolved: Acme: Sync failed" in smtp.mails[1].text
    assert sorted(AlertDelivery.objects.values_list("kind", flat=True)) == ["opened", "opened", "resolved", "resolved"]


def test_the_database_holds_one_open_alert_per_account_and_condition():
    account, now = plain_account(), timezone.now()
    Alert.objects.create(account=account, condition=AlertCondition.STALE, opened_at=now, message="first")
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(account=account, condition=AlertCondition.STALE, opened_at=now, message="second")
    Alert.objects.update(resolved_at=now)
    Alert.objects.create(account=account, condition=AlertCondition.STALE, opened_at=now, message="a new stretch")
    assert Alert.objects.count() == 2


def test_a_cancelled_run_after_a_failure_does_not_clear_it(alert_channels):
    account = plain_account()
    ended_run(account, RunStatus.FAILED, minutes_ago=5, failed=1)
    ended_run(account, RunStatus.CANCELLED, minutes_ago=1)
    alerts_check()
    assert open_alerts() == [("acme", "run_failed")]


def test_refused_credentials_raise_their_own_alert_and_clear_once_a_run_gets_past_the_login(
        alert_channels, make_account):
    smtp, hooks = alert_channels
    account = make_account(password="a-changed-password")
    run = run_execute(run_id=sync_run_start(account=account, trigger=Trigger.COMMAND).pk)
    assert run.status == RunStatus.FAILED, run.error_message
    alerts_check()
    assert open_alerts() == [("acme", "credentials_refused")]  # not run_failed as well
    assert "refused the account's credentials" in hooks.posts[0].json["message"]
    account.set_password(FAKE_PASSWORD)
    account.save()
    run = run_execute(run_id=sync_run_start(account=account, trigger=Trigger.COMMAND).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    alerts_check()
    assert open_alerts() == []
    assert [(post.json["condition"], post.json["state"]) for post in hooks.posts] == [
        ("credentials_refused", "opened"), ("credentials_refused", "resolved")]
    assert len(smtp.mails) == 2


def test_an_account_not_synced_within_its_limit_is_stale_counting_from_its_creation_when_never_synced(
        alert_channels):
    never = plain_account("never", stale_after_minutes=60)
    AdAccount.objects.filter(pk=never.pk).update(created_at=timezone.now() - timedelta(hours=2))
    old = plain_account("old", stale_after_minutes=60)
    ended_run(old, RunStatus.SUCCEEDED, minutes_ago=90, synced=1)
    fresh = plain_account("fresh", stale_after_minutes=60)
    ended_run(fresh, RunStatus.SUCCEEDED, minutes_ago=30, synced=1)
    plain_account("new", stale_after_minutes=60)  # created just now: not stale yet
    alerts_check()
    assert open_alerts() == [("never", "stale"), ("old", "stale")]
    assert "never synced; added 2 h ago (its limit is 60 min)" in Alert.objects.get(account=never).message
    ended_run(old, RunStatus.SUCCEEDED, minutes_ago=0, synced=1)
    alerts_check()
    assert open_alerts() == [("never", "stale")]


def test_a_platform_unavailable_past_the_accounts_limit_alerts_until_it_answers_again(alert_channels):
    _smtp, hooks = alert_channels
    account = plain_account(outage_alert_after_minutes=15)
    now = timezone.now()
    run = SyncRun.objects.create(account=account, trigger=Trigger.COMMAND, status=RunStatus.RUNNING,
                                 started_at=now, platform_unavailable_since=now - timedelta(minutes=10))
    alerts_check()
    assert open_alerts() == []  # 10 min: within the limit
    SyncRun.objects.filter(pk=run.pk).update(platform_unavailable_since=now - timedelta(minutes=16))
    alerts_check()
    alerts_check()
    assert open_alerts() == [("acme", "platform_unavailable")]
    assert Alert.objects.get().run_id == run.pk
    SyncRun.objects.filter(pk=run.pk).update(platform_unavailable_since=None)
    alerts_check()
    assert open_alerts() == []
    assert [post.json["state"] for post in hooks.posts] == ["opened", "resolved"]


def test_many_transitions_at_once_go_as_one_digest_per_channel(alert_channels):
    smtp, hooks = alert_channels
    for index in range(6):
        ended_run(plain_account(f"acct{index}", alert_emails=f"owner{index}@example.com"), RunStatus.FAILED, failed=1)
    evaluation = alerts_check()
    assert len(evaluation.opened) == 6 and Alert.objects.count() == 6
    assert len(smtp.mails) == 1 and len(hooks.posts) == 1
    assert list(AlertDelivery.objects.values_list("kind", flat=True)) == [DeliveryKind.DIGEST] * 2
    body = hooks.posts[0].json
    assert body["kind"] == "digest" and body["text"].startswith("6 alerts opened or resolved")
    assert sorted(item["account"]["slug"] for item in body["alerts"]) == [f"acct{index}" for index in range(6)]
    assert sorted(smtp.mails[0].recipients) == sorted([*(f"owner{index}@example.com" for index in range(6)),
                                                       OPS_EMAIL])
    alerts_check()
    assert len(smtp.mails) == 1 and len(hooks.posts) == 1  # nothing changed, nothing sent


def test_transitions_past_the_limit_within_a_minute_go_as_a_digest_too(alert_channels):
    _smtp, hooks = alert_channels
    for index in range(3):
        ended_run(plain_account(f"first{index}"), RunStatus.FAILED, failed=1)
    alerts_check()
    assert [post.json["kind"] for post in hooks.posts] == ["opened"] * 3
    ended_run(plain_account("late"), RunStatus.FAILED, failed=1)
    alerts_check()
    assert [post.json["kind"] for post in hooks.posts] == ["opened"] * 3 + ["digest"]


def test_a_failing_webhook_receiver_is_retried_with_every_try_recorded(alert_channels):
    _, hooks = alert_channels
    hooks.statuses = [500, 503]
    ended_run(plain_account(), RunStatus.FAILED, failed=1)
    alerts_check()
    delivery = AlertDelivery.objects.get(channel="webhook")
    assert (delivery.status, delivery.tries, delivery.last_error) == (DeliveryStatus.SENT, 3, "")
    assert len(hooks.posts) == 3 and all(post.signed_right for post in hooks.posts)
    assert len({post.body for post in hooks.posts}) == 1  # the same message each try


def test_a_receiver_that_refuses_the_message_is_not_retried(alert_channels):
    _, hooks = alert_channels
    hooks.statuses = [403]
    ended_run(plain_account(), RunStatus.FAILED, failed=1)
    alerts_check()
    delivery = AlertDelivery.objects.get(channel="webhook")
    assert (delivery.status, delivery.tries) == (DeliveryStatus.FAILED, 1)
    assert delivery.last_error == "try 1: the webhook receiver answered HTTP 403"


def test_a_dead_receiver_and_mail_server_fail_their_deliveries_in_one_line_and_nothing_else(
        alert_channels, settings, make_account, captured_logs):
    smtp, hooks = alert_channels
    smtp.stop()
    hooks.stop()
    settings.EMAIL_PORT = free_port()
    ended_run(plain_account("broken"), RunStatus.FAILED, failed=1)
    evaluation = alerts_check()
    assert len(evaluation.opened) == 1
    deliveries = {delivery.channel: delivery for delivery in AlertDelivery.objects.all()}
    for channel, expected in (("email", "could not reach the mail server (ConnectionRefusedError)"),
                              ("webhook", "could not reach the webhook receiver (ConnectionError)")):
        delivery = deliveries[channel]
        assert (delivery.status, delivery.tries) == (DeliveryStatus.FAILED, 4), channel
        assert delivery.last_error == f"try 4: {expected}"
    assert "Traceback" not in captured_logs.getvalue()
    run = run_execute(run_id=sync_run_start(account=make_account(), trigger=Trigger.COMMAND).pk)
    assert run.status == RunStatus.SUCCEEDED  # syncs go on
    alerts_check()  # and so do the checks
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1


def test_without_email_url_no_email_is_tried_and_alerts_are_still_recorded(settings, webhook_receiver):
    settings.ALERTS = {**settings.ALERTS, "EMAIL": False, "WEBHOOK_URL": ""}
    ended_run(plain_account(alert_emails="owner@example.com"), RunStatus.FAILED, failed=1)
    alerts_check()
    assert open_alerts() == [("acme", "run_failed")]
    assert not AlertDelivery.objects.exists()


def test_an_account_name_with_newlines_and_html_stays_one_line_and_the_webhook_body_is_valid_json(alert_channels):
    _, hooks = alert_channels
    account = plain_account()
    AdAccount.objects.filter(pk=account.pk).update(name='Evil\nName <script>"x"</script> 🚀')
    ended_run(account, RunStatus.FAILED, failed=1)
    alerts_check()
    message = Alert.objects.get().message
    assert "\n" not in message and message.startswith('Evil Name <script>"x"</script> 🚀:')
    assert json.loads(hooks.posts[0].body)["account"]["name"].startswith("Evil\nName")


# --- the admin -------------------------------------------------------------------------------

ACCOUNT_FORM = {"name": "Acme", "slug": "acme", "base_url": "http://127.0.0.1:9", "email": "a@b.test",
                "client_id": "c", "rate_limit": "10/60s", "password": "s3cret", "platform": "reference"}


def test_the_account_form_takes_the_alert_settings_and_names_a_bad_address(admin_client):
    response = admin_client.post("/admin/campaigns/adaccount/add/",
                                 {**ACCOUNT_FORM, "alert_emails": "ops@example.com, nobody-at-all"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["alert_emails"] == [
        "'nobody-at-all' is not an email address; separate addresses with commas"]
    response = admin_client.post("/admin/campaigns/adaccount/add/", {
        **ACCOUNT_FORM, "alert_emails": "ops@example.com, oncall@example.com", "stale_after_minutes": "90",
        "outage_alert_after_minutes": "5"})
    assert response.status_code == 302
    account = AdAccount.objects.get(slug="acme")
    assert account.alert_email_list == ["ops@example.com", "oncall@example.com"]
    assert (account.stale_after_minutes, account.outage_alert_after_minutes) == (90, 5)


def test_alert_limits_left_empty_keep_their_defaults(admin_client):
    assert admin_client.post("/admin/campaigns/adaccount/add/", ACCOUNT_FORM).status_code == 302
    account = AdAccount.objects.get(slug="acme")
    assert (account.stale_after_minutes, account.outage_alert_after_minutes) == (24 * 60, 15)


def test_alerts_and_deliveries_are_read_only_records_in_the_admin(admin_client, alert_channels):
    ended_run(plain_account(), RunStatus.FAILED, failed=2)
    alerts_check()
    alert, delivery = Alert.objects.get(), AlertDelivery.objects.first()
    listing = admin_client.get("/admin/campaigns/alert/?state=open").content.decode()
    assert "Sync failed" in listing and "Run #" in listing
    page = admin_client.get(f"/admin/campaigns/alert/{alert.pk}/change/").content.decode()
    assert "opened email (sent, 1 tries)" in page and 'name="_save"' not in page
    assert admin_client.get(f"/admin/campaigns/alertdelivery/{delivery.pk}/change/").status_code == 200
    assert admin_client.get("/admin/campaigns/alert/add/").status_code == 403


# --- the status page -------------------------------------------------------------------------

def test_the_status_page_and_its_json_show_the_open_alerts(admin_client, private_cache):
    account = plain_account()
    AdAccount.objects.filter(pk=account.pk).update(name="<b>Acme</b>")
    run = ended_run(account, RunStatus.FAILED, failed=2)
    alerts_check()
    html = admin_client.get("/status/").content.decode()
    assert "1 open alert" in html and "&lt;b&gt;Acme&lt;/b&gt;: sync run #" in html and "<b>Acme</b>" not in html
    assert f'href="/admin/campaigns/syncrun/{run.pk}/change/"' in html
    alerts = admin_client.get("/status.json").json()["alerts"]
    assert alerts["open"] == 1
    assert [(item["account"], item["condition"], item["run_id"]) for item in alerts["newest"]] == [
        ("acme", "run_failed", run.pk)]
    ended_run(account, RunStatus.SUCCEEDED, minutes_ago=0, synced=2)
    alerts_check()
    assert "open alert" not in admin_client.get("/status/").content.decode()
    assert admin_client.get("/status.json").json()["alerts"] == {"open": 0, "newest": []}


def test_the_open_alerts_cost_the_status_page_the_same_queries_however_many(private_cache):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            overview = selectors.status_overview()
            [alert.account.name for alert in overview.alerts]
        return len(captured)

    ended_run(plain_account("one"), RunStatus.FAILED, failed=1)
    alerts_check()
    few = queries()
    for index in range(30):
        ended_run(plain_account(f"many{index}"), RunStatus.FAILED, failed=1)
    alerts_check()
    overview = selectors.status_overview()
    assert overview.alerts_open_count == 31 and len(overview.alerts) == selectors.OPEN_ALERTS_LIMIT
    assert queries() == few
