"""The fault-and-abuse suite: whole runs against the fake platform with one fault switched on.

Every scenario runs a sync through the services (the cluster where it says so),
checks `assert_run_invariants` (nothing lost, nothing counted twice, no secret
anywhere) and then the outcome that fault calls for. Client-level behaviour
(one call, one retry) is proven in test_client.py; these prove whole runs.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from campaigns.models import AttemptStatus, Campaign, RunStatus, SyncAttempt, SyncRun, Trigger
from syncer.fake_platform.data import base_campaign, hostile_row
from syncer.services import run_execute, sync_run_start
from tests.cluster import ROOT
from tests.cluster import test_database_url as database_url  # not a test
from tests.outages import outage_call_bound
from tests.runs import (  # noqa: F401 (re-exported for the suites that import them from here)
    TRACE_PASSWORD,
    Background,
    assert_all_synced,
    check_invariants,
    failures,
    finished,
    free_port,
    platform_secrets,
    sync,
    synced_ids,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

# Enough tries that a fault on half the calls cannot exhaust them by chance (0.5 ** 20 per call).
PATIENT = {"MAX_ATTEMPTS": 20, "MAX_WAIT": 30.0}


# --- helpers --------------------------------------------------------------------------

@pytest.fixture
def patient(settings, fast_sync):
    settings.SYNC = {**fast_sync, **PATIENT}
    return settings.SYNC


# --- transient faults: everything syncs in the end --------------------------------------

def test_503s_on_half_the_calls_are_retried_until_every_campaign_syncs(fake_platform, account, patient,
                                                                       captured_logs):
    fake_platform.update(campaigns=40, list_fail_rate=0.5, sync_fail_rate=0.5)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    served = fake_platform.stats["responses"].get(503, 0)
    assert served > 0
    assert run.server_errors == run.retries == served, "the run's counters must match what the platform answered"


def test_calls_that_hang_time_out_and_are_retried(fake_platform, account, patient, settings, captured_logs):
    # hang_rate is drawn per call: at 0.3 most campaigns meet a hang on some try, and 20 tries make
    # "hangs every time" (0.3 ** 20) impossible in practice. A 2 s timeout: on a busy machine an
    # answered call can take longer than fast_sync's 0.5 s, and would count as a timeout no hang made.
    settings.SYNC = {**patient, "REQUEST_TIMEOUT": 2.0}
    fake_platform.update(campaigns=40, hang_rate=0.3)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    hung = fake_platform.stats["hung"]
    assert hung > 0
    assert run.timeouts == hung, "every hung call is one client-side timeout, counted on the run"


def test_connection_resets_are_retried(fake_platform, account, patient, captured_logs):
    fake_platform.update(campaigns=40, reset_rate=0.3)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    resets = fake_platform.stats["resets"]
    assert resets > 0
    assert run.retries == resets


def test_500s_with_a_stack_trace_are_retried_and_the_trace_is_never_kept(fake_platform, account, patient,
                                                                         captured_logs):
    fake_platform.update(campaigns=40, server_error_rate=0.3)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)  # FAKE_SECRET and the trace's password: nowhere
    assert_all_synced(run, fake_platform)
    assert fake_platform.stats["server_errors"] > 0
    assert "psycopg2" not in captured_logs.getvalue()


def test_html_error_pages_are_retried(fake_platform, account, patient, captured_logs):
    fake_platform.update(campaigns=40, html_error_rate=0.3)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    assert run.retries > 0
    assert "<html" not in captured_logs.getvalue().lower()


def test_a_platform_outage_mid_run_is_waited_out_without_hammering(fake_platform, account, settings, fast_sync,
                                                                   captured_logs):
    down_seconds, concurrency = 3.0, 10
    settings.SYNC = {**fast_sync, "MAX_OUTAGE": 30.0}  # the platform comes back well within it
    fake_platform.update(campaigns=60, sync_latency=0.1)

    def outage() -> int:
        synced = wait_until(lambda: fake_platform.stats["synced_total"] >= 10, timeout=30, poll=0.01,
                            message="the run syncs some campaigns")
        fake_platform.down_for(down_seconds)
        return synced

    trigger = Background(outage, name="outage")
    run = sync(account, concurrency=concurrency)
    assert trigger.result(5) < 60, "the outage must begin while the run still has work"
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    # Not hammering: the account's breaker holds every call once a few fail in a row and probes one at a
    # time with doubling waits (tests/outages.py derives the bound); a client that retried every call at
    # the 0.5 s cap would make well over 100 calls, and one without backoff thousands.
    bound = outage_call_bound(down_seconds, fast_sync["BACKOFF_BASE"], fast_sync["BACKOFF_CAP"], concurrency)
    calls_while_down = fake_platform.stats["calls_while_down"]
    assert calls_while_down <= bound, f"{calls_while_down} calls while the platform was down (bound {bound})"


# --- 429 storms -----------------------------------------------------------------------------

@pytest.mark.parametrize("retry_after_mode", ["header", "body", "both", "neither"])
def test_a_429_storm_is_waited_out_wherever_the_wait_is_given(fake_platform, make_account, patient, captured_logs,
                                                              retry_after_mode):
    # The account paces nothing, so the platform's limit is all there is: a storm of 429s.
    fake_platform.update(campaigns=30, rate_limit="10/0.5s", retry_after_mode=retry_after_mode)
    account = make_account(rate_limit="none")
    run = sync(account, concurrency=5)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    told = fake_platform.stats["rate_limited"]
    assert told > 0, "no storm: the scenario did not hit the platform's limit"
    assert run.rate_limited == told


def test_an_absurd_retry_after_fails_attempts_clearly_instead_of_blocking_a_worker(fake_platform, make_account,
                                                                                    fast_sync, captured_logs):
    # 5 calls a minute: the listing and 4 syncs go through, then every call is told to wait a day.
    fake_platform.update(campaigns=20, rate_limit="5/60s", retry_after_override=86400)
    account = make_account(rate_limit="none")
    run = sync(account, concurrency=5, timeout=30)  # a worker waiting out the day fails the deadline
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.PARTIAL, failures(run)
    assert run.campaigns_synced == 4
    failed = SyncAttempt.objects.filter(run=run, status=AttemptStatus.FAILED)
    assert failed.count() == 16
    assert set(failed.values_list("error_category", flat=True)) == {"rate_limited"}
    assert set(failed.values_list("tries", flat=True)) == {1}, "a wait past the cap is not retried"
    for message in set(failed.values_list("message", flat=True)):
        assert "86400" in message and "cap" in message, message


# --- tokens -----------------------------------------------------------------------------------

@pytest.mark.parametrize("concurrency, revoke_every, campaigns", [
    pytest.param(1, 3, 40, id="one-call-at-a-time"),
    # In parallel, one revocation fails every call in flight with that token at once; they all retry with
    # the same new token, which the platform revokes in turn: a second 401 is then a race, not bad credentials.
    pytest.param(10, 2, 100, id="ten-in-parallel"),
])
def test_tokens_revoked_every_few_calls_are_replaced(fake_platform, account, patient, captured_logs, concurrency,
                                                     revoke_every, campaigns):
    fake_platform.update(campaigns=campaigns, sync_latency=0.1 if concurrency > 1 else 0.02,
                         token_revoke_every=revoke_every)
    run = sync(account, concurrency=concurrency)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    assert fake_platform.stats["tokens_revoked"] > 0


def test_a_failing_token_endpoint_is_retried(fake_platform, account, patient, captured_logs):
    # Short-lived tokens so that the run fetches several, each from an endpoint failing half the time.
    fake_platform.update(campaigns=40, sync_latency=0.05, token_lifetime=0.5, token_fail_rate=0.5)
    run = sync(account, concurrency=4)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    assert fake_platform.stats["tokens_issued"] > 1
    assert fake_platform.stats["responses"].get(503, 0) > 0


# --- malformed bodies -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["truncated_json", "data_not_list", "html"])
def test_an_unusable_listing_fails_the_run_with_a_clear_message(fake_platform, account, fast_sync, captured_logs,
                                                                mode):
    fake_platform.update(campaigns=40, malformed_list=mode)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.FAILED
    assert run.error_message.startswith("listing campaigns failed: "), run.error_message
    assert "<" not in run.error_message and "{" not in run.error_message, "the body is not copied into the message"
    assert run.campaigns_listed == 0 and not Campaign.objects.filter(account=account).exists()
    assert 1 <= fake_platform.stats["requests"]["list"] <= fast_sync["MAX_ATTEMPTS"]
    assert not fake_platform.stats["requests"].get("sync")


def test_a_listing_without_pagination_is_read_until_a_short_page(fake_platform, account, settings, fast_sync,
                                                                 captured_logs):
    # 60 campaigns in pages of 20: three full pages, so only an empty fourth page says "the end".
    settings.SYNC = {**fast_sync, "PAGE_SIZE": 20}
    fake_platform.update(campaigns=60, malformed_list="no_pagination")
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    assert fake_platform.stats["requests"]["list"] == 4


@pytest.mark.parametrize("drift", [15, -15])
def test_a_total_changing_between_pages_keeps_every_campaign_inside_it(fake_platform, account, settings, fast_sync,
                                                                       captured_logs, drift):
    settings.SYNC = {**fast_sync, "PAGE_SIZE": 20}
    fake_platform.update(campaigns=60, total_drift=drift)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    # Rows past the total the platform last reported are "not real campaigns" (PLATFORM_API.md): a total
    # that grows loses nothing; one that shrinks to 45 keeps exactly the first 45, and invents nothing.
    kept = min(60, 60 + drift)
    assert synced_ids(run) == {f"campaign_{i}" for i in range(1, kept + 1)}
    assert run.campaigns_listed == kept and run.campaigns_failed == 0
    if drift < 0:
        assert run.status == RunStatus.SUCCEEDED, failures(run)
        assert run.warnings == []
    else:  # a total of 75 that no listing fills: the run says so, it does not claim success
        assert run.status == RunStatus.PARTIAL and run.campaigns_unlisted == 15
        assert run.warnings == ["listing incomplete: 60 of 75 campaigns listed after 3 passes "
                                "(the platform's total says 75)"]


def test_a_campaign_listed_on_two_pages_is_stored_and_synced_once(fake_platform, account, settings, fast_sync,
                                                                  captured_logs):
    settings.SYNC = {**fast_sync, "PAGE_SIZE": 20}
    fake_platform.update(campaigns=60, duplicate_across_pages=True)
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    # A campaign inserted at the front after page 1: the first pass sees 60 of 61, the second finds it.
    assert_all_synced(run, fake_platform)
    assert run.campaigns_listed == 61 and run.campaigns_unlisted == 0 and run.warnings == []
    assert set(fake_platform.stats["synced_ids"].values()) == {1}
    assert fake_platform.stats["requests"]["sync"] == 61


def test_a_campaign_deleted_before_its_sync_fails_once_as_a_client_error(fake_platform, account, fast_sync,
                                                                         captured_logs):
    fake_platform.update(campaigns=60, not_found_rate=0.2)
    deleted = set(fake_platform.deleted_ids())
    assert deleted, "the seed deletes no campaign: pick another rate"
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.PARTIAL
    failed = SyncAttempt.objects.filter(run=run, status=AttemptStatus.FAILED)
    assert set(failed.values_list("platform_id", flat=True)) == deleted
    assert set(failed.values_list("error_category", "http_status", "tries")) == {("client_error", 404, 1)}
    assert synced_ids(run) == set(fake_platform.campaign_ids())
    assert fake_platform.stats["requests"]["sync"] == 60, "a 404 is permanent: exactly one call per campaign"


# --- hostile values ---------------------------------------------------------------------------

HOSTILE_SEED = 148  # with not_found_rate=0.1 this seed deletes campaign_15, whose name is a <script>


def served_name(i: int) -> str:
    return hostile_row(dict(base_campaign(HOSTILE_SEED, i)), i)["name"] if i % 5 == 0 else \
        base_campaign(HOSTILE_SEED, i)["name"]


def test_hostile_values_are_stored_as_data_and_escaped_on_every_page(fake_platform, account, fast_sync,
                                                                     captured_logs, client):
    fake_platform.update(campaigns=60, seed=HOSTILE_SEED, hostile_values=True, bad_row_rate=0.1, not_found_rate=0.1)
    assert "campaign_15" in fake_platform.deleted_ids(), "campaign_15 must fail to reach the dead-letter list"
    run = sync(account)
    check_invariants(run, fake_platform, captured_logs)

    stored = {c.platform_id: c for c in Campaign.objects.filter(account=account)}
    campaigns = {platform_id: c for platform_id, c in stored.items() if platform_id.startswith("campaign_")}
    assert set(campaigns) == {f"campaign_{i}" for i in range(1, 61)}, "every real campaign is stored"
    # Bad rows with a string id are stored too (their bad fields empty); rows without one cannot be.
    stored_bad_rows = set(stored) - set(campaigns)
    assert stored_bad_rows and all(platform_id.startswith("bad_") for platform_id in stored_bad_rows)
    for i in range(1, 61):
        assert campaigns[f"campaign_{i}"].name == served_name(i), f"campaign_{i}'s name was altered"
    assert len(campaigns["campaign_20"].name) > 10_000
    assert "DROP TABLE" in campaigns["campaign_10"].name and "\U0001F680" in campaigns["campaign_5"].name
    assert campaigns["campaign_45"].name.startswith("  \t") and "\u200b" in campaigns["campaign_45"].name
    numeric = campaigns["campaign_25"]  # numbers sent as strings
    assert numeric.budget == Decimal(base_campaign(HOSTILE_SEED, 25)["budget"]) + Decimal("0.50")
    assert isinstance(numeric.impressions, int) and numeric.impressions > 0
    huge = campaigns["campaign_30"]
    assert (huge.impressions, huge.clicks, huge.conversions, huge.budget) == (2**53 + 1, 2**40, 2**31,
                                                                               Decimal(9999999999))
    negative = campaigns["campaign_35"]
    assert (negative.budget, negative.conversions) == (Decimal(-500), -1)

    bad = SyncAttempt.objects.filter(run=run, error_category="bad_response")
    assert bad.exists() and not bad.filter(campaign__isnull=False).exists()
    assert bad.count() + len(stored_bad_rows) == fake_platform.stats["bad_rows_served"], \
        "each bad row is recorded once: failed without an id, stored with one"
    deleted = set(fake_platform.deleted_ids())
    assert synced_ids(run) == set(campaigns) - deleted

    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "a-long-pass-phrase")
    client.force_login(admin)
    pages = ["/status/", "/admin/campaigns/campaign/", "/admin/campaigns/campaign/?q=script",
             f"/admin/campaigns/campaign/{campaigns['campaign_15'].pk}/change/",
             f"/admin/campaigns/campaign/{campaigns['campaign_20'].pk}/change/",
             f"/admin/campaigns/syncrun/{run.pk}/change/", f"/admin/campaigns/syncattempt/?run__id__exact={run.pk}"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "<script>alert(" not in html, f"{url} shows a campaign's <script> raw"
        for secret in platform_secrets(fake_platform):
            assert secret not in html, f"{url} shows a secret"
    for url in pages[:3]:
        assert "&lt;script&gt;alert(" in client.get(url).content.decode(), f"{url} does not show the name escaped"


# --- crashes: a killed worker, an unavailable database ----------------------------------------

@pytest.mark.cluster
def test_a_killed_cluster_under_503s_and_hangs_resumes_and_loses_nothing(qcluster, fake_platform, make_account,
                                                                         captured_logs):
    fake_platform.update(campaigns=60, sync_latency=0.3, list_fail_rate=0.3, sync_fail_rate=0.3, hang_rate=0.1)
    account = make_account()
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="fault suite", concurrency=4,
                         enqueue=True)
    patient_env = {"SYNC_MAX_ATTEMPTS": "20", "SYNC_MAX_WAIT": "30"}
    first = qcluster.start(**patient_env)
    wait_until(lambda: SyncRun.objects.get(pk=run.pk).campaigns_synced >= 10, timeout=60,
               message="the first cluster syncs some campaigns")
    first.kill()
    assert SyncRun.objects.get(pk=run.pk).status == RunStatus.RUNNING

    second = qcluster.start(**patient_env)
    run = wait_until(lambda: finished(run.pk), timeout=90, message="a new cluster resumes and finishes the run")
    check_invariants(run, fake_platform, captured_logs, extra_log_text=first.log() + second.log())
    expected = set(fake_platform.campaign_ids())
    assert run.status == RunStatus.SUCCEEDED, failures(run)
    assert synced_ids(run) == expected
    # A call in flight when the worker died may have reached the platform: at least once there,
    # exactly once in the database.
    assert set(fake_platform.stats["synced_ids"]) == expected


def hold_during_run(platform, fault: Callable[[], None]) -> Background:
    """Once the run has synced some campaigns, apply `fault` (which returns when the fault is over)."""
    def when_under_way() -> int:
        synced = wait_until(lambda: platform.stats["synced_total"] >= 10, timeout=30, poll=0.01,
                            message="the run syncs some campaigns")
        fault()
        return synced

    return Background(when_under_way, name="database-fault")


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite: another connection holds the write lock")
def test_a_briefly_locked_sqlite_database_delays_the_run_and_loses_nothing(fake_platform, account, fast_sync,
                                                                           captured_logs):
    fake_platform.update(campaigns=60, sync_latency=0.1)
    path = connection.settings_dict["NAME"]

    def lock_for_three_seconds() -> None:
        other = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            threading.Event().wait(3)  # the fault's length, not a wait for a condition
            other.execute("COMMIT")
        finally:
            other.close()

    fault = hold_during_run(fake_platform, lock_for_three_seconds)
    run = sync(account, concurrency=5)
    assert fault.result(10) < 60, "the lock must be taken while the run still has work"
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)


def postgres_version() -> str | None:
    clusters = Path("/etc/postgresql")
    versions = sorted(p.name for p in clusters.iterdir()) if clusters.is_dir() else []
    return versions[-1] if versions and shutil.which("pg_ctlcluster") else None


@pytest.mark.skipif(connection.vendor != "postgresql" or postgres_version() is None,
                    reason="PostgreSQL with pg_ctlcluster on this machine: the server is restarted mid-run")
def test_a_postgres_restart_mid_run_is_survived_and_loses_nothing(fake_platform, account, fast_sync, captured_logs):
    fake_platform.update(campaigns=60, sync_latency=0.1)

    def restart() -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", "restart"],
                       check=True, capture_output=True, timeout=60)

    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="fault suite", concurrency=5)
    fault = hold_during_run(fake_platform, restart)
    try:
        Background(lambda: run_execute(run_id=run.pk), name=f"run-{run.pk}").result(90)
    finally:
        fault.result(90)
        connection.close()  # this thread's connection died with the server
    run = SyncRun.objects.get(pk=run.pk)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)


@pytest.mark.parametrize("step", ["_run_begin", "attempts_queue"])
def test_a_connection_broken_at_a_step_of_the_runs_prepare_is_replaced_and_the_run_goes_on(
        fake_platform, account, fast_sync, captured_logs, monkeypatch, step):
    """The pool checks a connection before it lends it; a database restart just after the check breaks the
    step that uses it. A real restart cannot be timed to fall between the two, so the step's first try raises
    what psycopg raises there; the prepare waits it out as the drains do, instead of failing the run."""
    from django.db import OperationalError

    from syncer import services

    real, tries = getattr(services, step), []

    def broken_once(**kwargs):
        tries.append(step)
        if len(tries) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(services, step, broken_once)
    fake_platform.update(campaigns=20)
    run = sync(account, concurrency=5)
    assert len(tries) == 2, "tried again once"
    assert "database unavailable (OperationalError)" in captured_logs.getvalue()
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)


# --- bad configuration and production settings -------------------------------------------------

def manage(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DATABASE_URL": database_url(), **env}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("env, says", [
    pytest.param({"AD_PLATFORM_PASSWORD": ""}, "AD_PLATFORM_PASSWORD", id="missing-password"),
    pytest.param({"AD_PLATFORM_RATE_LIMIT": "ten a minute"}, "AD_PLATFORM_RATE_LIMIT", id="malformed-rate-limit"),
    pytest.param({"AD_PLATFORM_URL": "http://127.0.0.1:{closed_port}", "SYNC_MAX_ATTEMPTS": "2",
                  "SYNC_BACKOFF_BASE": "0.05"}, "could not reach the platform", id="unreachable-url"),
])
def test_bad_configuration_exits_2_with_one_clear_line(fake_platform, env, says):
    env = {"AD_PLATFORM_URL": fake_platform.url, "AD_PLATFORM_RATE_LIMIT": "none",
           **{name: value.format(closed_port=free_port()) for name, value in env.items()}}
    result = manage("sync_campaigns", **env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert fake_platform.config.password not in output


def production_env(**overrides: str) -> dict[str, str]:
    import secrets

    return {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "example.com",
            "SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_SECONDS": "31536000", "SECURE_COOKIES": "1",
            # Off unless asked for (tests/test_security.py); a deploy check is clean with them on.
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1", **overrides}


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", **production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_production_that_forgets_the_secret_key_does_not_start(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    result = manage("check", "--deploy", **{k: v for k, v in production_env().items() if k != "SECRET_KEY"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().startswith("Configuration error: SECRET_KEY is not set"), result.stderr
