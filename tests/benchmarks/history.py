"""A long history for issue 14's benchmarks: 100 accounts x 100 campaigns x 100 runs = 1,000,000 attempts.

    DATABASE_URL=sqlite:////tmp/x.sqlite3 python -m tests.benchmarks.history seed
    DATABASE_URL=... METRICS_TOKEN=... python -m tests.benchmarks.history scrape [--requests 30]

`seed` migrates and fills the database once (reused while it holds that much):
each account's runs are three days apart, the oldest 400 days old, so a
prune with the defaults (90d / 365d) deletes 990,000 attempts and the runs
of over a year ago, and keeps each campaign's latest attempt, in its
newest run (an hour old; the first account's still running, half pending).
`scrape` times /metrics with the bearer token, as a Prometheus server
scrapes it, and prints p50/p95 in the status page benchmark's format.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

ACCOUNTS, CAMPAIGNS, RUNS = 100, 100, 100
BUDGET_MS = 300.0


def seed(*, accounts: int, campaigns: int, runs: int) -> None:
    from django.core.management import call_command
    from django.db import connection, transaction

    from campaigns.models import SyncAttempt, SyncRun
    from tests.benchmarks import status_page

    call_command("migrate", verbosity=0)
    if SyncAttempt.objects.count() >= accounts * campaigns * runs:
        print(f"reusing the seeded database ({connection.settings_dict['NAME']})")
        return
    started, rng, now = time.monotonic(), random.Random(14), datetime.now(UTC)
    for index in range(accounts):
        with transaction.atomic():
            account = status_page._account(f"history-{index:03d}", "10/60s")
            ids = status_page._campaigns(account, campaigns, now, rng)
            for number in range(runs):
                newest = number == runs - 1
                created = now - (timedelta(hours=1) if newest else timedelta(days=400 - 3 * number))
                run = status_page._run(account, created=created, campaigns=campaigns, running=newest and index == 0,
                                       rng=rng)
                status_page._attempts(connection, run, ids, rng, running=run.status == "running")
    SyncRun.objects.filter(status="running").update(campaigns_synced=campaigns // 2)
    print(f"seeded {SyncRun.objects.count()} runs and {SyncAttempt.objects.count()} attempts "
          f"in {time.monotonic() - started:.0f} s", flush=True)


def scrape(requests: int) -> int:
    from django.test import Client

    from tests.benchmarks.status_page import measure, p95

    client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['METRICS_TOKEN']}")
    timings = measure(client, "/metrics", requests)
    ok = p95(timings) <= BUDGET_MS
    print(f"\n{'page':<30} {'p50 ms':>8} {'p95 ms':>8}  p95 <= {BUDGET_MS:.0f} ms")
    print(f"{'metrics scrape':<30} {statistics.median(timings):8.1f} {p95(timings):8.1f}  {'yes' if ok else 'NO'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("seed", "scrape"))
    parser.add_argument("--accounts", type=int, default=ACCOUNTS)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    if args.step == "seed":
        seed(accounts=args.accounts, campaigns=CAMPAIGNS, runs=RUNS)
        return 0
    return scrape(args.requests)


if __name__ == "__main__":
    sys.exit(main())
