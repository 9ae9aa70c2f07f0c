"""Whole runs through the services (`sync_run_start` + `run_execute`) on the fake platform and a real database."""
from __future__ import annotations

import re
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from campaigns.models import (
    AttemptStatus,
    Campaign,
    ErrorCategory,
    RunStatus,
    SyncRun,
    Trigger,
)
from syncer.fake_platform.data import base_campaign, hostile_row
from syncer.services import run_cancel, run_execute, run_retry_failed, sync_run_start
from tests.conftest import FAKE_PASSWORD
from tests.invariants import assert_run_invariants
from tests.runs import sync
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def attempt_ids(run: SyncRun, **filters) -> set[str]:
    return set(run.attempts.filter(**filters).values_list("platform_id", flat=True))


def test_all_100_campaigns_sync_with_every_invariant_held(fake_platform, account):
    run = sync(account)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")
    ids = set(fake_platform.campaign_ids())
    assert attempt_ids(run, status=AttemptStatus.SUCCEEDED) == ids and len(ids) == 100
    assert (run.campaigns_listed, run.campaigns_synced, run.campaigns_failed) == (100, 100, 0)
    assert set(Campaign.objects.filter(account=account).values_list("platform_id", flat=True)) == ids
    assert not Campaign.objects.filter(account=account).exclude(last_sync_status="succeeded").exists()
    platform = fake_platform.stats
    assert platform["synced_ids"] == {platform_id: 1 for platform_id in ids}  # one sync call each
    assert run.requests == sum(platform["requests"].values())  # the run's counters tell the truth
    assert run.pages == platform["requests"]["list"] == 1
    assert run.rate_limited == run.server_errors == run.timeouts == run.retries == 0


def test_a_second_run_creates_no_duplicate_rows_and_keeps_first_seen_at(fake_platform, account):
    first = sync(account)
    seen = dict(Campaign.objects.filter(account=account).values_list("platform_id", "first_seen_at"))
    impressions = dict(Campaign.objects.filter(account=account).values_list("platform_id", "impressions"))
    second = sync(account)
    assert first.status == second.status == RunStatus.SUCCEEDED
    assert_run_invariants(second, secrets=[FAKE_PASSWORD], log_text="")
    campaigns = Campaign.objects.filter(account=account)
    assert campaigns.count() == 100
    assert dict(campaigns.values_list("platform_id", "first_seen_at")) == seen
    # The platform's metrics grow between listings: the second run updated the same rows.
    now = dict(campaigns.values_list("platform_id", "impressions"))
    assert all(now[key] > impressions[key] for key in impressions)


def test_rows_without_a_usable_id_are_bad_response_and_every_row_with_one_is_stored_and_synced(fake_platform,
                                                                                             account):
    fake_platform.update(bad_row_rate=0.15)
    run = sync(account)
    bad_rows_served = fake_platform.stats["bad_rows_served"]
    assert bad_rows_served > 5
    assert run.status == RunStatus.PARTIAL
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")
    # Bad rows with a string id (bad_<i>_<kind>) have an id to store them under: stored with warnings and
    # synced, which the platform answers 404 (their ids are not real). Only rows without one are bad_response.
    with_id = Campaign.objects.filter(account=account, platform_id__startswith="bad_")
    bad = run.attempts.filter(error_category=ErrorCategory.BAD_RESPONSE)
    assert with_id.exists() and bad.exists()
    assert bad.count() + with_id.count() == bad_rows_served
    assert not bad.exclude(status=AttemptStatus.FAILED).exists() and not bad.filter(campaign__isnull=False).exists()
    for message in bad.values_list("message", flat=True):
        # Where (page and row) and why (the id, or that it is no object).
        assert re.fullmatch(r"bad row at page \d+ row \d+: (id: .*|row is .*, not an object)", message), message
    stored = run.attempts.filter(platform_id__startswith="bad_")
    assert set(stored.values_list("error_category", "http_status")) == {(ErrorCategory.CLIENT_ERROR, 404)}
    assert not stored.filter(warnings="").exists(), "every stored bad row says which fields came bad"
    assert attempt_ids(run, status=AttemptStatus.SUCCEEDED) == set(fake_platform.campaign_ids())
    assert run.campaigns_failed == bad_rows_served


