"""The rate budget belongs to the platform's client, has caps, and keeps to one shared clock."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from campaigns.models import AdAccount, ApiClient, RateSlot, RunStatus, SyncRun, Trigger
from syncer import limiter as limiter_module
from syncer.accounts import client_settings_for
from syncer.budget import RateBudget, budget_shared, parse_budget
from syncer.client import PlatformClient
from syncer.fake_platform import FakePlatformConfig
from syncer.limiter import limiter_for, slots_ensure
from syncer.services import run_execute, sync_runs_start
from tests.conftest import FAKE_EMAIL
from tests.test_settings import manage_check
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(accounts) -> list[SyncRun]:
    """Start a run per account and execute them side by side, each in a thread of its own."""
    runs = sync_runs_start(accounts=accounts, trigger=Trigger.COMMAND, triggered_by="test")

    def execute(run_id: int) -> None:
        try:
            run_execute(run_id=run_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=execute, args=(run.pk,), daemon=True) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "the runs end within two minutes"
    return [SyncRun.objects.get(pk=run.pk) for run in runs]


def assert_no_429_and_at_most(fake_platform, client_id: str, calls: int) -> None:
    stats = fake_platform.stats
    assert stats["rate_limited"] == 0, f"{stats['rate_limited']} calls were told 429"
    assert stats["max_calls_in_any_window"][client_id] <= calls, stats["max_calls_in_any_window"]


# --- the budget belongs to the client ------------------------------------------------------------------------

def test_two_accounts_on_one_client_share_its_budget_and_see_no_429(fake_platform, make_account):
    fake_platform.update(campaigns=20, rate_limit="10/2s")
    first = make_account(slug="first", client_id="shared-client", rate_limit="10/2s")
    second = make_account(slug="second", client_id="shared-client", rate_limit="10/2s",
                          url=fake_platform.url + "/")  # the same client, written with a trailing slash
    runs = run_at_once([first, second])
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 2, [run.error_message for run in runs]
    assert [run.campaigns_synced for run in runs] == [20, 20]
    assert_no_429_and_at_most(fake_platform, "shared-client", 10)
    assert ApiClient.objects.count() == 1 and RateSlot.objects.count() == 10, "one client, one set of slots"


def test_accounts_of_one_client_with_different_budgets_pace_to_one_that_keeps_each(fake_platform, make_account):
    # 4/1s and 3/2s: paced at 3 calls per 2 s, no more than 4 in any second and 3 in any two.
    fake_platform.update(campaigns=5, rate_limit="3/2s")
    quick = make_account(slug="quick", client_id="shared-client", rate_limit="4/1s")
    slow = make_account(slug="slow", client_id="shared-client", rate_limit="3/2s")
    runs = run_at_once([quick, slow])
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 2, [run.error_message for run in runs]
    assert_no_429_and_at_most(fake_platform, "shared-client", 3)
    assert fake_platform.max_calls_in_window(1.0, "shared-client") <= 4


def test_an_account_without_a_budget_keeps_to_the_budget_of_another_account_on_its_client(
        fake_platform, make_account):
    fake_platform.update(campaigns=5, rate_limit="3/2s")
    make_account(slug="paced", client_id="shared-client", rate_limit="3/2s")
    unpaced = make_account(slug="unpaced", client_id="shared-client", rate_limit="none")
    [run] = run_at_once([unpaced])
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert_no_429_and_at_most(fake_platform, "shared-client", 3)


def test_a_limiter_made_before_another_account_joined_its_client_paces_to_the_new_shared_budget(
        fake_platform, make_account):
    fake_platform.update(rate_limit="2/1s")
    early = make_account(slug="early", client_id="shared-client", rate_limit="10/1s")
    client = platform_client(early)  # made, as a worker keeps it, before the stricter account exists
    try:
        slots_ensure([make_account(slug="strict", client_id="shared-client", rate_limit="2/1s")])  # its run starts
        for _ in range(4):
            client.check_connection()
    finally:
        client.close()
    assert_no_429_and_at_most(fake_platform, "shared-client", 2)


def test_the_shared_budget_is_the_fewest_calls_over_the_longest_window():
    assert budget_shared([parse_budget("10/1s"), parse_budget("100/60s")]) == RateBudget(10, 60.0)
    assert budget_shared([None, parse_budget("3/2s")]) == RateBudget(3, 2.0)
    assert budget_shared([None, None]) is None


def test_the_migration_keeps_the_slots_of_the_account_that_called_last_per_client():
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("campaigns", "0003_trust_fields")], [("campaigns", "0004_api_client_rate_slots")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        accounts = [old.get_model("campaigns", "AdAccount").objects.create(
            name=slug, slug=slug, base_url=url, email=FAKE_EMAIL, client_id=client_id, rate_limit=budget)
            for slug, url, client_id, budget in [("a", "http://p/", "c", "10/60s"), ("b", "http://p", "c", "10/60s"),
                                                 ("c", "http://p", "other", "20000/0.01s")]]
        slots = old.get_model("campaigns", "RateSlot").objects
        for account, dates in zip(accounts, [(5.0, 8.0), (7.0, 9.0), (1.0,)], strict=True):
            for index, date in enumerate(dates):
                slots.create(account_id=account.pk, index=index, last_used=date)
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    kept = {(slot.api_client.client_id, slot.index): slot.last_used for slot in RateSlot.objects.all()}
    assert kept == {("c", 0): 7.0, ("c", 1): 9.0, ("other", 0): 1.0}, "account b called last on client c"
    assert AdAccount.objects.get(slug="c").rate_limit == "10000/0.1s", "a stored budget over the caps is capped"


# --- caps ------------------------------------------------------------------------------------------------------

REFUSED = [("10001/60s", "at most 10,000 calls"), ("10/0.05s", "between 0.1 s and 86400 s"),
           ("10/86401s", "between 0.1 s and 86400 s"), ("1" * 5000 + "/60s", "at most 10,000 calls")]


@pytest.mark.parametrize(("budget", "reason"), REFUSED)
def test_a_budget_the_limiter_cannot_honour_is_refused_in_one_line_everywhere(budget, reason):
    with pytest.raises(ValueError, match=reason) as refused:
        parse_budget(budget)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200
    with pytest.raises(ValidationError, match=reason):
        AdAccount(name="x", slug="x", base_url="http://p.test", email=FAKE_EMAIL, client_id="x",
                  rate_limit=budget).full_clean()
    with pytest.raises(ValueError, match=reason):
        FakePlatformConfig(rate_limit=budget).validate()


def test_the_edges_of_the_caps_are_honoured():
    assert [str(parse_budget(text)) for text in ("10000/60s", "10/0.1s", "10/86400s")] == \
        ["10000/60s", "10/0.1s", "10/86400s"]


def test_a_budget_over_the_caps_in_the_environment_stops_start_up_in_one_line(tmp_path):
    result = manage_check(tmp_path, AD_PLATFORM_RATE_LIMIT="20000/60s")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AD_PLATFORM_RATE_LIMIT" in lines[0] and "at most 10,000 calls" in lines[0], lines


# --- clocks ----------------------------------------------------------------------------------------------------

def shared_clock_now() -> float:
    """The clock every process shares, read independently of the limiter."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
            return cursor.fetchone()[0]
    return time.monotonic()


