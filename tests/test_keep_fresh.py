"""Keep-fresh mode against the bundled fake: runs of the most overdue campaigns keep each class within its target.

Time-scaled: a budget of 10/1s, targets of 10 s (active) and 60 s (paused).
"""
from __future__ import annotations

import io
from collections import defaultdict
from itertools import pairwise

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns.models import AdAccount, AttemptStatus, Campaign, ListingMode, RunStatus, SyncAttempt, SyncRun, Trigger
from syncer.keep_fresh import keep_fresh_foreground
from tests.invariants import assert_run_invariants
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ACTIVE, PAUSED = 10, 30  # campaign_1..10 active, campaign_11..40 paused


@pytest.fixture
def fresh_account(fake_platform, make_account):
    fake_platform.update(campaigns=ACTIVE + PAUSED, statuses=f"active:{ACTIVE},paused:{PAUSED}", rate_limit="10/1s",
                         sync_latency=0.02)
    account = make_account(slug="fresh", rate_limit="10/1s")
    AdAccount.objects.filter(pk=account.pk).update(fresh_active_seconds=10, fresh_paused_seconds=60)
    account.refresh_from_db()
    return account


def synced_at(account: AdAccount) -> dict[str, list]:
    """Campaign platform id -> when each of its successful syncs ended, in order."""
    times = defaultdict(list)
    for platform_id, finished in (SyncAttempt.objects.filter(run__account=account, status=AttemptStatus.SUCCEEDED)
                                  .order_by("finished_at").values_list("platform_id", "finished_at")):
        times[platform_id].append(finished)
    return times


def test_keep_fresh_syncs_active_campaigns_within_their_target_and_paused_ones_less_often(fresh_account, fake_platform):
    runs = keep_fresh_foreground(account=fresh_account, seconds=25)
    assert runs and all(run.trigger == Trigger.KEEP_FRESH and run.status == RunStatus.SUCCEEDED for run in runs)
    for run in runs:
        assert_run_invariants(run, secrets=[], log_text="")
    assert runs[0].listing == ListingMode.REFRESH and runs[0].campaigns_synced == 0  # it lists; the cycles sync
    # The first cycle after the listing takes the active campaigns first, then paused ones while the budget lasts.
    assert {f"campaign_{number}" for number in range(1, ACTIVE + 1)} <= set(runs[1].campaign_filter)
    assert sum(run.listing == ListingMode.REFRESH for run in runs) >= 2  # listed again within the shortest target
    times = synced_at(fresh_account)
    for number in range(1, ACTIVE + 1):
        syncs = times[f"campaign_{number}"]
        assert len(syncs) >= 3, (number, syncs)
        gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(syncs)]
        assert max(gaps) <= 10, (number, gaps)  # never older than its target between two syncs
    assert all(len(times[f"campaign_{number}"]) == 1 for number in range(ACTIVE + 1, ACTIVE + PAUSED + 1))
    assert fake_platform.stats["rate_limited"] == 0


def test_a_campaign_paused_or_activated_on_the_platform_changes_class_at_the_next_listing(fresh_account,
                                                                                         fake_platform):
    keep_fresh_foreground(account=fresh_account, seconds=3)  # the first pass
    fake_platform.update(status_changes="11=active,1=paused")  # a person activates one and pauses another
    changed_at = timezone.now()
    keep_fresh_foreground(account=fresh_account, seconds=16)
    stored = dict(Campaign.objects.filter(account=fresh_account).values_list("platform_id", "status"))
    assert stored["campaign_11"] == "active" and stored["campaign_1"] == "paused"
    times = synced_at(fresh_account)
    assert len(times["campaign_11"]) >= 2  # synced again, as an active campaign now
    # Once a listing has said campaign_1 is paused, it waits its paused interval (54 s): not again in this test.
    listing = SyncRun.objects.filter(account=fresh_account, listing=ListingMode.REFRESH,
                                     prepared_at__gt=changed_at).order_by("prepared_at").first()
    assert all(synced <= listing.finished_at for synced in times["campaign_1"]), (listing.finished_at, times)


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_campaigns", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_keeps_an_account_fresh_for_a_while_and_says_what_each_run_did(fresh_account):
    out, _ = run_command("--keep-fresh", "--for", "4", "--account", "fresh")
    lines = out.splitlines()
    assert lines[0].startswith("Keeping 'fresh' fresh: the targets need")
    # Nothing was stored yet when it started: the plan is said again once the first listing stored the campaigns.
    assert any(line.startswith("With the campaigns listed: the targets need 96 calls a minute") for line in lines), out
    assert any(line.startswith("Run #") and ", listed first: 0 synced, 0 failed" in line for line in lines), out
    assert sum(int(line.split(": ")[1].split()[0]) for line in lines if line.startswith("Run #")) >= 40, out
    assert lines[-1].startswith("Kept 'fresh' fresh: ") and "0 runs not succeeded" in lines[-1]
    assert SyncRun.objects.filter(account=fresh_account).exclude(trigger=Trigger.KEEP_FRESH).count() == 0


def test_the_command_says_when_the_budget_cannot_cover_the_targets(fresh_account):
    keep_fresh_foreground(account=fresh_account, seconds=1)  # the first pass stores the campaigns
    AdAccount.objects.filter(pk=fresh_account.pk).update(rate_limit="1/1s")  # 1.6 calls a second needed
    out, _ = run_command("--keep-fresh", "--for", "1", "--account", "fresh")
    assert "the budget covers 56 % of the targets" in out.splitlines()[0]


