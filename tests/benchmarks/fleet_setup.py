"""Create the fleet's accounts and queue one run each on the cluster, as the admin's "Sync now" on all of them does.

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
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from campaigns.models import AdAccount, Trigger
    from syncer.services import sync_runs_start

    accounts = []
    for index in range(1, args.accounts + 1):
        slug = f"fleet-{index:03d}"
        account = AdAccount(name=f"Fleet {index:03d}", slug=slug, base_url=args.url, email="demo@adplatform.test",
                            client_id=f"bench-{slug}", rate_limit=args.rate_limit)
        account.set_password("demo-password")
        account.save()
        accounts.append(account)
    started = time.monotonic()
    runs = [run.pk for run in sync_runs_start(accounts=accounts, trigger=Trigger.ADMIN, triggered_by="benchmark",
                                              enqueue=True)]
    print(json.dumps({"runs": runs, "enqueue_seconds": round(time.monotonic() - started, 3)}), flush=True)


if __name__ == "__main__":
    main()