def test_a_campaign_listed_twice_across_pages_is_synced_once(fake_platform, account, fast_sync):
    fast_sync["PAGE_SIZE"] = 10
    fake_platform.update(duplicate_across_pages=True)
    run = sync(account)
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")
    # A campaign inserted at the front after page 1 read: the first pass (11 pages, campaign_10 twice) sees
    # 100 of the 101 its total says, and a second pass finds the newcomer.
    assert run.campaigns_listed == 101 and fake_platform.campaign_ids()[-1] == "campaign_101"
    assert fake_platform.stats["synced_ids"] == {platform_id: 1 for platform_id in fake_platform.campaign_ids()}
    assert run.pages == 22 and run.campaigns_unlisted == 0
    assert run.status == RunStatus.SUCCEEDED and run.warnings == []


def test_a_listing_that_keeps_failing_fails_the_run_with_a_clear_message(fake_platform, account):
    fake_platform.update(list_fail_rate=1.0)
    run = sync(account)
    assert run.status == RunStatus.FAILED
    assert run.error_message == "listing campaigns failed: the platform failed with HTTP 503"
    assert run.server_errors == run.requests - 1 == 5  # one token call, five tries of the listing
    assert not run.attempts.exists() and not Campaign.objects.exists()


def test_hostile_values_are_stored_as_data(fake_platform, account):
    fake_platform.update(campaigns=45, hostile_values=True)
    run = sync(account)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")
    stored = {c.platform_id: c for c in Campaign.objects.filter(account=account)}
    assert len(stored) == 45
    seed = fake_platform.config.seed
    for i in range(5, 46, 5):  # the nine hostile kinds, in order
        served = hostile_row(dict(base_campaign(seed, i)), i)
        campaign = stored[f"campaign_{i}"]
        assert campaign.name == served["name"], f"campaign_{i}"
        assert campaign.last_sync_status == "succeeded"
    assert "\U0001F680" in stored["campaign_5"].name and "日本語" in stored["campaign_5"].name
    assert stored["campaign_10"].name.endswith("'); DROP TABLE campaigns; --")
    assert stored["campaign_15"].name.startswith("<script>")  # stored raw; escaping is the page's job
    assert len(stored["campaign_20"].name) > 10_000
    assert stored["campaign_25"].budget == Decimal(hostile_row(dict(base_campaign(seed, 25)), 25)["budget"])
    assert isinstance(stored["campaign_25"].impressions, int)
    assert (stored["campaign_30"].impressions, stored["campaign_30"].clicks) == (2**53 + 1, 2**40)
    assert (stored["campaign_35"].budget, stored["campaign_35"].conversions) == (Decimal(-500), -1)
    assert stored["campaign_45"].name == "  \tCampaign 45\nsecond line\u200b  "


def test_a_10_per_2s_budget_with_30_campaigns_sees_zero_429s(fake_platform, make_account):
    fake_platform.update(campaigns=30, rate_limit="10/2s")
    account = make_account(rate_limit="10/2s")
    run = sync(account)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.campaigns_synced == 30
    platform = fake_platform.stats
    assert platform["rate_limited"] == 0 and run.rate_limited == 0
    assert platform["max_calls_in_any_window"][account.client_id] <= 10