def step_the_slot_clock(monkeypatch, seconds: float) -> None:
    """Step the slot clock. No real part can step a clock under a test: its function is wrapped to add `seconds`."""
    real = limiter_module.now_sql

    def stepped() -> tuple[str, list[float]]:
        expression, params = real()
        return f"({expression} + %s)", [*params, seconds]

    monkeypatch.setattr(limiter_module, "now_sql", stepped)


def fresh_process(monkeypatch) -> None:
    """What another process would hold: none of this one's queues or own calls."""
    monkeypatch.setattr(limiter_module, "_in_process", {})


def platform_client(account) -> PlatformClient:
    return PlatformClient(client_settings_for(account, pool_size=1), limiter_for(account))


def test_slots_are_dated_by_the_shared_clock_not_the_process_wall_clock(account, monkeypatch):
    account.rate_limit = "3/60s"
    account.save()
    limiter = limiter_for(account)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # this host's wall clock is an hour ahead
    permit = limiter.acquire()
    monkeypatch.setattr(time, "time", real_time)
    dated = RateSlot.objects.get(pk=permit.slot_id).last_used
    assert abs(dated - shared_clock_now()) < 30, "dated by the clock all processes share"
    assert abs(dated - (real_time() + 3600)) > 1800, "not by this process's wall clock"


