"""Outages: the account-level breaker holds every call while the platform is down, probes one at a time,
and fails the run only after SYNC_MAX_OUTAGE; answers too large to read; a client id that cannot be sent.

Whole runs go through the services against the fake platform (as tests/test_faults.py drives them);
client-level behaviour uses a PlatformClient on the fake directly.
"""
from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model

from campaigns.models import AdAccount, AttemptStatus, RunStatus, SyncAttempt, SyncRun, Trigger
from syncer.breaker import OUTAGE_FAILURES
from syncer.calls import CallStats
from syncer.client import BAD_RESPONSE, CLIENT_ERROR, PlatformError
from syncer.services import run_execute, sync_run_start
from tests.outages import outage_call_bound, probes_while_down
from tests.runs import Background, assert_all_synced, check_invariants, failures, sync
from tests.test_client import list_all
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

CONCURRENCY = 10
DOWN_SECONDS = 6.0


def outage_once_under_way(platform, account, seconds: float) -> Background:
    """Once the run has synced some campaigns, take the platform down for `seconds`; the background's
    result is whether the account's run said "platform unavailable" meanwhile."""
    def fault() -> bool:
        wait_until(lambda: platform.stats["synced_total"] >= 10, timeout=30, poll=0.01,
                   message="the run syncs some campaigns")
        platform.down_for(seconds)
        flagged = SyncRun.objects.filter(account=account, platform_unavailable_since__isnull=False)
        return bool(wait_until(flagged.exists, timeout=seconds, poll=0.02,
                               message="the run says the platform is unavailable while it is down"))

    return Background(fault, name="outage")


@pytest.fixture
def doubling(settings, fast_sync):
    """Probe waits that double from BACKOFF_BASE without reaching the cap inside the outage."""
    settings.SYNC = {**fast_sync, "BACKOFF_CAP": 2 * DOWN_SECONDS, "MAX_OUTAGE": 60.0}
    return settings.SYNC


# --- whole runs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["503", "reset", "hang"])
def test_an_outage_mid_run_is_held_out_and_every_campaign_syncs(fake_platform, account, doubling, captured_logs,
                                                                mode):
    fake_platform.update(campaigns=60, sync_latency=0.1, down_mode=mode)
    outage = outage_once_under_way(fake_platform, account, DOWN_SECONDS)
    run = sync(account, concurrency=CONCURRENCY, timeout=90)
    assert outage.result(30), "the status page must say the platform is unavailable during the outage"
    check_invariants(run, fake_platform, captured_logs)
    # Held calls spend no tries: five tries (the default) would not outlast a 6 s outage otherwise.
    assert_all_synced(run, fake_platform)
    assert run.platform_unavailable_since is None, "the run says the platform is back"
    bound = outage_call_bound(DOWN_SECONDS, doubling["BACKOFF_BASE"], doubling["BACKOFF_CAP"], CONCURRENCY)
    calls_while_down = fake_platform.stats["calls_while_down"]
    assert calls_while_down <= bound, f"{calls_while_down} calls while the platform was down (bound {bound})"


