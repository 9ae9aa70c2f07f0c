"""The helpers every whole-run test shares: run a sync with a deadline, and read what it did."""
from __future__ import annotations

import base64
import io
import socket
import threading
from collections.abc import Callable

from django.db import connection

from campaigns.models import AttemptStatus, Campaign, RunStatus, SyncAttempt, SyncRun, Trigger
from syncer.fake_platform import FAKE_SECRET
from syncer.services import run_execute, sync_run_start
from tests.invariants import assert_run_invariants

# The fake's 500 body's stack trace carries a database password too: it must never be copied anywhere.
TRACE_PASSWORD = "Pa55w0rd-prod"


def platform_secrets(platform) -> list[str]:
    config = platform.config
    basic = base64.b64encode(f"{config.email}:{config.password}".encode()).decode()
    return [config.password, basic, FAKE_SECRET, TRACE_PASSWORD]


def check_invariants(run: SyncRun, platform, logs: io.StringIO, *, extra_log_text: str = "") -> None:
    assert_run_invariants(run, secrets=platform_secrets(platform), log_text=logs.getvalue() + extra_log_text)


class Background:
    """Run `target` in a thread; `result()` joins it with a deadline and re-raises what it raised."""

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target,), name=name, daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], object]) -> None:
        try:
            self.value = target()
        except BaseException as error:
            self.error = error
        finally:
            connection.close()

    def result(self, timeout: float) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} still going after {timeout:g} s: a worker is blocked"
        if self.error is not None:
            raise self.error
        return self.value


def sync(account, *, timeout: float = 120.0, **start) -> SyncRun:
    """A whole run in this process, as `manage.py sync_campaigns` does it, with a deadline: a run that never
    ends fails the test. `start` goes to sync_run_start (concurrency, campaign_ids, ...)."""
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test", **start)
    Background(lambda: run_execute(run_id=run.pk), name=f"run-{run.pk}").result(timeout)
    return SyncRun.objects.get(pk=run.pk)


def failures(run: SyncRun) -> str:
    failed = SyncAttempt.objects.filter(run=run, status=AttemptStatus.FAILED)
    rows = failed.values_list("platform_id", "error_category", "message")[:5]
    return f"run #{run.pk} {run.status} {run.error_message!r}; {failed.count()} failed, e.g. {list(rows)}"


def synced_ids(run: SyncRun) -> set[str]:
    succeeded = SyncAttempt.objects.filter(run=run, status=AttemptStatus.SUCCEEDED)
    return set(succeeded.values_list("platform_id", flat=True))


def assert_all_synced(run: SyncRun, platform) -> None:
    expected = set(platform.campaign_ids())
    assert run.status == RunStatus.SUCCEEDED, failures(run)
    assert synced_ids(run) == expected
    assert set(Campaign.objects.filter(account=run.account).values_list("platform_id", flat=True)) == expected
    assert set(platform.stats["synced_ids"]) == expected, "the platform did not confirm every sync"


def finished(run_id: int) -> SyncRun | None:
    run = SyncRun.objects.get(pk=run_id)
    return None if run.is_active else run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
