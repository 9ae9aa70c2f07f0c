"""The listing (issue 11, points 1, 6 and 8's page cap): nothing lost silently, nothing left open by a cancel.

Whole runs against the fake platform over real HTTP: pages capped below the
limit asked for, repeated across pages, deleted between pages, a platform
that never stops; and Ctrl-C of the real `manage.py sync_campaigns` while it
lists.
"""
from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from campaigns.models import AttemptStatus, RunStatus, SyncAttempt, SyncRun, Trigger
from syncer.accounts import client_for
from syncer.calls import CallStats
from syncer.logs import RedactFilter
from syncer.prepare import attempts_queue, listing_fetch
from syncer.services import run_cancel, run_prepare, sync_run_start
from tests import cluster
from tests.conftest import FAKE_EMAIL, FAKE_PASSWORD
from tests.invariants import assert_run_invariants
from tests.runs import Background, sync
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

INCOMPLETE_55_OF_60 = ("listing incomplete: 55 of 60 campaigns listed after 3 passes "
                       "(the platform's total says 60)")


@pytest.fixture
def run_logs(caplog):
    """Every line logged during the test, scrubbed as the project's handlers scrub them."""
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactFilter())
    return caplog


def check(run: SyncRun, platform, logs) -> SyncRun:
    config = platform.config
    assert_run_invariants(run, secrets=[config.password], log_text=logs.text)
    return SyncRun.objects.get(pk=run.pk)


def ids(run: SyncRun, **filters) -> set[str]:
    return set(SyncAttempt.objects.filter(run=run, **filters).values_list("platform_id", flat=True))


def campaigns(numbers) -> set[str]:
    return {f"campaign_{i}" for i in numbers}


def overlapping_platform(platform) -> None:
    """Pages of 10 whatever is asked (100), has_more always true, each page repeating the last row of the one
    before: up to page * limit >= total the pages hold 55 of the 60 campaigns."""
    platform.update(campaigns=60, max_page_size=10, has_more_lies=True, overlap_pages=True)


# --- point 1: silent loss ---------------------------------------------------------------------

def test_a_capped_overlapping_listing_ends_partial_saying_so_and_syncs_every_campaign_it_listed(
        fake_platform, account, run_logs):
    overlapping_platform(fake_platform)
    run = check(sync(account), fake_platform, run_logs)
    assert run.status == RunStatus.PARTIAL, "a run whose listing came up short never says succeeded"
    assert (run.campaigns_listed, run.campaigns_synced, run.campaigns_failed) == (55, 55, 0)
    assert run.campaigns_unlisted == 5
    assert run.warnings == [INCOMPLETE_55_OF_60]
    # Stopped by the page size the platform answered with (10), not the one asked (100): six pages a pass.
    assert run.pages == fake_platform.stats["requests"]["list"] == 18
    assert ids(run, status=AttemptStatus.SUCCEEDED) == campaigns(range(1, 56))
    assert fake_platform.stats["synced_ids"] == dict.fromkeys(campaigns(range(1, 56)), 1), "each synced once"


def test_a_campaign_skipped_by_a_deletion_between_pages_is_found_by_listing_again(fake_platform, account, run_logs):
    # Once page 2 is served campaign_1 is deleted: later pages shift one row and campaign_21 is never on one.
    # The total moved (60, then 59) while the pages were read: the set changed, so the run lists again.
    fake_platform.update(campaigns=60, max_page_size=10, delete_between_pages=2)
    run = check(sync(account), fake_platform, run_logs)
    assert ids(run, status=AttemptStatus.SUCCEEDED) == campaigns(range(2, 61)), "every live campaign synced"
    assert fake_platform.stats["synced_ids"] == dict.fromkeys(campaigns(range(2, 61)), 1)
    deleted = SyncAttempt.objects.get(run=run, platform_id="campaign_1")
    assert (deleted.status, deleted.error_category, deleted.http_status) == (AttemptStatus.FAILED, "client_error",
                                                                             404)
    assert run.status == RunStatus.PARTIAL and run.campaigns_unlisted == 0 and run.warnings == []
    assert run.pages == 12, "two passes of six pages: the second found nothing missing"


def test_a_platform_that_never_stops_is_read_up_to_the_page_cap_and_the_run_says_so(
        fake_platform, account, settings, fast_sync, run_logs):
    settings.SYNC = {**fast_sync, "MAX_PAGES": 5}
    # has_more stays true (phantom rows past the data), and no page carries a total.
    fake_platform.update(campaigns=100, max_page_size=10, has_more_lies=True, malformed_list="no_total")
    run = check(sync(account), fake_platform, run_logs)
    assert run.pages == fake_platform.stats["requests"]["list"] == 5
    assert ids(run, status=AttemptStatus.SUCCEEDED) == campaigns(range(1, 51)), "what was listed is synced"
    assert run.status == RunStatus.PARTIAL and run.campaigns_unlisted >= 1
    assert run.warnings == ["listing stopped at the page cap (SYNC_MAX_PAGES=5) with the platform still saying "
                            "there were more: 50 campaigns listed, how many more is unknown (no usable total)"]


