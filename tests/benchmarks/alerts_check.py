"""How long the minute's alert evaluation takes over many accounts with a history.

    .venv/bin/python -m tests.benchmarks.alerts_check [--accounts 1000] [--runs 20]

Seeds a database of its own (DATABASE_URL, default sqlite:////tmp/cs-bench-alerts.sqlite3, made afresh
each time): accounts with `--runs` ended runs each, every other account's latest one failed. Then times
the first evaluation (which opens an alert per failed account) and a steady one (nothing changes), and
prints the time and the number of queries of each. No message is sent (no EMAIL_URL, no webhook).
"""
from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:////tmp/cs-bench-alerts.sqlite3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20, help="ended runs per account")
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    for name in ("EMAIL_URL", "ALERT_WEBHOOK_URL"):
        os.environ.pop(name, None)
    if os.environ["DATABASE_URL"].startswith("sqlite:///"):
        Path(os.environ["DATABASE_URL"].removeprefix("sqlite://")).unlink(missing_ok=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    seed(args.accounts, args.runs)
    timed("first (opens an alert per failed account)")
    timed("steady (nothing changes)")


def seed(accounts: int, runs: int) -> None:
    from django.utils import timezone

    from campaigns.models import AdAccount, RunStatus, SyncRun, Trigger

    now = timezone.now()
    made = AdAccount.objects.bulk_create([AdAccount(name=f"Account {i}", slug=f"account-{i}", base_url="http://x",
                                                    email="e", client_id=f"c{i}") for i in range(accounts)])
    SyncRun.objects.bulk_create([
        SyncRun(account=account, trigger=Trigger.SCHEDULE, started_at=now - timedelta(minutes=runs - j + 1),
                finished_at=now - timedelta(minutes=runs - j),
                status=RunStatus.FAILED if j == runs - 1 and i % 2 else RunStatus.SUCCEEDED)
        for i, account in enumerate(made) for j in range(runs)], batch_size=5000)


def timed(label: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from syncer.alerting.evaluate import alerts_evaluate

    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        evaluation = alerts_evaluate()
        seconds = time.perf_counter() - start
    print(f"{label}: {seconds * 1000:.0f} ms, {len(queries)} queries, {len(evaluation.opened)} opened")


if __name__ == "__main__":
    main()
