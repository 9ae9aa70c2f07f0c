"""Create the fleet's accounts and queue one run each on the cluster, as the admin or a schedule would.

    DATABASE_URL=... python -m tests.benchmarks.fleet_setup --accounts 100 \
        --url http://127.0.0.1:PORT --rate-limit 10/6s

Run by the benchmark in a subprocess with the scenario's environment (its
database, broker and queue name). Prints one JSON line: the run ids.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate-limit", required=True)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from campaigns.models import AdAccount, Trigger
    from syncer.services import sync_run_start

    accounts = []
    for index in range(1, args.accounts + 1):
        slug = f"fleet-{index:03d}"
        account = AdAccount(name=f"Fleet {index:03d}", slug=slug, base_url=args.url, email="demo@adplatform.test",
                            client_id=f"bench-{slug}", rate_limit=args.rate_limit)
        account.set_password("demo-password")
        account.save()
        accounts.append(account)
    started = time.monotonic()
    runs = [sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="benchmark",
                           concurrency=args.concurrency, enqueue=True).pk
            for account in accounts]
    print(json.dumps({"runs": runs, "enqueue_seconds": round(time.monotonic() - started, 3)}), flush=True)


if __name__ == "__main__":
    main()
