"""`manage.py sync_campaigns`: in-process with call_command, and as a real process for exit codes and output."""
from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from campaigns.models import AttemptStatus, RunStatus, SyncRun, Trigger
from syncer.queueing import fan_out_shape
from syncer.services import sync_run_start
from tests import cluster
from tests.conftest import FAKE_EMAIL, FAKE_PASSWORD
from tests.queue import queued_tasks, set_schedules

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
# A log record as the text formatter writes it; any other stderr line is the command's own.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ run=\S+ ")


# --- helpers --------------------------------------------------------------------------

def sync_command(*args: str) -> tuple[int, str]:
    """Run the command in-process; return (exit code, stdout)."""
    out = io.StringIO()
    try:
        call_command("sync_campaigns", *args, stdout=out, stderr=io.StringIO())
    except CommandError as error:
        return error.returncode, out.getvalue() + f"\nCommandError: {error}"
    return 0, out.getvalue()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the probe is closed


@pytest.fixture
def run_manage(fake_platform, transactional_db):
    """Run `manage.py ...` in a real process on the test database, pointed at the fake platform."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        environment = {
            **os.environ, "DATABASE_URL": cluster.test_database_url(), "AD_PLATFORM_URL": fake_platform.url,
            "AD_PLATFORM_EMAIL": FAKE_EMAIL, "AD_PLATFORM_PASSWORD": FAKE_PASSWORD,
            "AD_PLATFORM_CLIENT_ID": "client-cli", "AD_PLATFORM_RATE_LIMIT": "none", "SYNC_CONCURRENCY": "10",
            "SYNC_REQUEST_TIMEOUT": "0.5", "SYNC_CONNECT_TIMEOUT": "0.5", "SYNC_MAX_ATTEMPTS": "3",
            "SYNC_MAX_WAIT": "5", "SYNC_BACKOFF_BASE": "0.05", "SYNC_BACKOFF_CAP": "0.2", "LOG_LEVEL": "info",
            "LOG_FORMAT": "text", **env,
        }
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment,
                              capture_output=True, text=True, timeout=60, check=False)

    return run


def assert_one_clear_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, and exactly one stderr line that is not a log record; it says what to fix."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- exit codes and output of a real process --------------------------------------------


def test_exit_0_and_a_summary_when_every_campaign_synced(run_manage, fake_platform):
    result = run_manage("sync_campaigns")
    assert result.returncode == 0, result.stderr
    run = SyncRun.objects.get()
    assert run.status == RunStatus.SUCCEEDED and run.campaigns_synced == 100
    assert f"Run #{run.pk} succeeded for account 'default'" in result.stdout
    assert "campaigns: 100 listed, 100 synced, 0 failed" in result.stdout
    assert re.search(r"calls: \d+ requests, 1 pages, 0 retries, 0 429s", result.stdout)
    assert "Traceback" not in result.stderr


def test_progress_is_plain_lines_when_stdout_is_not_a_terminal(run_manage):
    result = run_manage("sync_campaigns")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "[#" not in result.stdout and "[." not in result.stdout
    progress = [line for line in result.stdout.splitlines() if re.match(r"run #\d+ \w+: ", line)]
    assert progress and re.search(r"100/100 done, 100 synced, 0 failed", progress[-1])


def test_exit_1_with_a_retry_failed_hint_when_some_campaigns_failed(run_manage, fake_platform):
    fake_platform.update(not_found_rate=0.1)
    result = run_manage("sync_campaigns")
    run = SyncRun.objects.get()
    assert result.returncode == 1, result.stderr
    assert run.status == RunStatus.PARTIAL and run.campaigns_failed == len(fake_platform.deleted_ids())
    assert f"--retry-failed {run.pk}" in result.stderr
    assert "failed by category: client_error:" in result.stdout
    assert "Traceback" not in result.stderr


def test_wrong_credentials_exit_2_with_one_clear_line(run_manage):
    result = run_manage("sync_campaigns", AD_PLATFORM_PASSWORD="not-the-password")
    line = assert_one_clear_line(result, "email or password", "AD_PLATFORM_PASSWORD")
    assert "not-the-password" not in result.stdout + result.stderr
    assert line.startswith("CommandError:")


def test_an_unreachable_platform_exits_2_with_one_clear_line(run_manage):
    url = closed_port_url()
    assert_one_clear_line(run_manage("sync_campaigns", AD_PLATFORM_URL=url), "could not reach the platform", url)


@pytest.mark.parametrize(("variable", "value"), [
    ("AD_PLATFORM_RATE_LIMIT", "abc"),
    ("SYNC_CONCURRENCY", "-3"),
    ("SYNC_CONCURRENCY", "x"),
    ("LOG_FORMAT", "xml"),
])
def test_a_bad_setting_exits_2_with_one_line_naming_it(run_manage, variable, value):
    result = run_manage("sync_campaigns", **{variable: value})
    assert_one_clear_line(result, variable)
    assert SyncRun.objects.count() == 0


def test_a_missing_password_exits_2_with_one_line_naming_it(run_manage, fake_platform):
    assert_one_clear_line(run_manage("sync_campaigns", AD_PLATFORM_PASSWORD=""), "AD_PLATFORM_PASSWORD")
    assert fake_platform.stats["requests"] == {}  # nothing was even tried


def test_a_concurrency_below_1_exits_2(run_manage):
    assert_one_clear_line(run_manage("sync_campaigns", "--concurrency", "0"), "--concurrency")


# --- behaviour, in-process ----------------------------------------------------------------


def test_campaign_option_is_repeatable_and_syncs_only_those(account, fake_platform):
    code, out = sync_command("--account", account.slug, "--campaign", "campaign_3", "--campaign", "campaign_7")
    assert code == 0, out
    run = SyncRun.objects.get()
    assert set(run.attempts.values_list("platform_id", flat=True)) == {"campaign_3", "campaign_7"}
    assert set(fake_platform.stats["synced_ids"]) == {"campaign_3", "campaign_7"}


def test_retry_failed_re_drives_only_the_failed_of_the_latest_or_the_given_run(account, fake_platform):
    fake_platform.update(campaigns=40, not_found_rate=0.1)
    code, _ = sync_command("--account", account.slug)
    first = SyncRun.objects.get()
    first_failed = set(first.attempts.filter(status=AttemptStatus.FAILED).values_list("platform_id", flat=True))
    fake_platform.update(not_found_rate=0.3)  # deletes a superset: the second run fails on more
    code, _ = sync_command("--account", account.slug)
    second = SyncRun.objects.first()
    second_failed = set(second.attempts.filter(status=AttemptStatus.FAILED).values_list("platform_id", flat=True))
    assert code == 1 and first_failed and first_failed < second_failed

    fake_platform.update(not_found_rate=0.0)
    fake_platform.reset_stats()
    code, out = sync_command("--account", account.slug, "--retry-failed")
    assert code == 0, out
    latest_retry = SyncRun.objects.first()
    assert latest_retry.retry_of_id == second.pk
    assert set(latest_retry.attempts.values_list("platform_id", flat=True)) == second_failed

    code, out = sync_command("--account", account.slug, "--retry-failed", str(first.pk))
    assert code == 0, out
    explicit_retry = SyncRun.objects.first()
    assert explicit_retry.retry_of_id == first.pk
    assert set(explicit_retry.attempts.values_list("platform_id", flat=True)) == first_failed
    assert fake_platform.stats["synced_ids"] == {
        platform_id: (2 if platform_id in first_failed else 1) for platform_id in second_failed
    }


def test_retry_failed_of_a_run_without_failures_is_refused(account):
    assert sync_command("--account", account.slug)[0] == 0
    code, out = sync_command("--account", account.slug, "--retry-failed")
    assert code == 2 and "no failed campaigns" in out


def test_async_prints_the_run_id_and_queues_a_task(account):
    code, out = sync_command("--account", account.slug, "--async")
    assert code == 0, out
    run = SyncRun.objects.get()
    assert run.status == RunStatus.QUEUED
    assert f"Run #{run.pk} queued" in out
    [task] = queued_tasks()
    assert task["func"] == "syncer.tasks.run_prepare_task"
    assert tuple(task["args"]) == (run.pk, *fan_out_shape(run)), "the worker need not read the run to split it"


def test_a_second_async_while_one_is_queued_is_refused(account):
    assert sync_command("--account", account.slug, "--async")[0] == 0
    queued = SyncRun.objects.get()
    code, out = sync_command("--account", account.slug, "--async")
    assert code == 2
    assert f"already syncing (run #{queued.pk} is queued)" in out
    assert SyncRun.objects.count() == 1 and len(queued_tasks()) == 1


def test_all_accounts_async_queues_every_account_in_one_go_and_skips_the_busy_one(make_account):
    _, busy, _ = (make_account(slug=slug) for slug in ("alpha", "bravo", "charlie"))
    running = sync_run_start(account=busy, trigger=Trigger.ADMIN, triggered_by="ops")
    code, out = sync_command("--all-accounts", "--async")
    assert code == 0, out
    started = {run.account.slug: run for run in SyncRun.objects.exclude(pk=running.pk)}
    assert set(started) == {"alpha", "charlie"}
    assert all(run.status == RunStatus.QUEUED for run in started.values())
    assert f"Run #{started['alpha'].pk} queued for account 'alpha'" in out
    assert f"Skipped 'bravo': account 'bravo' is already syncing (run #{running.pk} is queued)" in out
    assert sorted(task["args"][0] for task in queued_tasks()) == sorted(run.pk for run in started.values())


@pytest.mark.parametrize("args", [("--all-accounts",), ("--all-accounts", "--async", "--account", "acme"),
                                  ("--all-accounts", "--async", "--wait")])
def test_all_accounts_without_async_or_with_one_account_options_exits_2_saying_why(account, args):
    code, out = sync_command(*args)
    assert code == 2 and "--all-accounts goes with --async" in out, out
    assert not SyncRun.objects.exists() and not queued_tasks()


def test_schedule_creates_then_updates_one_periodic_sync(account):
    code, out = sync_command("--account", account.slug, "--schedule", "*/30 * * * *")
    assert code == 0 and "*/30 * * * *" in out
    schedule = set_schedules().get()
    assert (schedule.name, schedule.cron, schedule.schedule_type) == (f"sync-{account.slug}", "*/30 * * * *",
                                                                      Schedule.CRON)
    assert schedule.func == "syncer.tasks.scheduled_sync_task" and schedule.next_run is not None
    assert sync_command("--account", account.slug, "--schedule", "0 * * * *")[0] == 0
    assert list(set_schedules().values_list("cron", flat=True)) == ["0 * * * *"]
    assert sync_command("--account", account.slug, "--unschedule")[0] == 0
    assert not set_schedules().exists()


def test_a_bad_cron_exits_2_and_schedules_nothing(account):
    code, out = sync_command("--account", account.slug, "--schedule", "every half hour")
    assert code == 2 and "cron expression" in out
    assert not set_schedules().exists()


def test_an_unknown_account_exits_2_naming_the_known_ones(account):
    code, out = sync_command("--account", "nope")
    assert code == 2 and "'nope'" in out and account.slug in out
