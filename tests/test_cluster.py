"""Runs on a real django-q2 cluster: fan-out, kill and resume, a shared budget, cancel, no overlap, schedules."""
from __future__ import annotations

import pytest
from django.db.models import Count
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import AttemptStatus, Campaign, RunStatus, SyncAttempt, SyncRun, Trigger
from syncer.schedules import schedule_set
from syncer.services import SyncRefused, run_cancel, sync_run_start
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def start_run(account, **kwargs) -> SyncRun:
    return sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test", enqueue=True, **kwargs)


def finished(run_id: int) -> SyncRun | None:
    run = SyncRun.objects.get(pk=run_id)
    return None if run.is_active else run


def assert_every_campaign_once(run: SyncRun, expected: int) -> None:
    attempts = SyncAttempt.objects.filter(run=run)
    assert attempts.count() == expected
    assert not attempts.filter(status__in=[AttemptStatus.PENDING, AttemptStatus.RUNNING]).exists()
    assert attempts.values("platform_id").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    assert Campaign.objects.filter(account=run.account).count() == expected
    assert run.campaigns_listed == expected
    assert run.campaigns_synced == attempts.filter(status=AttemptStatus.SUCCEEDED).count()
    assert run.campaigns_failed == attempts.filter(status=AttemptStatus.FAILED).count()


def test_a_real_cluster_runs_a_queued_sync_to_the_end(qcluster, fake_platform, make_account):
    account = make_account()
    run = start_run(account)
    qcluster.start()
    run = wait_until(lambda: finished(run.pk), timeout=60, message="the cluster finishes the run")
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert_every_campaign_once(run, 100)
    assert fake_platform.stats["synced_ids"] and len(fake_platform.stats["synced_ids"]) == 100


def run_under_way(qcluster, fake_platform, make_account):
    """60 slow campaigns, a first cluster that has synced some of them: (run, cluster)."""
    fake_platform.update(campaigns=60, sync_latency=0.3)
    run = start_run(make_account(), concurrency=4)
    cluster = qcluster.start()
    wait_until(lambda: SyncRun.objects.get(pk=run.pk).campaigns_synced >= 10, timeout=60,
               message="the first cluster syncs some campaigns")
    return run, cluster


def test_a_killed_cluster_resumes_and_accounts_for_every_campaign_once(qcluster, fake_platform, make_account):
    run, first = run_under_way(qcluster, fake_platform, make_account)
    first.kill()
    killed_at = SyncRun.objects.get(pk=run.pk)
    assert killed_at.status == RunStatus.RUNNING and killed_at.campaigns_synced < 60

    qcluster.start()
    run = wait_until(lambda: finished(run.pk), timeout=90, message="a new cluster resumes and finishes the run")
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert_every_campaign_once(run, 60)


def test_a_cluster_stopped_with_sigterm_finishes_its_calls_in_flight_and_a_new_one_resumes(
        qcluster, fake_platform, make_account):
    run, first = run_under_way(qcluster, fake_platform, make_account)
    first.stop()
    assert first.process.returncode is not None
    assert not SyncAttempt.objects.filter(run=run, status=AttemptStatus.RUNNING).exists(), \
        "a clean stop leaves no attempt half-done"
    assert SyncRun.objects.get(pk=run.pk).status == RunStatus.RUNNING

    qcluster.start()
    run = wait_until(lambda: finished(run.pk), timeout=90, message="a new cluster resumes and finishes the run")
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert_every_campaign_once(run, 60)


def test_two_clusters_on_one_account_share_its_budget_and_see_no_429(qcluster, fake_platform, make_account):
    fake_platform.update(campaigns=40, sync_latency=0.05, rate_limit="10/2s")
    account = make_account(rate_limit="10/2s")
    run = start_run(account, concurrency=4)
    qcluster.start(SYNC_FAN_OUT="4")
    qcluster.start(SYNC_FAN_OUT="4")
    run = wait_until(lambda: finished(run.pk), timeout=90, message="two clusters finish the run")
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert_every_campaign_once(run, 40)
    stats = fake_platform.stats
    assert stats["rate_limited"] == 0
    assert stats["max_calls_in_any_window"][account.client_id] <= 10
    workers = {claim.rsplit(":", 1)[0].split("/")[0] for claim in
               SyncAttempt.objects.filter(run=run).values_list("claimed_by", flat=True)}
    assert len({w.split(":")[1] for w in workers}) >= 2, f"one process did all the work: {workers}"


