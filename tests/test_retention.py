"""History retention: `prune_history`, its service and its daily schedule (syncer/retention.py)."""
from __future__ import annotations

import io
import pydoc
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule, Task

from campaigns.models import SyncAttempt, SyncRun
from syncer.retention import history_prune
from syncer.schedules import PRUNE_HISTORY_TASK
from tests.invariants import assert_run_invariants
from tests.people_fixtures import make_active_run, make_campaigns, make_finished_run, make_offline_account

pytestmark = pytest.mark.django_db

DAYS_90, DAYS_365 = timedelta(days=90), timedelta(days=365)


def aged(run: SyncRun, days: float) -> SyncRun:
    """Date the run and its attempts `days` ago (auto_now_add dates them now)."""
    when = timezone.now() - timedelta(days=days)
    SyncRun.objects.filter(pk=run.pk).update(created_at=when)
    SyncAttempt.objects.filter(run=run).update(created_at=when)
    return run


def failed_task(days: float, *, success: bool = False) -> Task:
    when = timezone.now() - timedelta(days=days)
    return Task.objects.create(id=f"task-{days}-{success}", name="t", func="syncer.tasks.run_drain_task",
                               started=when, stopped=when, success=success)


@pytest.fixture
def history():
    """Campaigns 1-3 in runs of 400, 380 and 100 days ago; campaign 4 only in the run of 380 days ago."""
    account = make_offline_account()
    campaigns = make_campaigns(account, 4)
    return {
        "oldest": aged(make_finished_run(account, campaigns[:3]), 400),
        "old": aged(make_finished_run(account, campaigns), 380),
        "recent": aged(make_finished_run(account, campaigns[:3]), 100),
        "campaigns": campaigns,
    }


def test_old_attempts_go_but_each_campaigns_latest_stays_and_so_does_its_run(history):
    result = history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365)
    assert (result.attempts, result.runs, result.tasks) == (6, 1, 0)
    kept = set(SyncAttempt.objects.values_list("run_id", "platform_id"))
    latest = {(history["recent"].pk, f"campaign_{i}") for i in (1, 2, 3)} | {(history["old"].pk, "campaign_4")}
    assert kept == latest
    # The run of 400 days holds no campaign's latest attempt: it went. The one of 380 days holds campaign 4's.
    assert set(SyncRun.objects.values_list("pk", flat=True)) == {history["old"].pk, history["recent"].pk}


def test_a_kept_run_whose_attempts_were_pruned_keeps_its_counters_and_says_so(history):
    history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365)
    old = SyncRun.objects.get(pk=history["old"].pk)
    assert old.attempts_pruned_at is not None
    assert (old.campaigns_listed, old.attempts.count()) == (4, 1)
    assert SyncRun.objects.get(pk=history["recent"].pk).attempts_pruned_at is None  # nothing of it went


def test_an_attempt_without_a_campaign_goes_when_old(history):
    run = history["recent"]
    SyncAttempt.objects.create(run=run, campaign=None, platform_id="row 7 of page 1", status="failed")
    aged(run, 100)
    history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365)
    assert not SyncAttempt.objects.filter(campaign=None).exists()


def test_an_active_run_is_untouched_however_old():
    account = make_offline_account()
    campaigns = make_campaigns(account, 3)
    active = aged(make_active_run(account, campaigns, done=1), 400)
    make_finished_run(account, campaigns)  # newer attempts: the active run's would otherwise be prunable
    result = history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365)
    assert (result.attempts, result.runs) == (0, 0)
    assert SyncRun.objects.filter(pk=active.pk, attempts_pruned_at=None).exists()
    assert active.attempts.count() == 3


def test_more_rows_than_a_chunk_go_in_several_short_deletes():
    account = make_offline_account()
    campaigns = make_campaigns(account, 25)
    for days in (300, 200, 100):
        aged(make_finished_run(account, campaigns), days)
    make_finished_run(account, campaigns)
    with CaptureQueriesContext(connection) as queries:
        result = history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365, chunk_size=10)
    assert result.attempts == 75 and SyncAttempt.objects.count() == 25
    table = SyncAttempt._meta.db_table
    deletes = [query["sql"] for query in queries.captured_queries
               if query["sql"].startswith("DELETE") and table in query["sql"].split("WHERE")[0]]
    assert len(deletes) == 8, deletes  # 75 rows in chunks of at most 10
    commits = sum(1 for query in queries.captured_queries if query["sql"].upper().startswith(("COMMIT", "RELEASE")))
    assert commits >= 8  # one transaction per chunk


