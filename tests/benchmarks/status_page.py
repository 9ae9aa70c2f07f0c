"""How fast the people's pages answer with a long history: 1,000 runs and 1,000,000 attempts.

    .venv/bin/python -m tests.benchmarks.status_page [--fresh] [--requests 20]

Seeds a database of its own (DATABASE_URL, default sqlite:////tmp/cs-bench.sqlite3;
seeded once, reused until --fresh), then times the status page, /status.json
and the admin changelists with Django's test client as a logged-in superuser,
and prints p50/p95 per page. Exit status 1 when a page's p95 is over budget.
A benchmark, not a test: run it by hand after changing a query or an index.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:////tmp/cs-bench.sqlite3"
BUDGET_MS = 300.0
CATEGORIES = ("server_error", "timeout", "rate_limited", "network", "bad_response")
BAD_FIELD_WARNING = "created_at: not a date the platform could mean (year 1)"  # one in a hundred attempts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--campaigns", type=int, default=1000, help="campaigns per account = attempts per run")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--fresh", action="store_true", help="delete the benchmark database and seed it again")
    return parser.parse_args()


def setup_django(fresh: bool) -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    url = os.environ["DATABASE_URL"]
    if fresh and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite://"))
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


# --- seeding ----------------------------------------------------------------------------

def seed(*, runs: int, campaigns: int) -> None:
    """Two accounts, `campaigns` campaigns each, `runs` runs of one attempt per campaign; the newest is running."""
    from django.core.management import call_command
    from django.db import connection, transaction

    from campaigns.models import Campaign, SyncAttempt, SyncRun

    call_command("migrate", verbosity=0)
    if SyncRun.objects.count() >= runs and SyncAttempt.objects.count() >= runs * campaigns:
        print(f"reusing the seeded database ({connection.settings_dict['NAME']})")
        return
    started = time.monotonic()
    rng = random.Random(7)
    now = datetime.now(UTC)
    with transaction.atomic():
        accounts = [_account(slug, budget) for slug, budget in (("bench-a", "10/60s"), ("bench-b", "none"))]
        ids = {account.pk: _campaigns(account, campaigns, now, rng) for account in accounts}
        for index in range(runs):
            account = accounts[index % 2]
            newest = index >= runs - 2
            run = _run(account, created=now - timedelta(hours=runs - index), campaigns=campaigns,
                       running=newest and account.slug == "bench-a", rng=rng)
            _attempts(connection, run, ids[account.pk], rng, running=run.status == "running")
    SyncRun.objects.filter(status="running").update(campaigns_synced=campaigns // 2)
    print(f"seeded {SyncRun.objects.count()} runs, {SyncAttempt.objects.count()} attempts, "
          f"{Campaign.objects.count()} campaigns in {time.monotonic() - started:.0f} s")


def _account(slug: str, budget: str):
    from campaigns.models import AdAccount

    account = AdAccount(name=slug.title(), slug=slug, base_url="http://127.0.0.1:9", email="bench@example.test",
                        client_id=slug, rate_limit=budget)
    account.set_password("bench")
    account.save()
    return account


def _campaigns(account, count: int, now: datetime, rng: random.Random) -> list[tuple[int, str]]:
    from campaigns.models import Campaign

    Campaign.objects.bulk_create([
        Campaign(account=account, platform_id=f"campaign_{i}", name=f"Campaign {i} <b>bench</b>", status="active",
                 budget=rng.randrange(5, 100) * 100, last_synced_at=now - timedelta(minutes=rng.randrange(600)),
                 last_sync_status="failed" if rng.random() < 0.02 else "succeeded")
        for i in range(1, count + 1)
    ], batch_size=1000)
    return list(Campaign.objects.filter(account=account).values_list("pk", "platform_id"))


def _run(account, *, created: datetime, campaigns: int, running: bool, rng: random.Random):
    from campaigns.models import SyncRun

    failed = 0 if rng.random() < 0.7 else rng.randrange(1, 40)
    run = SyncRun.objects.create(
        account=account, trigger="schedule", status="running" if running else ("partial" if failed else "succeeded"),
        started_at=created, prepared_at=created + timedelta(seconds=5),
        finished_at=None if running else created + timedelta(seconds=rng.randrange(60, 900)),
        campaigns_listed=campaigns, campaigns_synced=campaigns - failed, campaigns_failed=failed,
        requests=campaigns + 12, retries=failed * 2, rate_limited=rng.randrange(3), server_errors=failed,
    )
    SyncRun.objects.filter(pk=run.pk).update(created_at=created)  # auto_now_add ignores the value given
    run.campaigns_failed = failed
    return run


def _attempts(connection, run, campaigns: list[tuple[int, str]], rng: random.Random, *, running: bool) -> None:
    """One raw executemany per run: the ORM would take minutes for a million rows."""
    from campaigns.models import SyncAttempt

    table = SyncAttempt._meta.db_table
    stamp = connection.ops.adapt_datetimefield_value(run.started_at)
    failed_left = run.campaigns_failed
    rows = []
    for position, (campaign_id, platform_id) in enumerate(campaigns):
        if running and position >= len(campaigns) // 2:
            rows.append((run.pk, campaign_id, platform_id, "pending", 0, None, "", "", None, stamp, None, None, ""))
            continue
        failed = failed_left > 0 and rng.random() < 0.1
        failed_left -= failed
        category = rng.choice(CATEGORIES) if failed else ""
        rows.append((run.pk, campaign_id, platform_id, "failed" if failed else "succeeded", 1 + failed,
                     503 if failed else 200, category, f"{category}: the platform gave up" if failed else "",
                     int(rng.lognormvariate(5, 0.5)), stamp, stamp, stamp,
                     BAD_FIELD_WARNING if rng.random() < 0.01 else ""))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (run_id, campaign_id, platform_id, status, tries, http_status, error_category, "
            "message, latency_ms, created_at, started_at, finished_at, claimed_by, warnings) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '', %s)", rows,
        )


# --- timing -------------------------------------------------------------------------------

def pages() -> list[tuple[str, str]]:
    from campaigns.models import SyncRun

    latest = SyncRun.objects.order_by("-id").values_list("pk", flat=True).first()
    return [
        ("status page", "/status/"),
        ("status.json", "/status.json"),
        ("admin: runs", "/admin/campaigns/syncrun/"),
        ("admin: attempts", "/admin/campaigns/syncattempt/"),
        ("admin: campaigns", "/admin/campaigns/campaign/"),
        ("admin: failed attempts", "/admin/campaigns/syncattempt/?status__exact=failed"),
        ("admin: attempts with warnings", "/admin/campaigns/syncattempt/?has_warnings=yes"),
        ("admin: attempts by category", "/admin/campaigns/syncattempt/?error_category__exact=timeout"),
        ("admin: one run's attempts", f"/admin/campaigns/syncattempt/?run__exact={latest}&status__exact=succeeded"),
        ("admin: one run", f"/admin/campaigns/syncrun/{latest}/change/"),
    ]


def measure(client, url: str, requests: int) -> list[float]:
    for _ in range(2):  # warm caches and connections
        _get(client, url)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        _get(client, url)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _get(client, url: str) -> None:
    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")


def p95(timings: list[float]) -> float:
    ordered = sorted(timings)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def main() -> int:
    args = parse_args()
    setup_django(args.fresh)
    seed(runs=args.runs, campaigns=args.campaigns)
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first() or \
        user_model.objects.create_superuser("bench", "bench@example.test", None)
    client = Client()
    client.force_login(user)
    print(f"\n{'page':<30} {'p50 ms':>8} {'p95 ms':>8}  p95 < {BUDGET_MS:.0f} ms")
    slow = []
    for name, url in pages():
        timings = measure(client, url, args.requests)
        ok = p95(timings) < BUDGET_MS
        slow += [] if ok else [name]
        print(f"{name:<30} {statistics.median(timings):8.1f} {p95(timings):8.1f}  {'yes' if ok else 'NO'}")
    print("\nall pages within budget" if not slow else f"\nover budget: {', '.join(slow)}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
