"""Freshness against the targets on the status page, /status.json and the admin (campaigns/freshness_selectors.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import AdAccount, ApiClient, Campaign, SyncStatus
from syncer.accounts import account_default_get

pytest.register_assert_rewrite("tests.people_fixtures")

from tests.people_fixtures import make_offline_account  # noqa: E402

pytest_plugins = ["tests.people_fixtures"]  # client_as, private_cache

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_cache")]


@pytest.fixture
def staff(client_as):
    return client_as("staff_trigger")


def aged(account: AdAccount, *ages: tuple[str, float | None], pinned: bool = False, start: int = 1) -> list[Campaign]:
    """Campaigns of (status, minutes since their last sync; None: never synced, first seen that long ago)."""
    now = timezone.now()
    made = Campaign.objects.bulk_create([
        Campaign(account=account, platform_id=f"campaign_{start + index}", name=f"Campaign {start + index}",
                 status=status, pinned_active=pinned,
                 last_synced_at=None if minutes is None else now - timedelta(minutes=minutes),
                 last_sync_status=SyncStatus.NEVER if minutes is None else SyncStatus.SUCCEEDED)
        for index, (status, minutes) in enumerate(ages)])
    return made


def account_json(client, slug: str = "offline") -> dict:
    return next(account for account in client.get("/status.json").json()["accounts"] if account["slug"] == slug)


def test_each_class_shows_its_share_within_target_and_its_oldest_campaign(staff):
    account = make_offline_account()  # targets 1h, 24h, 7d
    aged(account, ("active", 10), ("ACTIVE", 50), ("active", 90), ("active", 200),
         ("paused", 60), ("paused", 30 * 60), ("completed", 3 * 24 * 60))
    freshness = account_json(staff)["freshness"]
    active, paused, other = (freshness["classes"][name] for name in ("active", "paused", "other"))
    assert (active["campaigns"], active["within_target"], active["target_seconds"]) == (4, 2, 3600)
    assert active["share_within_target"] == 0.5
    assert active["oldest_seconds"] == pytest.approx(200 * 60, abs=30)
    assert (paused["campaigns"], paused["within_target"]) == (2, 1)
    assert (other["campaigns"], other["within_target"]) == (1, 1)
    # Ages as a multiple of each one's own target: 1/6, 5/6, 1.5, 3.3 | 1/24, 1.25 | 0.43.
    assert [age_bin["campaigns"] for age_bin in freshness["histogram"]] == [3, 1, 2, 1, 0]
    html = staff.get("/status/").content.decode()
    assert "50 % of 4 within 1h · oldest 3.3 h" in html
    assert "50 % of 2 within 1d · oldest 30 h" in html
    assert "100 % of 1 within 7d" in html


def test_ages_are_binned_by_each_classs_own_target_when_two_targets_share_a_bound(staff):
    account = make_offline_account()
    AdAccount.objects.filter(pk=account.pk).update(fresh_active_seconds=3600, fresh_paused_seconds=7200)
    aged(account, ("active", 90), ("paused", 90), ("paused", 130))  # 1.5x | 0.75x, 1.08x their targets
    assert [age_bin["campaigns"] for age_bin in account_json(staff)["freshness"]["histogram"]] == [0, 1, 2, 0, 0]


def test_a_pinned_campaign_counts_as_active_whatever_its_status(staff):
    account = make_offline_account()
    aged(account, ("paused", 120), pinned=True)
    classes = account_json(staff)["freshness"]["classes"]
    assert classes["active"]["campaigns"] == 1 and classes["active"]["within_target"] == 0
    assert classes["paused"]["campaigns"] == 0


def test_a_campaign_never_synced_is_as_old_as_its_first_sighting(staff):
    account = make_offline_account()
    [campaign] = aged(account, ("active", None))
    Campaign.objects.filter(pk=campaign.pk).update(first_seen_at=timezone.now() - timedelta(hours=2))
    active = account_json(staff)["freshness"]["classes"]["active"]
    assert active["within_target"] == 0 and active["oldest_seconds"] == pytest.approx(7200, abs=30)


def test_the_budget_load_says_what_the_targets_need_against_the_budget(staff):
    account = make_offline_account(rate_limit="10/60s")
    aged(account, *[("active", 1)] * 40)  # 40 an hour and a listing page an hour: under a call a minute
    budget = account_json(staff)["freshness"]["budget"]
    assert budget["needed_per_minute"] == pytest.approx(41 / 60)
    assert budget["budget_per_minute"] == pytest.approx(10) and budget["coverage"] == 1.0
    assert budget["shortfall"] is None
    assert "the targets need 0.683 calls a minute; the budget gives 10 (7 %)" in staff.get("/status/").content.decode()


def test_a_budget_that_cannot_cover_the_targets_is_announced_before_any_sync(staff):
    # The freshness benchmark's overloaded row: 100 active (40 s), 400 paused (200 s) at 10/3s.
    account = make_offline_account(rate_limit="10/3s")
    AdAccount.objects.filter(pk=account.pk).update(fresh_active_seconds=40, fresh_paused_seconds=200)
    aged(account, *[("active", 0)] * 100, *[("paused", 0)] * 400)
    budget = account_json(staff)["freshness"]["budget"]
    assert budget["coverage"] == pytest.approx(0.697, abs=0.01)
    assert budget["shortfall"].startswith("the budget covers 69 % of the targets; deferred: paused campaigns to about")
    assert budget["planned_interval_seconds"]["active"] <= 40
    assert budget["shortfall"] in staff.get("/status/").content.decode()


def test_accounts_on_one_platform_client_share_its_budget_and_its_learned_one(staff):
    first, second = make_offline_account("first"), make_offline_account("second")
    AdAccount.objects.filter(pk=second.pk).update(client_id=first.client_id)
    for account in (first, second):
        aged(account, ("active", 1))
    assert account_json(staff, "first")["freshness"]["budget"]["budget_per_minute"] == pytest.approx(5)
    ApiClient.objects.create(base_url=first.base_url, client_id=first.client_id, configured_calls=10,
                             configured_window_seconds=60, learned_calls=6)
    assert account_json(staff, "second")["freshness"]["budget"]["budget_per_minute"] == pytest.approx(3)


def test_freshness_costs_the_same_queries_for_one_account_or_five_with_the_same_targets(staff):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get("/status.json").status_code == 200
        return len(captured)

    aged(make_offline_account("a0"), ("active", 1))
    with_one = queries()
    for index in range(1, 5):
        aged(make_offline_account(f"a{index}"), ("paused", 1), ("active", 90))
    assert queries() == with_one


def test_the_default_account_takes_its_targets_from_the_settings(settings):
    settings.SYNC = {**settings.SYNC, "FRESH_ACTIVE": 90, "FRESH_PAUSED": 7200, "FRESH_OTHER": 86400}
    account = account_default_get()
    assert account.freshness_targets.active == 90 and account.freshness_targets.paused == 7200
    assert account.freshness_targets.other == 86400


def test_the_admin_takes_targets_with_units_and_shows_them_in_the_largest_unit(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(username="root"))
    admin, account = client, make_offline_account()
    url = f"/admin/campaigns/adaccount/{account.pk}/change/"
    form = admin.get(url).content.decode()
    assert 'name="fresh_active_seconds" value="1h"' in form and 'name="fresh_other_seconds" value="7d"' in form
    fields = {"name": account.name, "slug": account.slug, "platform": account.platform, "base_url": account.base_url,
              "email": account.email, "client_id": account.client_id, "rate_limit": account.rate_limit,
              "stale_after_minutes": 1440, "outage_alert_after_minutes": 15, "alert_emails": "",
              "fresh_active_seconds": "90s", "fresh_paused_seconds": "1800", "fresh_other_seconds": "2d"}
    assert admin.post(url, fields).status_code == 302
    account.refresh_from_db()
    assert account.freshness_targets.active == 90 and account.freshness_targets.paused == 1800
    assert account.freshness_targets.other == 2 * 86400
    refused = admin.post(url, {**fields, "fresh_paused_seconds": "a day"})
    assert refused.status_code == 200
    assert "is not a target age: expected seconds, or a number with s, m, h or d" in refused.content.decode()


def test_staff_who_may_only_view_see_an_accounts_targets(client_as):
    account = make_offline_account()
    page = client_as("staff_viewer").get(f"/admin/campaigns/adaccount/{account.pk}/change/")
    assert page.status_code == 200 and "Target age: active" in page.content.decode()


def test_pinning_in_the_admin_needs_trigger_sync_and_survives_the_next_listing(client_as):
    account = make_offline_account()
    campaigns = aged(account, ("paused", 1), ("paused", 1))
    post = {"action": "pin_active", "_selected_action": [campaigns[0].pk], "index": 0}
    assert client_as("staff_viewer").post("/admin/campaigns/campaign/", post).status_code == 403
    response = client_as("staff_trigger").post("/admin/campaigns/campaign/", post, follow=True)
    assert "1 campaign pinned to active." in response.content.decode()
    assert list(Campaign.objects.filter(pinned_active=True).values_list("pk", flat=True)) == [campaigns[0].pk]
    # The listing writes what the platform sends, never our pin.
    from syncer.prepare import campaigns_upsert
    from syncer.rows import CampaignRow
    campaigns_upsert(account_id=account.pk, rows=[CampaignRow(platform_id="campaign_1",
                                                              fields={"name": "Renamed", "status": "paused"})])
    assert Campaign.objects.get(pk=campaigns[0].pk).pinned_active


def test_the_page_and_its_json_twin_say_when_an_account_is_kept_fresh(staff):
    account = make_offline_account()
    aged(account, ("active", 10))
    assert account_json(staff)["freshness"]["keep_fresh"] is False
    assert "keep fresh on" not in staff.get("/status/").content.decode()
    AdAccount.objects.filter(pk=account.pk).update(keep_fresh=True)
    assert account_json(staff)["freshness"]["keep_fresh"] is True
    assert "keep fresh on" in staff.get("/status/").content.decode()
