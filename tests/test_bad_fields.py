"""A row with a usable id is always synced (issue 11, point 4): a bad field is stored empty, with a warning.

Whole runs against the fake platform over real HTTP (knobs `bad_field_rate`
and `bad_row_rate`); the kinds are the fake's (syncer/fake_platform/data.py).
"""
from __future__ import annotations

import logging

import pytest

from campaigns.models import AttemptStatus, Campaign, ErrorCategory, RunStatus, SyncAttempt, SyncRun
from syncer.fake_platform import BAD_FIELD_KINDS, BAD_ROW_KINDS, UNUSABLE_ID_KINDS
from syncer.fake_platform.data import base_campaign
from syncer.logs import RedactFilter
from tests.invariants import assert_run_invariants
from tests.runs import sync

pytestmark = pytest.mark.django_db(transaction=True)

# What each kind is stored as (the model's column), and the warning its attempt carries.
STORED_AS = {
    "empty_name": ("name", "", "name: empty"),
    "name_not_text": ("name", "", "name: an object, expected text"),
    "surrogate_name": ("name", "", "name: holds a lone surrogate (not valid Unicode)"),
    "year_one_created_at": ("platform_created_at", None,
                            "created_at: outside the years a time can hold once turned into UTC"),
    "unparsable_created_at": ("platform_created_at", None, "created_at: text, not an ISO 8601 time"),
    "huge_integer": ("impressions", None, "impressions: a number of 5000 characters, out of range"),
    "budget_out_of_range": ("budget", None, "budget: out of range (at most 1e+18)"),
    "status_not_text": ("status", "", "status: a number, expected text"),
    "fractional_clicks": ("clicks", None, "clicks: not a whole number"),
}
HUGE_INTEGER_SEED, HUGE_INTEGER_CAMPAIGN = 38, "campaign_14"  # with bad_field_rate=0.05 its only bad field


@pytest.fixture
def run_logs(caplog):
    """Every line logged during the test, scrubbed as the project's handlers scrub them."""
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactFilter())
    return caplog


def sync_checked(account, platform, logs) -> SyncRun:
    run = sync(account)
    assert_run_invariants(run, secrets=[platform.config.password], log_text=logs.text)
    return SyncRun.objects.get(pk=run.pk)


def test_each_bad_field_kind_is_stored_empty_with_a_warning_naming_it_and_the_campaign_synced(
        fake_platform, account, run_logs):
    fake_platform.update(campaigns=18, bad_field_rate=1.0)  # every kind twice, one per campaign
    run = sync_checked(account, fake_platform, run_logs)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert (run.campaigns_listed, run.campaigns_synced) == (18, 18)
    assert fake_platform.stats["synced_ids"] == {f"campaign_{i}": 1 for i in range(1, 19)}
    assert run.warnings == ["18 campaigns listed with bad fields, stored empty and synced: the attempts' warnings "
                            "say which fields and why"]
    seed = fake_platform.config.seed
    for i in range(1, 19):
        _, kind = BAD_FIELD_KINDS[i % len(BAD_FIELD_KINDS)]
        column, empty, warning = STORED_AS[kind]
        campaign = Campaign.objects.get(account=account, platform_id=f"campaign_{i}")
        attempt = SyncAttempt.objects.get(run=run, platform_id=f"campaign_{i}")
        assert getattr(campaign, column) == empty, f"campaign_{i} ({kind}): {column} is not stored empty"
        assert attempt.warnings == warning, f"campaign_{i} ({kind})"
        assert attempt.status == AttemptStatus.SUCCEEDED
        if column != "name":
            assert campaign.name == base_campaign(seed, i)["name"], "the row's good fields are kept"
    run_logs.text.encode("utf-8")  # raises if a lone surrogate reached a log line