@pytest.mark.parametrize("fault", ["not_found", "sync_503"])
def test_retry_failed_re_drives_exactly_the_failed_campaigns(fake_platform, account, fast_sync, fault):
    if fault == "not_found":
        fake_platform.update(campaigns=40, not_found_rate=0.2)
    else:
        fast_sync["MAX_ATTEMPTS"] = 2
        fake_platform.update(campaigns=40, sync_fail_rate=0.5, seed=11)
    first = sync(account)
    failed = attempt_ids(first, status=AttemptStatus.FAILED)
    assert first.status == RunStatus.PARTIAL and 0 < len(failed) < 40
    if fault == "not_found":
        assert failed == set(fake_platform.deleted_ids())

    fake_platform.update(not_found_rate=0.0, sync_fail_rate=0.0)
    fake_platform.reset_stats()
    retry = run_retry_failed(run=first, trigger=Trigger.COMMAND, triggered_by="test")
    retry = run_execute(run_id=retry.pk)
    assert retry.retry_of_id == first.pk
    assert retry.status == RunStatus.SUCCEEDED, retry.error_message
    assert_run_invariants(retry, secrets=[FAKE_PASSWORD], log_text="")
    assert attempt_ids(retry) == failed
    assert set(fake_platform.stats["synced_ids"]) == failed  # nothing else was synced again


def test_one_campaigns_failure_never_stops_the_others(fake_platform, account):
    fake_platform.update(campaigns=30, not_found_rate=0.3)
    run = sync(account, concurrency=1)  # one worker: it must carry on past every failure
    deleted = set(fake_platform.deleted_ids())
    assert deleted
    assert run.status == RunStatus.PARTIAL
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")
    assert attempt_ids(run, status=AttemptStatus.FAILED) == deleted
    assert attempt_ids(run, status=AttemptStatus.SUCCEEDED) == set(fake_platform.campaign_ids())
    assert set(run.attempts.filter(status=AttemptStatus.FAILED).values_list("http_status", flat=True)) == {404}


def execute_in_thread(run_id: int) -> threading.Thread:
    def target() -> None:
        try:
            run_execute(run_id=run_id)
        finally:
            connection.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_cancel_from_another_thread_stops_the_run(fake_platform, account):
    fake_platform.update(sync_latency=0.2)
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, concurrency=2)
    worker = execute_in_thread(run.pk)
    wait_until(lambda: SyncRun.objects.get(pk=run.pk).campaigns_synced >= 4, timeout=20,
               message="the run syncs a few campaigns")
    assert run_cancel(run_id=run.pk, who="test")
    worker.join(timeout=60)
    assert not worker.is_alive()
    run = SyncRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.CANCELLED and "cancelled by test" in run.error_message
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")
    assert run.attempts.filter(status=AttemptStatus.CANCELLED).count() > 50
    synced = run.attempts.filter(status=AttemptStatus.SUCCEEDED).count()
    assert fake_platform.stats["synced_total"] == synced < 100  # no call started after the cancel


def start_then_rotate_password(fake_platform, account) -> SyncRun:
    """Start a run, let it sync a few, then change the password and revoke the token in use."""
    fake_platform.update(sync_latency=0.1)
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, concurrency=2)
    worker = execute_in_thread(run.pk)
    wait_until(lambda: SyncRun.objects.get(pk=run.pk).campaigns_synced >= 4, timeout=20,
               message="the run syncs a few campaigns")
    fake_platform.update(password="rotated-elsewhere", token_revoke_every=1)
    worker.join(timeout=30)
    assert not worker.is_alive()
    return SyncRun.objects.get(pk=run.pk)


def test_a_fatal_auth_failure_mid_run_fails_the_run_with_every_attempt_terminal(fake_platform, account):
    run = start_then_rotate_password(fake_platform, account)
    assert run.status == RunStatus.FAILED
    assert "credentials" in run.error_message and "rotated-elsewhere" not in run.error_message
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")
    assert run.campaigns_synced + run.campaigns_failed == run.campaigns_listed == 100
    assert 4 <= run.campaigns_synced < 100
    assert run.attempts.filter(status=AttemptStatus.FAILED, error_category=ErrorCategory.AUTH).exists()
    assert fake_platform.stats["synced_total"] == run.campaigns_synced


def test_a_password_changed_mid_run_is_reported_as_rejected_credentials(fake_platform, account):
    run = start_then_rotate_password(fake_platform, account)
    assert run.status == RunStatus.FAILED
    assert "AD_PLATFORM_PASSWORD" in run.error_message and "email or password" in run.error_message