@pytest.mark.parametrize("args", [("--for", "5"), ("--keep-fresh", "--async"), ("--keep-fresh", "--for", "0"),
                                  ("--keep-fresh", "--campaign", "campaign_1")])
def test_keep_fresh_flags_that_do_not_go_together_exit_2_with_one_line(fresh_account, args):
    with pytest.raises(CommandError) as refused:
        run_command(*args, "--account", "fresh")
    assert refused.value.returncode == 2 and "--keep-fresh" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_on_the_cluster_each_keep_fresh_run_starts_the_next_until_it_is_switched_off(fresh_account, qcluster):
    from django_q.models import Schedule

    from syncer.keep_fresh import keep_fresh_tick
    from syncer.schedules import KEEP_FRESH_SCHEDULE_NAME

    Schedule.objects.filter(name=KEEP_FRESH_SCHEDULE_NAME).delete()  # only the runs' own chain goes on here
    AdAccount.objects.filter(pk=fresh_account.pk).update(keep_fresh=True)
    qcluster.start()
    assert keep_fresh_tick() == 1  # what the schedule does every minute: the first run
    runs = SyncRun.objects.filter(account=fresh_account, trigger=Trigger.KEEP_FRESH)

    def actives_synced_twice() -> bool:
        times = synced_at(fresh_account)
        return all(len(times[f"campaign_{number}"]) >= 2 for number in range(1, ACTIVE + 1))

    # The listing, the first pass, then the active campaigns again once due: each run started by the one before.
    wait_until(actives_synced_twice, timeout=90, message="every active campaign was synced twice on the cluster")
    assert runs.filter(status=RunStatus.SUCCEEDED).count() >= 3
    AdAccount.objects.filter(pk=fresh_account.pk).update(keep_fresh=False)
    wait_until(lambda: not runs.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).exists(), timeout=60,
               message="the last keep-fresh run ended")
    assert keep_fresh_tick() == 0
    assert not runs.exclude(status=RunStatus.SUCCEEDED).exists()
    for run in runs:
        assert_run_invariants(run, secrets=[], log_text="")


def test_sync_now_on_a_keep_fresh_account_cancels_the_cycle_under_way_and_syncs_every_campaign(fresh_account,
                                                                                              fake_platform, qcluster):
    from django_q.models import Schedule

    from syncer.keep_fresh import keep_fresh_tick
    from syncer.schedules import KEEP_FRESH_SCHEDULE_NAME
    from syncer.services import sync_run_start

    Schedule.objects.filter(name=KEEP_FRESH_SCHEDULE_NAME).delete()  # the test ticks itself
    AdAccount.objects.filter(pk=fresh_account.pk).update(keep_fresh=True)
    fake_platform.update(sync_latency=5.0)  # slow calls: a cycle with campaigns left runs for seconds yet
    qcluster.start()
    assert keep_fresh_tick() == 1
    cycles = SyncRun.objects.filter(account=fresh_account, trigger=Trigger.KEEP_FRESH)
    under_way = wait_until(lambda: cycles.filter(status=RunStatus.RUNNING, attempts__status=AttemptStatus.PENDING)
                           .first(), timeout=60, message="a keep-fresh cycle with campaigns left runs on the cluster")
    assert not under_way.holds_account, "the status page offers Sync now during a cycle"

    full = sync_run_start(account=fresh_account, trigger=Trigger.STATUS_PAGE, triggered_by="operator", enqueue=True)
    fake_platform.update(sync_latency=0.02)
    cycle = SyncRun.objects.get(pk=under_way.pk)
    assert (cycle.status, cycle.error_message) == (RunStatus.CANCELLED, "cancelled by a sync started by operator")
    full = wait_until(lambda: SyncRun.objects.filter(pk=full.pk, status=RunStatus.SUCCEEDED).first(), timeout=90,
                      message="the full sync ends, every campaign synced")
    assert (full.listing, full.campaigns_synced) == (ListingMode.FULL, ACTIVE + PAUSED)
    for run in (cycle, full):
        assert_run_invariants(run, secrets=[], log_text="")
    # Keep-fresh goes on after it: the next tick (or the cancelled cycle's worker, had it come later) starts a cycle.
    wait_until(lambda: keep_fresh_tick() + cycles.filter(created_at__gt=full.finished_at).count() > 0, timeout=30,
               message="keep-fresh cycles start again after the full sync")
    AdAccount.objects.filter(pk=fresh_account.pk).update(keep_fresh=False)


def test_a_keep_fresh_cycle_never_takes_the_place_of_another_run(fresh_account):
    from syncer.keep_fresh import keep_fresh_cycle_start
    from syncer.services import SyncRefused, sync_run_start

    full = sync_run_start(account=fresh_account, trigger=Trigger.SCHEDULE, triggered_by="schedule")
    with pytest.raises(SyncRefused, match=f"already syncing \\(run #{full.pk} is queued\\)"):
        keep_fresh_cycle_start(account=fresh_account, enqueue=False)
    with pytest.raises(SyncRefused, match="already syncing"):
        sync_run_start(account=fresh_account, trigger=Trigger.STATUS_PAGE, triggered_by="operator")
    assert SyncRun.objects.get(pk=full.pk).status == RunStatus.QUEUED


def test_every_installation_gets_the_keep_fresh_tick_every_minute():
    from django_q.models import Schedule

    from syncer.schedules import KEEP_FRESH_SCHEDULE_NAME, KEEP_FRESH_TASK

    schedule = Schedule.objects.get(name=KEEP_FRESH_SCHEDULE_NAME)  # made by migrate
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (KEEP_FRESH_TASK, Schedule.MINUTES, 1)