def test_a_forward_step_of_the_shared_clock_never_lets_one_process_send_n_plus_1_calls_in_a_window(
        fake_platform, make_account, monkeypatch):
    fake_platform.update(rate_limit="3/1s")
    account = make_account(rate_limit="3/1s")
    client = platform_client(account)
    try:
        for _ in range(3):
            client.check_connection()
        step_the_slot_clock(monkeypatch, +3600)  # every slot now looks an hour old
        for _ in range(3):
            client.check_connection()
    finally:
        client.close()
    assert_no_429_and_at_most(fake_platform, account.client_id, 3)


def test_a_slot_dated_after_a_backward_step_counts_as_just_used_not_as_an_hour_away(
        fake_platform, make_account, monkeypatch):
    fake_platform.update(rate_limit="3/1s")
    account = make_account(rate_limit="3/1s")
    client = platform_client(account)
    for _ in range(3):
        client.check_connection()
    client.close()
    step_the_slot_clock(monkeypatch, -3600)  # a reboot, or the database host's clock set back: slots in the future
    fresh_process(monkeypatch)  # so that this process's own record of its calls is not what holds the next ones
    stepped_at = time.monotonic()
    later = platform_client(account)
    sent = threading.Event()

    def three_more() -> None:
        try:
            for _ in range(3):
                later.check_connection()
            sent.set()
        finally:
            later.close()
            connection.close()

    threading.Thread(target=three_more, daemon=True).start()
    wait_until(sent.is_set, timeout=60, message="the calls after the step go within about a window, not an hour")
    assert time.monotonic() - stepped_at >= 1.0, "the slots dated in the future counted as just used"
    assert_no_429_and_at_most(fake_platform, account.client_id, 3)


def test_a_wall_clock_step_during_a_call_moves_its_slot_by_no_more_than_the_time_since_the_take(
        account):
    account.rate_limit = "3/60s"
    account.save()
    permit = limiter_for(account).acquire()
    left = time.time()
    permit.sent("POST", left, left + 3600)  # the wall clock stepped an hour forward while the call was out
    moved = RateSlot.objects.get(pk=permit.slot_id).last_used - permit.taken_at
    assert 0 <= moved <= time.monotonic() - permit.taken_monotonic, "a duration on the monotonic clock"


def test_a_runs_duration_is_never_negative_when_a_hosts_clock_stepped_back(account):
    ahead = timezone.now() + timedelta(hours=1)  # dated by a host whose clock was an hour ahead
    running = SyncRun.objects.create(account=account, trigger=Trigger.COMMAND, status=RunStatus.RUNNING,
                                     started_at=ahead)
    assert running.duration == timedelta(0)
    running.finished_at = ahead - timedelta(minutes=5)
    assert running.duration == timedelta(0)


def test_freshness_is_never_negative_when_a_hosts_clock_stepped_back(account):
    from campaigns.selectors import AccountStatus

    status = AccountStatus(account=account, last_success_at=timezone.now() + timedelta(hours=1), campaigns=0,
                           failed_campaigns=0, run=None)
    assert status.freshness_seconds == 0.0
