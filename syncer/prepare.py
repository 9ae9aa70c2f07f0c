"""The first step of a run: list every campaign (syncer/listing.py), store it, queue one attempt each."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import (
    AdAccount,
    AttemptStatus,
    Campaign,
    ListingMode,
    RunStatus,
    SyncAttempt,
    SyncRun,
    SyncStatus,
)
from syncer import sql
from syncer.calls import CallStats
from syncer.client import BAD_RESPONSE, CLIENT_ERROR, PlatformClient
from syncer.connections import connection_release
from syncer.listing import Listing, listing_read
from syncer.rows import CampaignRow

log = logging.getLogger(__name__)

MESSAGE_LENGTH = 500
BATCH_SIZE = 500


def listing_fetch(*, run: SyncRun, client: PlatformClient, page_size: int, stats: CallStats) -> Listing:
    """The run's listing (syncer/listing.py); it stops early once the run is no longer running."""
    wanted = None if run.listing == ListingMode.REFRESH else _wanted(run)  # a refresh reads every page
    return listing_read(client=client, page_size=page_size, stats=stats, max_pages=settings.SYNC["MAX_PAGES"],
                        keep_going=lambda: _still_running(run.pk), wanted=wanted)


def _still_running(run_id: int) -> bool:
    """Asked between pages: a run cancelled meanwhile lists no further."""
    try:
        return SyncRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).exists()
    except DatabaseError:
        connection.close()
        return True  # cannot tell now: attempts_queue asks again in the transaction that queues
    finally:
        connection_release()  # the listing waits on the platform, not the database


def campaigns_upsert(*, account_id: int, rows: list[CampaignRow]) -> dict[str, int]:
    """Insert or update campaigns by (account, platform id); return platform id -> pk.

    Plain SQL (syncer/sql.py): bulk_create spent more CPU building these
    statements than everything else a fleet does to start.
    """
    now = sql.db_time(timezone.now())
    for batch in batches(rows):
        values = [_campaign(account_id, row, now) for row in batch]
        refreshed = [*batch[0].as_fields(), "updated_at"]  # what the platform lists; the rest is ours
        sql.insert(Campaign, values, on_conflict="(account_id, platform_id) DO UPDATE SET " + ", ".join(
            f"{name} = excluded.{name}" for name in map(connection.ops.quote_name, refreshed)))
    return _all_ids(account_id)


def _campaign(account_id: int, row: CampaignRow, now) -> dict:
    fields = {name: sql.db_time(value) if isinstance(value, datetime) else value
              for name, value in row.as_fields().items()}
    return {"account_id": account_id, "platform_id": row.platform_id, **fields, "updated_at": now,
            "first_seen_at": now, "last_sync_status": SyncStatus.NEVER}


