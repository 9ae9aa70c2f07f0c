"""The first step of a run: list every campaign, store it, queue one attempt each."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import AttemptStatus, Campaign, SyncAttempt, SyncRun, SyncStatus
from syncer import sql
from syncer.client import BAD_RESPONSE, CLIENT_ERROR, CallStats, Page, PlatformClient
from syncer.listings_first import listing_in_flight
from syncer.rows import BadRow, CampaignRow, parse_row, row_id

log = logging.getLogger(__name__)

MESSAGE_LENGTH = 500
BATCH_SIZE = 500


@dataclass
class Listing:
    """What the platform listed, sorted into good rows and bad ones."""

    good: dict[str, CampaignRow] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)  # platform id or row position -> reason
    duplicates: int = 0

    def add_page(self, page: Page) -> None:
        for index, raw in enumerate(page.rows):
            self.add_row(raw, where=f"page {page.number} row {index + 1}")

    def add_row(self, raw: object, *, where: str) -> None:
        platform_id = row_id(raw)
        if platform_id is not None and (platform_id in self.good or platform_id in self.bad):
            self.duplicates += 1  # listed twice (pages shifted under us): one attempt is enough
            return
        try:
            row = parse_row(raw)
        except BadRow as error:
            key = platform_id or f"(bad row: {where})"
            self.bad[key] = f"bad row at {where}: {error}"[:MESSAGE_LENGTH]
            log.warning("bad row at %s (%s): %s", where, platform_id or "no usable id", error)
            return
        self.good[row.platform_id] = row


def listing_fetch(*, client: PlatformClient, page_size: int, stats: CallStats) -> Listing:
    listing = Listing()
    pages = client.iter_pages(page_size=page_size, stats=stats)
    with listing_in_flight():  # the first page is the run's first call (syncer/listings_first.py)
        page = next(pages, None)
    while page is not None:
        listing.add_page(page)
        log.info("listed page %s: %s rows (total %s)", page.number, len(page.rows), page.total)
        page = next(pages, None)
    if listing.duplicates:
        log.warning("%s campaigns were listed more than once; each is synced once", listing.duplicates)
    return listing


# A listing's rows go in with plain SQL (syncer/sql.py): bulk_create spent
# more CPU building these statements than everything else a fleet does to start.
CAMPAIGN_COLUMNS = ("account_id", "platform_id", "name", "status", "budget", "impressions", "clicks", "conversions",
                    "platform_created_at", "first_seen_at", "updated_at", "last_sync_status")
CAMPAIGN_REFRESHED = ("name", "status", "budget", "impressions", "clicks", "conversions", "platform_created_at",
                      "updated_at")
ATTEMPT_COLUMNS = ("run_id", "campaign_id", "platform_id", "status", "tries", "error_category", "message",
                   "claimed_by", "created_at", "started_at", "finished_at")


def campaigns_upsert(*, account_id: int, rows: list[CampaignRow]) -> dict[str, int]:
    """Insert or update campaigns by (account, platform id); return platform id -> pk."""
    now = sql.db_time(timezone.now())
    refresh = ", ".join(f"{name} = excluded.{name}" for name in map(connection.ops.quote_name, CAMPAIGN_REFRESHED))
    for batch in batches(rows):
        sql.insert(Campaign, CAMPAIGN_COLUMNS, [
            (account_id, row.platform_id, row.name, row.status, row.budget, row.impressions, row.clicks,
             row.conversions, sql.db_time(row.created_at), now, now, SyncStatus.NEVER) for row in batch
        ], on_conflict=f"(account_id, platform_id) DO UPDATE SET {refresh}")
    return _all_ids(account_id)


def batches(items: Iterable, size: int = BATCH_SIZE) -> Iterator[list]:
    """A batch at a time: a run of 100,000 built all its rows at once, 100 MB and more."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _all_ids(account_id: int) -> dict[str, int]:
    return dict(Campaign.objects.filter(account_id=account_id).values_list("platform_id", "pk"))


def attempts_queue(*, run: SyncRun, listing: Listing) -> int:
    """Create the run's attempts once (a second delivery of the same step adds nothing); how many wait to sync."""
    wanted = set(run.campaign_filter) if run.campaign_filter else None
    good = [row for row in listing.good.values() if wanted is None or row.platform_id in wanted]
    ids = campaigns_upsert(account_id=run.account_id, rows=good)
    attempts = _attempts(run, listing, good, wanted, ids, sql.db_time(timezone.now()))
    with transaction.atomic():
        for batch in batches(attempts):
            sql.insert(SyncAttempt, ATTEMPT_COLUMNS, batch, on_conflict="DO NOTHING")
        _mark_failed_campaigns(run)
        counts = _attempt_counts(run.pk)
        SyncRun.objects.filter(pk=run.pk, prepared_at__isnull=True).update(
            prepared_at=timezone.now(), campaigns_listed=counts["listed"], campaigns_failed=counts["failed"],
        )
    return counts["listed"] - counts["failed"]


def _attempts(run: SyncRun, listing: Listing, good: list[CampaignRow], wanted: set[str] | None,
              ids: dict[str, int], now) -> Iterator[tuple]:
    """One attempt per good row; failed ones for bad rows and for asked-for campaigns no longer listed."""
    for row in good:
        yield run.pk, ids.get(row.platform_id), row.platform_id, AttemptStatus.PENDING, 0, "", "", "", now, None, None
    for key, reason in listing.bad.items():
        if wanted is None or key in wanted:
            yield _failed(run, key, ids.get(key), BAD_RESPONSE, reason, now)
    for key in sorted(wanted - listing.good.keys() - listing.bad.keys()) if wanted is not None else ():
        yield _failed(run, key, ids.get(key), CLIENT_ERROR,
                      "not in the platform's listing any more: it may have been deleted", now)


def _failed(run: SyncRun, key: str, campaign_id: int | None, category: str, reason: str, now) -> tuple:
    return (run.pk, campaign_id, key[:255], AttemptStatus.FAILED, 0, category, reason[:MESSAGE_LENGTH], "", now,
            now, now)


def _mark_failed_campaigns(run: SyncRun) -> None:
    failed = SyncAttempt.objects.filter(run=run, status=AttemptStatus.FAILED, campaign__isnull=False)
    Campaign.objects.filter(pk__in=failed.values("campaign_id")).update(last_sync_status="failed")


def _attempt_counts(run_id: int) -> dict[str, int]:
    return SyncAttempt.objects.filter(run_id=run_id).aggregate(
        listed=Count("id"), failed=Count("id", filter=Q(status=AttemptStatus.FAILED)))