def test_a_run_for_some_campaigns_is_judged_by_them_not_by_the_whole_listing(fake_platform, account, run_logs):
    overlapping_platform(fake_platform)
    found = check(sync(account, campaign_ids=["campaign_7", "campaign_30"]), fake_platform, run_logs)
    assert found.pages == 6, "every campaign asked for is in the first pass: no second one"
    assert found.status == RunStatus.SUCCEEDED and found.campaigns_unlisted == 0 and found.warnings == []
    missing = check(sync(account, campaign_ids=["campaign_7", "campaign_58"]), fake_platform, run_logs)
    assert missing.pages == 18, "campaign_58 is missing: listed again, three passes in all"
    assert ids(missing, status=AttemptStatus.SUCCEEDED) == {"campaign_7"}
    attempt = SyncAttempt.objects.get(run=missing, platform_id="campaign_58")
    assert attempt.status == AttemptStatus.FAILED and "not in the platform's listing" in attempt.message
    assert missing.status == RunStatus.PARTIAL and missing.campaigns_unlisted == 0 and missing.warnings == []


def test_the_run_warning_shows_in_the_admin_the_status_page_and_its_json(
        fake_platform, account, admin_client, run_logs):
    overlapping_platform(fake_platform)
    run = check(sync(account), fake_platform, run_logs)
    admin_page = admin_client.get(f"/admin/campaigns/syncrun/{run.pk}/change/").content.decode()
    assert INCOMPLETE_55_OF_60.replace("'", "&#x27;") in admin_page
    assert INCOMPLETE_55_OF_60.replace("'", "&#x27;") in admin_client.get("/status/").content.decode()
    status = admin_client.get("/status.json").json()
    card = next(entry for entry in status["accounts"] if entry["slug"] == account.slug)
    assert card["run"]["warnings"] == [INCOMPLETE_55_OF_60] and card["run"]["unlisted"] == 5
    assert card["display"]["warnings"] == INCOMPLETE_55_OF_60
    assert status["runs"][0]["warnings"] == [INCOMPLETE_55_OF_60]


def test_the_command_prints_the_warning_and_exits_1_saying_the_listing_was_incomplete(fake_platform, account):
    overlapping_platform(fake_platform)
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("sync_campaigns", "--account", account.slug, stdout=out, stderr=io.StringIO())
    run = SyncRun.objects.get()
    assert caught.value.returncode == 1
    assert str(caught.value) == f"run #{run.pk} partial: the platform's listing was incomplete (see the warning above)"
    assert f"  warning: {INCOMPLETE_55_OF_60}" in out.getvalue().splitlines()


# --- point 6, the listing half: a cancel while it lists -----------------------------------------

def test_a_run_cancelled_while_it_lists_stops_listing_and_queues_nothing(fake_platform, account):
    fake_platform.update(campaigns=200, max_page_size=10, list_latency=0.3)  # 20 pages
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    preparing = Background(lambda: run_prepare(run_id=run.pk), name=f"prepare-{run.pk}")
    wait_until(lambda: fake_platform.stats["requests"].get("list", 0) >= 1, timeout=30,
               message="the run's listing sends its first page call")
    assert run_cancel(run_id=run.pk, who="test")
    preparing.result(timeout=60)
    assert fake_platform.stats["requests"]["list"] < 20, "the listing went on after its run was cancelled"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and not run.attempts.exists() and run.prepared_at is None


def test_attempts_are_not_queued_for_a_run_cancelled_after_its_listing(fake_platform, account):
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    SyncRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    run.refresh_from_db()
    listing = listing_fetch(run=run, client=client_for(account), page_size=100, stats=CallStats())
    assert len(listing.good) == 100
    run_cancel(run_id=run.pk, who="test")  # between the listing and the queueing: the race a Ctrl-C can win
    assert attempts_queue(run=run, listing=listing) == 0
    assert not run.attempts.exists()


def test_ctrl_c_of_the_command_while_it_lists_leaves_the_run_cancelled_and_no_attempt_open(fake_platform):
    fake_platform.update(campaigns=200, max_page_size=10, list_latency=1.0)  # 20 pages, a second each
    env = {**os.environ, "DATABASE_URL": cluster.test_database_url(), "AD_PLATFORM_URL": fake_platform.url,
           "AD_PLATFORM_EMAIL": FAKE_EMAIL, "AD_PLATFORM_PASSWORD": FAKE_PASSWORD, "AD_PLATFORM_RATE_LIMIT": "none",
           "AD_PLATFORM_CLIENT_ID": "client-ctrl-c", "LOG_LEVEL": "info"}
    # A shell starts a background job (CI, nohup, `cmd &`) with SIGINT ignored, an ignored signal stays
    # ignored across exec, and Python then installs no KeyboardInterrupt handler. A handled one is reset
    # to the default: handle it here while the command starts, so it gets SIGINT as a terminal gives it
    # (without preexec_fn, which is unsafe beside the fake platform's threads).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        command = subprocess.Popen([sys.executable, "manage.py", "sync_campaigns"], cwd=cluster.ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        wait_until(lambda: fake_platform.stats["requests"].get("list", 0) >= 2 or command.poll() is not None,
                   timeout=60, message="the command lists its second page")
        assert command.poll() is None, "the command ended before it could be interrupted"
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    run = SyncRun.objects.get()
    assert run.status == RunStatus.CANCELLED, out + err
    assert "Cancelling" in err and "Traceback" not in out + err
    open_attempts = run.attempts.filter(status__in=[AttemptStatus.PENDING, AttemptStatus.RUNNING])
    assert not open_attempts.exists(), f"{open_attempts.count()} attempts left open by a cancel while listing"
    assert fake_platform.stats["requests"]["list"] < 20, "the listing went on after its run was cancelled"