def test_an_outage_under_a_rate_budget_is_held_out_too(fake_platform, make_account, doubling, captured_logs):
    # A budget brings the limiter's queue in: the probe may wait for a slot behind threads whose calls
    # the breaker then holds. The run must not wedge on it.
    fake_platform.update(campaigns=60, sync_latency=0.1, down_mode="503")
    account = make_account(rate_limit="200/1s")
    outage = outage_once_under_way(fake_platform, account, DOWN_SECONDS)
    run = sync(account, concurrency=CONCURRENCY, timeout=90)
    assert outage.result(30)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    bound = outage_call_bound(DOWN_SECONDS, doubling["BACKOFF_BASE"], doubling["BACKOFF_CAP"], CONCURRENCY)
    assert fake_platform.stats["calls_while_down"] <= bound


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_an_outage_longer_than_sync_max_outage_fails_the_run_with_one_line(fake_platform, account, settings,
                                                                          fast_sync, captured_logs, mode):
    max_outage = 2.0
    settings.SYNC = {**fast_sync, "MAX_OUTAGE": max_outage}
    fake_platform.update(campaigns=60, sync_latency=0.1, down_mode=mode)

    def down_for_good() -> float:
        wait_until(lambda: fake_platform.stats["synced_total"] >= 10, timeout=30, poll=0.01,
                   message="the run syncs some campaigns")
        fake_platform.update(down=True)
        return time.monotonic()

    went_down = Background(down_for_good, name="outage")
    run = sync(account, concurrency=CONCURRENCY, timeout=60)
    ended = time.monotonic()
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.FAILED, failures(run)
    assert "SYNC_MAX_OUTAGE" in run.error_message and "\n" not in run.error_message, run.error_message
    assert ended - went_down.result(5) >= max_outage, "the run gave up before SYNC_MAX_OUTAGE"
    failed = SyncAttempt.objects.filter(run=run, status=AttemptStatus.FAILED)
    assert failed.exists()
    assert all("SYNC_MAX_OUTAGE" in message for message in failed.values_list("message", flat=True)), \
        "every campaign the outage failed says why"
    assert run.platform_unavailable_since is None
    bound = outage_call_bound(max_outage, fast_sync["BACKOFF_BASE"], fast_sync["BACKOFF_CAP"], CONCURRENCY)
    assert fake_platform.stats["calls_while_down"] <= bound


def test_the_status_page_says_platform_unavailable_since_during_an_outage(fake_platform, account, doubling, client):
    fake_platform.update(campaigns=60, sync_latency=0.1, down_mode="503")
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "a-long-pass-phrase"))

    def status() -> dict:
        return next(a for a in client.get("/status.json").json()["accounts"] if a["id"] == account.pk)

    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="outage test", concurrency=CONCURRENCY)
    running = Background(lambda: run_execute(run_id=run.pk), name="run")
    wait_until(lambda: fake_platform.stats["synced_total"] >= 10, timeout=30, poll=0.01,
               message="the run syncs some campaigns")
    fake_platform.down_for(DOWN_SECONDS)
    during = wait_until(lambda: (s := status())["run"]["platform_unavailable_since"] and s, timeout=DOWN_SECONDS,
                        poll=0.05, message="/status.json says the platform is unavailable")
    assert during["display"]["platform_unavailable"].startswith("platform unavailable since ")
    page = client.get("/status/").content.decode()
    assert during["display"]["platform_unavailable"] in page
    running.result(90)
    after = status()
    assert after["run"]["platform_unavailable_since"] is None and after["display"]["platform_unavailable"] == ""
    assert after["run"]["status"] == RunStatus.SUCCEEDED


# --- one client -------------------------------------------------------------------------------------

def test_a_call_held_through_an_outage_spends_no_tries_and_the_breaker_reports_it(fake_platform, make_client):
    reports: list[float | None] = []
    client = make_client(max_attempts=OUTAGE_FAILURES, max_outage=30.0, backoff_cap=4.0, on_outage=reports.append)
    client.sync_campaign("campaign_1", stats=CallStats())  # the platform has answered this client
    fake_platform.update(down_mode="503")
    fake_platform.down_for(2.0)
    stats = CallStats()
    client.sync_campaign("campaign_2", stats=stats)  # outlasts its five tries' backoff many times over
    assert "campaign_2" in fake_platform.stats["synced_ids"]
    assert stats.server_errors >= OUTAGE_FAILURES and stats.retries == stats.server_errors
    assert len(reports) == 2 and reports[0] is not None and reports[1] is None, reports
    assert fake_platform.stats["calls_while_down"] <= OUTAGE_FAILURES + probes_while_down(2.0, 0.01, 4.0)