def test_one_5000_digit_integer_in_one_row_fails_neither_its_page_nor_its_campaign(fake_platform, account,
                                                                                   fast_sync, run_logs):
    fast_sync["PAGE_SIZE"] = 10
    fake_platform.update(campaigns=40, seed=HUGE_INTEGER_SEED, bad_field_rate=0.05)
    run = sync_checked(account, fake_platform, run_logs)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert fake_platform.stats["bad_fields_served"] == 1
    assert run.pages == fake_platform.stats["requests"]["list"] == 4 and run.retries == 0, "each page read once"
    assert run.campaigns_synced == 40
    huge = Campaign.objects.get(account=account, platform_id=HUGE_INTEGER_CAMPAIGN)
    assert huge.impressions is None and huge.clicks is not None
    attempt = SyncAttempt.objects.get(run=run, platform_id=HUGE_INTEGER_CAMPAIGN)
    assert attempt.warnings == STORED_AS["huge_integer"][2]
    neighbours = Campaign.objects.filter(account=account, platform_id__in=[f"campaign_{i}" for i in range(11, 21)])
    assert not neighbours.exclude(platform_id=HUGE_INTEGER_CAMPAIGN).filter(impressions__isnull=True).exists()


def test_rows_without_a_usable_id_fail_as_bad_response_and_those_with_one_are_stored(fake_platform, account,
                                                                                     run_logs):
    fake_platform.update(campaigns=22, bad_row_rate=1.0)  # every campaign followed by a bad row: each kind twice
    run = sync_checked(account, fake_platform, run_logs)
    kinds = [BAD_ROW_KINDS[i % len(BAD_ROW_KINDS)] for i in range(1, 23)]
    unusable = sum(kind in UNUSABLE_ID_KINDS for kind in kinds)
    bad = run.attempts.filter(error_category=ErrorCategory.BAD_RESPONSE)
    assert bad.count() == unusable == 14
    assert not bad.exclude(status=AttemptStatus.FAILED).exists() and not bad.filter(campaign__isnull=False).exists()
    messages = sorted(bad.values_list("message", flat=True))
    assert all(message.startswith("bad row at page 1 row ") for message in messages), messages
    for why in ("id: missing", "id: a number, expected text", "id: empty", "not an object",
                "characters long, more than 255", "id: holds a NUL character",
                "id: holds a lone surrogate (not valid Unicode)"):
        assert any(why in message for message in messages), f"no bad row says {why!r}: {messages}"
    # The others have a string id: stored (bad fields empty, each named) and synced; their ids answer 404.
    stored = run.attempts.filter(platform_id__startswith="bad_")
    assert stored.count() == 22 - unusable
    assert set(stored.values_list("status", "error_category", "http_status")) == {
        (AttemptStatus.FAILED, ErrorCategory.CLIENT_ERROR, 404)}
    assert not stored.filter(warnings="").exists()
    assert set(run.attempts.filter(status=AttemptStatus.SUCCEEDED).values_list("platform_id", flat=True)) == \
        {f"campaign_{i}" for i in range(1, 23)}
    run_logs.text.encode("utf-8")  # the surrogate id reached no log line


def test_attempt_warnings_show_in_the_admin_and_their_count_on_the_status_page(fake_platform, account, admin_client,
                                                                               run_logs):
    fake_platform.update(campaigns=20, bad_field_rate=1.0, seed=0)
    run = sync_checked(account, fake_platform, run_logs)
    fake_platform.update(bad_field_rate=0.0)
    attempt = SyncAttempt.objects.get(run=run, platform_id="campaign_8")  # i % 9 == 8: fractional clicks
    listing = admin_client.get(f"/admin/campaigns/syncattempt/?run__exact={run.pk}&has_warnings=yes")
    assert listing.status_code == 200 and "clicks: not a whole number" in listing.content.decode()
    page = admin_client.get(f"/admin/campaigns/syncattempt/{attempt.pk}/change/").content.decode()
    assert "clicks: not a whole number" in page
    status_page = admin_client.get("/status/").content.decode()
    assert "20 campaigns listed with bad fields, stored empty and synced: the attempts&#x27; warnings" in status_page
    clean = sync_checked(account, fake_platform, run_logs)
    without = admin_client.get(f"/admin/campaigns/syncattempt/?run__exact={clean.pk}&has_warnings=yes")
    assert "campaign_8" not in without.content.decode(), "a run without bad fields lists no attempt with warnings"