def batches(items: Iterable, size: int = BATCH_SIZE) -> Iterator[list]:
    """A batch at a time: a run of 100,000 built all its rows at once, 100 MB and more."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _all_ids(account_id: int) -> dict[str, int]:
    return dict(Campaign.objects.filter(account_id=account_id).values_list("platform_id", "pk"))


def attempts_queue(*, run: SyncRun, listing: Listing) -> int:
    """Store the listed campaigns; create the run's attempts once, only while it runs; how many wait to sync.

    A second delivery of the same step adds nothing. The run's status is
    read in the transaction that inserts the attempts (the row locked on
    PostgreSQL; on SQLite the IMMEDIATE transaction holds other writers
    off), so a cancel either comes first and nothing is queued, or comes
    after and cancels what was: a run that has ended keeps no open attempt.
    A keep-fresh run that lists (ListingMode.REFRESH) stores every campaign
    listed (new ones are synced by the cycles after it, active ones first)
    and syncs only those it asks for.
    """
    wanted = _wanted(run)
    if run.listing == ListingMode.REFRESH:
        ids = campaigns_upsert(account_id=run.account_id, rows=list(listing.good.values()))
        wanted = wanted or set()
        good = [listing.good[key] for key in run.campaign_filter or () if key in listing.good]  # in its order
    else:
        good = [row for row in listing.good.values() if wanted is None or row.platform_id in wanted]
        ids = campaigns_upsert(account_id=run.account_id, rows=good)
    listed_all = run.listing == ListingMode.REFRESH or run.campaign_filter is None
    attempts = _attempts(run, listing, good, wanted, ids, sql.db_time(timezone.now()))
    return _queue(run, attempts, listed_at=timezone.now() if listed_all and not listing.stopped else None,
                  outcome=lambda warnings: _listing_outcome(listing, good, wanted, warnings, listed_all=listed_all))


def attempts_queue_stored(*, run: SyncRun) -> int:
    """A keep-fresh run without a listing (ListingMode.SKIP): one attempt per campaign it asks for, as stored,
    in the order it asks (the most overdue first: attempts are claimed in id order)."""
    wanted = list(run.campaign_filter or [])
    ids = dict(Campaign.objects.filter(account_id=run.account_id, platform_id__in=wanted)
               .values_list("platform_id", "pk"))
    now = sql.db_time(timezone.now())
    attempts = [_attempt(run, ids[key], key, now) if key in ids else
                _failed(run, key, None, CLIENT_ERROR, "no longer stored: it may have been deleted", now)
                for key in wanted]
    return _queue(run, attempts, listed_at=None, outcome=lambda warnings: {"campaigns_unlisted": 0})


def _queue(run: SyncRun, attempts: Iterable[dict], *, listed_at: datetime | None, outcome) -> int:
    with transaction.atomic():
        current = SyncRun.objects.select_for_update().filter(pk=run.pk).values("status", "warnings").first()
        if current is None or current["status"] != RunStatus.RUNNING:
            return 0
        for batch in batches(attempts):
            sql.insert(SyncAttempt, batch, on_conflict="DO NOTHING")
        _mark_failed_campaigns(run)
        counts = _attempt_counts(run.pk)
        now = timezone.now()
        SyncRun.objects.filter(pk=run.pk, prepared_at__isnull=True).update(
            prepared_at=now, heartbeat_at=now, campaigns_listed=counts["listed"], campaigns_failed=counts["failed"],
            **outcome(current["warnings"]),
        )
        if listed_at is not None:  # a listing of every campaign ended: keep-fresh lists again after its interval
            AdAccount.objects.filter(pk=run.account_id).update(listed_at=listed_at)
    return counts["listed"] - counts["failed"]


def _listing_outcome(listing: Listing, good: list[CampaignRow], wanted: set[str] | None, warnings: list, *,
                     listed_all: bool) -> dict:
    """The run's campaigns_unlisted and its warnings, each one line.

    A run for some campaigns only is judged by them: one asked for and not
    listed fails on its own attempt, so the rest of the listing does not count
    (unless it listed every campaign to find new ones: a keep-fresh refresh).
    """
    lines = []
    incomplete = listing.incomplete_warning() if listed_all else None
    if incomplete:
        lines.append(incomplete)
    with_bad_fields = sum(1 for row in good if row.warnings)
    if with_bad_fields:
        campaigns = f"{with_bad_fields} campaign{'s' if with_bad_fields != 1 else ''}"
        lines.append(f"{campaigns} listed with bad fields, stored empty and synced: the attempts' warnings say "
                     "which fields and why")
    for line in lines:
        log.warning("%s", line)
    return {"campaigns_unlisted": listing.unlisted if listed_all else 0, "warnings": [*(warnings or []), *lines]}


def _wanted(run: SyncRun) -> set[str] | None:
    return set(run.campaign_filter) if run.campaign_filter else None


def _attempts(run: SyncRun, listing: Listing, good: list[CampaignRow], wanted: set[str] | None,
              ids: dict[str, int], now) -> Iterator[dict]:
    """One attempt per good row; failed ones for bad rows and for asked-for campaigns no longer listed."""
    for row in good:
        yield _attempt(run, ids.get(row.platform_id), row.platform_id, now, warnings=row.warnings_text())
    for key, reason in listing.bad.items():
        if wanted is None or key in wanted:
            yield _failed(run, key, ids.get(key), BAD_RESPONSE, reason, now)
    for key in sorted(wanted - listing.good.keys() - listing.bad.keys()) if wanted is not None else ():
        yield _failed(run, key, ids.get(key), CLIENT_ERROR,
                      "not in the platform's listing any more: it may have been deleted", now)


def _failed(run: SyncRun, key: str, campaign_id: int | None, category: str, reason: str, now) -> dict:
    return _attempt(run, campaign_id, key[:255], now, status=AttemptStatus.FAILED, error_category=category,
                    message=reason[:MESSAGE_LENGTH], started_at=now, finished_at=now)


def _attempt(run: SyncRun, campaign_id: int | None, platform_id: str, now, **outcome) -> dict:
    """An attempt's row: pending unless `outcome` says otherwise."""
    return {"run_id": run.pk, "campaign_id": campaign_id, "platform_id": platform_id, "status": AttemptStatus.PENDING,
            "tries": 0, "error_category": "", "message": "", "warnings": "", "claimed_by": "", "created_at": now,
            "started_at": None, "finished_at": None, **outcome}


def _mark_failed_campaigns(run: SyncRun) -> None:
    failed = SyncAttempt.objects.filter(run=run, status=AttemptStatus.FAILED, campaign__isnull=False)
    Campaign.objects.filter(pk__in=failed.values("campaign_id")).update(last_sync_status="failed")


def _attempt_counts(run_id: int) -> dict[str, int]:
    return SyncAttempt.objects.filter(run_id=run_id).aggregate(
        listed=Count("id"), failed=Count("id", filter=Q(status=AttemptStatus.FAILED)))