@pytest.mark.parametrize("knobs, says", [
    pytest.param({"down": True, "down_mode": "reset"}, "could not reach the platform", id="refused"),
    pytest.param({"list_fail_rate": 1.0}, "HTTP 503", id="tokens-but-every-list-503"),
])
def test_a_platform_that_never_answered_fails_fast_after_its_tries(fake_platform, make_client, knobs, says):
    # Failing from the first data call on: more likely a wrong URL (or an endpoint that always fails) than
    # an outage: no holding, no waiting, and the admin's "Test connection" (a fresh client) answers at once.
    # A token issued proves nothing of the API.
    fake_platform.update(**knobs)
    stats = CallStats()
    with pytest.raises(PlatformError) as caught:
        list_all(make_client(max_attempts=OUTAGE_FAILURES, max_outage=60.0), stats=stats)
    assert says in caught.value.message and not caught.value.fatal
    assert stats.retries == OUTAGE_FAILURES - 1, "its tries, then the error"


# --- answers too large to read ------------------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True], ids=["with-a-length", "chunked"])
def test_an_answer_over_sync_max_body_mb_is_not_read_past_the_cap(fake_platform, make_client, chunked):
    body_mb = 64
    fake_platform.update(campaigns=10, oversized_list_mb=body_mb, oversized_chunked=chunked)
    stats = CallStats()
    with pytest.raises(PlatformError) as caught:
        # Building 64 MB takes the fake a while: a read timeout long enough for it on a busy machine.
        list_all(make_client(max_body_mb=1, read_timeout=60.0), page_size=10, stats=stats)
    error = caught.value
    assert error.category == BAD_RESPONSE and not error.retryable
    assert "SYNC_MAX_BODY_MB" in error.message and "1 MB" in error.message
    assert fake_platform.stats["requests"]["list"] == 1, "a body too large is not asked for again"
    if chunked:  # the fake writes no faster than the client reads, plus what the sockets buffer
        sent = fake_platform.stats["oversized_bytes_sent"]
        assert sent < body_mb * 1024 * 1024 / 2, f"{sent} bytes of a {body_mb} MB answer were read"


def test_an_answer_under_the_cap_is_read_whole(fake_platform, make_client):
    fake_platform.update(campaigns=10, oversized_list_mb=0.5, oversized_chunked=True)
    rows = list_all(make_client(max_body_mb=1), page_size=10)
    assert len(rows) == 10


def test_a_run_whose_listing_is_too_large_fails_with_one_line_naming_the_setting(fake_platform, account, settings,
                                                                                 fast_sync, captured_logs):
    settings.SYNC = {**fast_sync, "MAX_BODY_MB": 1.0}
    fake_platform.update(campaigns=10, oversized_list_mb=2)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.FAILED
    assert "SYNC_MAX_BODY_MB" in run.error_message and "\n" not in run.error_message, run.error_message


# --- a client id that cannot be sent ---------------------------------------------------------------------

@pytest.mark.parametrize("client_id", ["客户-1", "clïent", "two words", "line\r\nbreak"])
def test_a_client_id_that_cannot_be_sent_is_one_fatal_line_and_no_call(fake_platform, make_client, client_id):
    with pytest.raises(PlatformError) as caught:
        make_client(client_id=client_id).sync_campaign("campaign_1", stats=CallStats())
    error = caught.value
    assert error.category == CLIENT_ERROR and error.fatal and "X-Client-ID" in error.message
    assert "\n" not in error.message
    assert fake_platform.stats["requests"] == {}


def test_a_run_for_an_account_whose_client_id_cannot_be_sent_fails_with_one_line(fake_platform, make_account,
                                                                                  captured_logs):
    # The door refuses such an account (tests/test_lifecycle.py); a run queued before the id was changed behind
    # the admin's back (the password kept: a changed login clears it) still reaches the client.
    account = make_account()
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    AdAccount.objects.filter(pk=account.pk).update(client_id="客户-1", encrypted_password=account.encrypted_password)
    run = Background(lambda: run_execute(run_id=run.pk), name="run").result(60)
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.FAILED and "X-Client-ID" in run.error_message, run.error_message
    assert fake_platform.stats["requests"] == {}