def test_the_watchdog_resumes_a_run_whose_worker_went_silent_but_not_one_whose_step_waits_in_the_queue(
        account, monkeypatch, settings):
    """A backlogged queue once made the watchdog queue the same step again every lease, feeding the backlog."""
    from datetime import timedelta

    from django.utils import timezone

    from syncer import recovery

    queued = []
    monkeypatch.setattr(recovery, "prepare_enqueue", queued.append)
    monkeypatch.setattr(recovery, "run_fan_out", queued.append)
    settings.SYNC = {**settings.SYNC, "LEASE_SECONDS": 30}
    now = timezone.now()
    silent = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test", enqueue=False)
    SyncRun.objects.filter(pk=silent.pk).update(status=RunStatus.RUNNING, heartbeat_at=now - timedelta(seconds=60),
                                                queued_at=now - timedelta(seconds=90), prepared_at=now)

    assert recovery.runs_resume_stale() == [silent.pk], "a worker silent for two leases is presumed dead"
    assert queued == [silent.pk]
    SyncRun.objects.filter(pk=silent.pk).update(queued_at=now - timedelta(seconds=40))  # a lease later, still queued
    assert recovery.runs_resume_stale() == [], "its step waits in the queue: wait for a worker to take it"
    SyncRun.objects.filter(pk=silent.pk).update(queued_at=now - timedelta(seconds=settings.Q_CLUSTER["retry"] + 1))
    assert recovery.runs_resume_stale() == [silent.pk], "after the cluster's retry time the queued step is lost"


def test_a_slot_is_re_dated_to_the_latest_moment_its_call_can_have_been_read(make_account):
    """A call answered slower than the fastest one may have been read late: its slot moves with it."""
    from campaigns.models import RateSlot
    from syncer.answer_times import answer_noted
    from syncer.limiter import limiter_for

    acme, other = (limiter_for(make_account(slug=slug, rate_limit="3/60s")) for slug in ("acme", "other"))

    def call(limiter, answer_seconds: float) -> tuple[float, float]:
        """A call that leaves once its slot is taken and is answered `answer_seconds` later, as the client
        reports it (wall-clock times); how far its slot moved, and how late after the take it left at most."""
        permit = limiter.acquire()
        left, left_monotonic = time.time(), time.monotonic()
        wait_until(lambda: time.monotonic() >= left_monotonic + answer_seconds, timeout=answer_seconds + 5,
                   message="the call's answer time passes", poll=0.01)
        permit.sent("POST", left, left + answer_seconds)
        moved = RateSlot.objects.get(pk=permit.slot_id).last_used - permit.taken_at
        return moved, left_monotonic - permit.taken_monotonic + 1e-3

    moved, departure = call(acme, 0.2)
    assert 0.2 - 1e-3 <= moved <= 0.2 + departure, "nothing seen yet: the call may have been read as late as its answer"

    moved, departure = call(other, 0.2)  # another account's calls teach the same fastest answer: 0.2 s
    assert moved <= departure, "on time: re-dated at most to when it left, not to its answer"

    moved, departure = call(acme, 0.7)  # 0.5 s slower: read up to 0.5 s after it left
    assert 0.5 - 1e-3 <= moved <= 0.5 + departure

    assert (answer_noted("GET", 0.01), answer_noted("GET", 0.05)) == (0.0, 0.01), \
        "each kind of call has its own fastest answer"


def test_fast_error_answers_do_not_teach_the_limiter_a_fastest_answer(fake_platform, make_account, fast_sync):
    """A 503 comes back in milliseconds: taken for the platform's fastest sync, it would date every later slot
    at its call's answer, a whole sync's time late (20 s over a reference run at 10/60s and 2 s answers)."""
    from syncer.answer_times import answer_noted

    fake_platform.update(campaigns=20, sync_latency=0.3, sync_fail_rate=0.3, seed=5, rate_limit=None)
    run = sync(make_account(rate_limit="100/2s"))  # a budget, so every call goes through a rate slot
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.server_errors > 0, "the scenario needs fast 503s"
    assert answer_noted("POST", 60.0) >= 0.3, "the fastest sync answer is a success's (0.3 s), not a 503's"