def test_a_cancelled_run_takes_no_new_work_within_seconds(qcluster, fake_platform, make_account):
    fake_platform.update(sync_latency=0.3)
    account = make_account()
    run = start_run(account, concurrency=2)
    qcluster.start()
    wait_until(lambda: SyncRun.objects.get(pk=run.pk).campaigns_synced >= 3, timeout=60,
               message="the run is under way")
    assert run_cancel(run_id=run.pk, who="test")
    in_flight = SyncAttempt.objects.filter(run=run, status=AttemptStatus.RUNNING)
    wait_until(lambda: not in_flight.exists(), timeout=30, message="the calls in flight end")
    synced = SyncAttempt.objects.filter(run=run, status=AttemptStatus.SUCCEEDED).count()
    started_after_cancel = SyncAttempt.objects.filter(run=run, started_at__gt=timezone.now()).count()
    run = SyncRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.CANCELLED
    assert started_after_cancel == 0
    assert SyncAttempt.objects.filter(run=run, status=AttemptStatus.CANCELLED).count() == 100 - synced - \
        SyncAttempt.objects.filter(run=run, status=AttemptStatus.FAILED).count()
    assert run.campaigns_synced == synced < 100


def test_a_run_cancelled_from_another_process_while_its_claim_waits_for_the_budget_sends_nothing_more(
        qcluster, fake_platform, make_account):
    """The cancel comes from this process, the drain is the cluster's: its heartbeat sees the cancel."""
    window = 120  # the claimed call would wait this long for its slot; the drain must end well within it
    fake_platform.update(campaigns=5, rate_limit=f"2/{window}s")
    run = start_run(make_account(rate_limit=f"2/{window}s"), concurrency=1)
    qcluster.start()
    waiting = SyncAttempt.objects.filter(run=run, status=AttemptStatus.RUNNING)
    wait_until(lambda: fake_platform.stats["synced_total"] == 1 and waiting.exists(), timeout=60,
               message="the listing and one sync go, and the next claim waits for the window's end")
    assert run_cancel(run_id=run.pk, who="test")
    open_attempts = SyncAttempt.objects.filter(run=run, status__in=[AttemptStatus.PENDING, AttemptStatus.RUNNING])
    wait_until(lambda: not open_attempts.exists(), timeout=window / 3,
               message="the cluster's drain stops waiting, and its end closes the claim it put back")
    assert fake_platform.stats["synced_total"] == 1, "no call went after the cancel"
    assert SyncAttempt.objects.filter(run=run, status=AttemptStatus.CANCELLED).count() == 4
    assert SyncRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_a_second_run_for_a_busy_account_is_refused(make_account):
    account = make_account()
    first = start_run(account)
    with pytest.raises(SyncRefused, match=f"run #{first.pk} is queued"):
        start_run(account)
    assert SyncRun.objects.filter(account=account).count() == 1


def test_a_schedule_fires_a_run_on_the_cluster(qcluster, fake_platform, make_account):
    account = make_account()
    schedule_set(account=account, cron="* * * * *")
    # Due now, and on this test's own queue (django-q2 gives queue-less schedules to the default queue only).
    Schedule.objects.filter(name=f"sync-{account.slug}").update(next_run=timezone.now(), cluster=qcluster.queue)
    qcluster.start()
    run = wait_until(lambda: SyncRun.objects.filter(account=account, trigger=Trigger.SCHEDULE).first(),
                     timeout=70, message="the scheduler starts a run (django-q2 checks schedules every 30 s)")
    run = wait_until(lambda: finished(run.pk), timeout=60, message="the scheduled run finishes")
    assert run.status == RunStatus.SUCCEEDED