def test_a_dry_run_counts_what_would_go_and_deletes_nothing(history):
    failed_task(100)
    before = (SyncAttempt.objects.count(), SyncRun.objects.count(), Task.objects.count())
    result = history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365, dry_run=True)
    assert (result.attempts, result.runs, result.tasks, result.dry_run) == (6, 1, 1, True)
    assert (SyncAttempt.objects.count(), SyncRun.objects.count(), Task.objects.count()) == before


def test_old_failed_task_records_go_and_recent_or_successful_ones_stay():
    failed_task(100), failed_task(10), failed_task(100, success=True)
    result = history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365)
    assert result.tasks == 1
    assert sorted(Task.objects.values_list("success", flat=True)) == [False, True]


def prune_command(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_history", *args, stdout=out)
    return out.getvalue().strip()


def test_the_command_says_in_one_line_how_many_attempts_runs_and_task_records_went(history):
    failed_task(100)
    assert prune_command("--older-than", "90d", "--runs-older-than", "365d", "--dry-run") == \
        "would prune 6 attempts, 1 run and 1 failed task record"
    assert SyncAttempt.objects.count() == 10
    assert prune_command("--older-than", "90d", "--runs-older-than", "365d") == \
        "pruned 6 attempts, 1 run and 1 failed task record"
    assert prune_command() == "pruned 0 attempts, 0 runs and 0 failed task records"  # the settings' 90d / 365d


def test_the_limits_come_from_the_settings_by_default(history, settings):
    settings.SYNC = {**settings.SYNC, "PRUNE_ATTEMPTS_AFTER": timedelta(days=390),
                     "PRUNE_RUNS_AFTER": timedelta(days=390)}
    assert prune_command() == "pruned 3 attempts, 1 run and 0 failed task records"


@pytest.mark.parametrize("args", [("--older-than", "90"), ("--older-than", "9x"), ("--older-than", "0d"),
                                  ("--older-than", "5w"), ("--runs-older-than", "a year")])
def test_a_bad_duration_is_one_line_saying_what_is_expected(args, history):
    with pytest.raises(CommandError) as raised:
        prune_command(*args)
    message = str(raised.value)
    assert message.startswith(args[0]) and "like 90d, 12h or 3600s" in message and "\n" not in message
    assert raised.value.returncode == 2
    assert SyncAttempt.objects.count() == 10


def test_runs_kept_less_long_than_attempts_is_refused_in_one_line(history):
    with pytest.raises(CommandError, match=r"^--runs-older-than: runs must be kept at least as long as attempts"):
        prune_command("--older-than", "90d", "--runs-older-than", "30d")
    assert SyncRun.objects.count() == 3


def test_every_installation_gets_a_daily_prune_schedule_that_runs_the_service(history):
    schedule = Schedule.objects.get(func=PRUNE_HISTORY_TASK)  # made by migrate
    assert (schedule.schedule_type, schedule.repeats) == (Schedule.DAILY, -1)
    assert schedule.next_run > timezone.now()
    task = pydoc.locate(schedule.func)  # what the cluster will call
    assert task() == "pruned 6 attempts, 1 run and 0 failed task records"
    assert SyncAttempt.objects.count() == 4


def test_a_pruned_run_still_holds_the_invariants_its_counters_count_more_than_its_attempts(history):
    history_prune(attempts_older_than=DAYS_90, runs_older_than=DAYS_365)
    run = SyncRun.objects.get(pk=history["old"].pk)
    assert_run_invariants(run, secrets=[], log_text="")
    SyncRun.objects.filter(pk=run.pk).update(campaigns_synced=0)  # below its one remaining synced attempt
    with pytest.raises(AssertionError, match="below its remaining attempts"):
        assert_run_invariants(run, secrets=[], log_text="")