def test_when_the_work_left_is_claimed_elsewhere_one_thread_of_a_drain_waits_for_its_lease(
        fake_platform, account, fast_sync, monkeypatch):
    from syncer import drain
    from syncer.claims import attempts_claim
    from syncer.services import run_drain, run_prepare

    fake_platform.update(campaigns=1)
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    assert run_prepare(run_id=run.pk)
    fast_sync["LEASE_SECONDS"] = 1.5
    [held] = attempts_claim(run_id=run.pk, worker="another-host:1:1")  # a worker that then died
    claims_by_thread: dict[str, int] = {}  # by the drain thread's worker name

    def counted_claim(**kwargs):
        claims_by_thread[kwargs["worker"]] = claims_by_thread.get(kwargs["worker"], 0) + 1
        return attempts_claim(**kwargs)

    monkeypatch.setattr(drain, "attempts_claim", counted_claim)
    assert run_drain(run_id=run.pk, threads=4) == 1, "the attempt is taken over once its lease runs out"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and fake_platform.stats["synced_ids"] == {held.platform_id: 1}
    assert len(claims_by_thread) == 4
    assert sorted(claims_by_thread.values())[:3] == [1, 1, 1], "three threads found nothing and ended"


@pytest.mark.parametrize("rate_limit, concurrency, shape", [
    ("10/60s", 10, (1, 2)),  # a call every 6 s: one drain keeps up even at 2 s a call, with a second thread for a hang
    ("10/6s", 10, (1, 5)),  # 1.7 calls a second: 4 threads carry them at 2 s each, and one for a hang
    ("10/2s", 4, (2, 2)),  # 5 calls a second, more than 4 threads carry at 2 s each
    ("none", 10, (2, 5)),  # no budget: as many calls as the workers carry
])
def test_a_run_is_split_over_drain_tasks_only_when_one_would_not_keep_up_with_its_budget(
        make_account, settings, rate_limit, concurrency, shape):
    from syncer.queueing import fan_out_shape

    settings.SYNC = {**settings.SYNC, "FAN_OUT": 2}
    run = sync_run_start(account=make_account(rate_limit=rate_limit), trigger=Trigger.COMMAND, concurrency=concurrency)
    assert fan_out_shape(SyncRun.objects.select_related("account").get(pk=run.pk)) == shape


def test_starting_many_accounts_at_once_refuses_only_the_busy_one_and_queues_the_rest(make_account):
    from syncer.services import SyncRefused, sync_runs_start
    from tests.queue import queued_tasks

    idle, busy = make_account(slug="idle"), make_account(slug="busy")
    running = sync_run_start(account=busy, trigger=Trigger.COMMAND, triggered_by="test")
    run, refused = sync_runs_start(accounts=[idle, busy], trigger=Trigger.ADMIN, triggered_by="ops", enqueue=True)
    assert isinstance(run, SyncRun) and run.account == idle and run.status == RunStatus.QUEUED
    assert isinstance(refused, SyncRefused) and refused.active_run == running
    assert [task["args"][0] for task in queued_tasks()] == [run.pk], "only the started run goes to the cluster"
    assert SyncRun.objects.filter(account=busy).count() == 1


def test_queueing_many_runs_builds_one_broker_per_queue_not_one_per_task(monkeypatch):
    """django-q2 builds a broker per task unless given one: with Redis, a new connection each time."""
    import functools

    from django_q.conf import Conf

    from syncer import queueing

    built: list[str] = []
    real_get_broker = queueing.get_broker
    counting = functools.lru_cache(maxsize=8)(lambda name: built.append(name) or real_get_broker(name))
    monkeypatch.setattr(queueing, "broker_for", counting)
    for index in range(3):
        queueing.prepare_enqueue(1000 + index)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", f"{Conf.CLUSTER_NAME}-other")
    queueing.prepare_enqueue(2000)
    assert len(built) == 2 and built[0] != built[1], "one per queue name"
