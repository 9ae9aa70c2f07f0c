"""A drain's waits end when it is stopped (its worker exiting) or its run is cancelled: no call goes after.

Each test makes a drain wait long (for a rate slot, a throttle's Retry-After,
an outage's end), stops or cancels it, and asks the drain to end well
before that wait would have: a wait that ignored its stop fails on the
drain's deadline, and a call sent after it shows on the fake platform.
"""
from __future__ import annotations

import pytest

from campaigns.models import AttemptStatus, RunStatus, SyncAttempt, SyncRun, Trigger
from syncer.services import run_cancel, run_drain, run_prepare, sync_run_start
from syncer.stops import Stop
from tests.conftest import FAKE_PASSWORD
from tests.invariants import assert_run_invariants
from tests.runs import Background
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LONG_WAIT = 120  # seconds each scenario's wait would last; the drain must end in a fraction of it
PROMPTLY = 40  # the deadline for the drain to end once stopped: generous, yet a third of the wait


def prepared_run(account) -> SyncRun:
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    assert run_prepare(run_id=run.pk)
    return run


def drain_in_background(run: SyncRun, *, threads: int, stop: Stop | None = None) -> Background:
    return Background(lambda: run_drain(run_id=run.pk, threads=threads, stop=stop), name=f"drain-{run.pk}")


def assert_claims_went_back(run: SyncRun) -> None:
    """Nothing was synced: every attempt is back in the queue, unclaimed, for the run's next worker."""
    attempts = set(SyncAttempt.objects.filter(run=run).values_list("status", "claimed_by", "started_at"))
    assert attempts == {(AttemptStatus.PENDING, "", None)}, attempts
    assert SyncRun.objects.get(pk=run.pk).status == RunStatus.RUNNING


def assert_counters_tell_the_platform_calls(run: SyncRun, fake_platform) -> None:
    run = SyncRun.objects.get(pk=run.pk)
    platform = fake_platform.stats
    assert run.requests == sum(platform["requests"].values()), "a try made before the stop is counted on the run"


def test_a_cancel_while_a_claim_waits_for_the_budget_ends_the_drain_at_once_and_sends_nothing_more(
        fake_platform, make_account):
    fake_platform.update(campaigns=5, rate_limit=f"2/{LONG_WAIT}s")
    account = make_account(rate_limit=f"2/{LONG_WAIT}s")
    run = prepared_run(account)  # the listing: the first of the window's two calls
    drain = drain_in_background(run, threads=1)
    wait_until(lambda: fake_platform.stats["synced_total"] == 1 and
               run.attempts.filter(status=AttemptStatus.RUNNING).exists(), timeout=30,
               message="one sync goes, and the next claim waits for the window's end")
    assert run_cancel(run_id=run.pk, who="test")
    drain.result(PROMPTLY)
    assert fake_platform.stats["synced_total"] == 1, "no call went after the cancel"
    run = SyncRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.CANCELLED
    assert run.attempts.filter(status=AttemptStatus.CANCELLED).count() == 4
    assert_run_invariants(run, secrets=[FAKE_PASSWORD], log_text="")


def test_a_drain_stopped_while_its_claim_waits_for_the_budget_sends_nothing_and_puts_the_claim_back(
        fake_platform, make_account):
    """A worker exiting (cluster stop, recycle) must not hold its process a window to send a claimed call."""
    fake_platform.update(campaigns=5, rate_limit=f"2/{LONG_WAIT}s")
    run = prepared_run(make_account(rate_limit=f"2/{LONG_WAIT}s"))  # the listing: the first of the window's two
    stop = Stop()
    drain = drain_in_background(run, threads=1, stop=stop)
    waiting = run.attempts.filter(status=AttemptStatus.RUNNING)
    try:
        wait_until(lambda: fake_platform.stats["synced_total"] == 1 and waiting.exists(), timeout=30,
                   message="one sync goes, and the next claim waits for the window's end")
        held = set(waiting.values_list("pk", flat=True))  # one or more: a quick first call makes claims bigger
    finally:
        stop.set()
    drain.result(PROMPTLY)
    assert fake_platform.stats["synced_total"] == 1, "no call went after the stop"
    released = SyncAttempt.objects.filter(pk__in=held)
    assert {(a.status, a.claimed_by, a.started_at) for a in released} == {(AttemptStatus.PENDING, "", None)}
    assert SyncRun.objects.get(pk=run.pk).status == RunStatus.RUNNING, "the rest is the next worker's"


def test_a_stop_during_a_throttles_retry_after_ends_the_drain_and_puts_the_claim_back(fake_platform, make_account,
                                                                                       fast_sync):
    fast_sync["MAX_WAIT"] = 2 * LONG_WAIT  # the client would wait out the platform's whole Retry-After
    fake_platform.update(campaigns=3, rate_limit=f"1/{LONG_WAIT}s")  # the listing spends it: the next call is a 429
    run = prepared_run(make_account())  # no budget of ours: only the platform's 429 paces it
    stop = Stop()
    drain = drain_in_background(run, threads=1, stop=stop)
    wait_until(lambda: fake_platform.stats["rate_limited"] >= 1, timeout=30, message="the platform throttles a sync")
    stop.set()
    drain.result(PROMPTLY)
    assert fake_platform.stats["synced_total"] == 0
    assert_claims_went_back(run)
    assert_counters_tell_the_platform_calls(run, fake_platform)
    assert SyncRun.objects.get(pk=run.pk).rate_limited == fake_platform.stats["rate_limited"]


def test_a_stop_while_calls_are_held_in_an_outage_ends_the_drain_and_puts_the_claims_back(fake_platform, make_account,
                                                                                          fast_sync):
    fast_sync["MAX_OUTAGE"] = 2 * LONG_WAIT  # the breaker would hold and probe this long before giving up
    fake_platform.update(campaigns=5)
    run = prepared_run(make_account())
    fake_platform.update(down=True)
    stop = Stop()
    drain = drain_in_background(run, threads=2, stop=stop)
    wait_until(lambda: fake_platform.stats["calls_while_down"] >= 8, timeout=30,
               message="the breaker opens and probes (5 failures open it)")
    stop.set()
    drain.result(PROMPTLY)
    assert fake_platform.stats["synced_total"] == 0
    assert_claims_went_back(run)
    assert_counters_tell_the_platform_calls(run, fake_platform)
