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
            key = f"(bad row: {where})"
            self.bad[key] = f"bad row at {where}: {error}"[:MESSAGE_LENGTH]
            log.warning("bad row at %s (no usable id): %s", where, error)
            return
        self.good[row.platform_id] = row
        if row.warnings:
            log.info("campaign %s listed with bad fields, stored empty: %s", row.platform_id, row.warnings_text())


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
    fields = row.as_fields()
    fields["platform_created_at"] = sql.db_time(fields["platform_created_at"])
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
    """Create the run's attempts once (a second delivery of the same step adds nothing); how many wait to sync."""
    wanted = set(run.campaign_filter) if run.campaign_filter else None
    good = [row for row in listing.good.values() if wanted is None or row.platform_id in wanted]
    ids = campaigns_upsert(account_id=run.account_id, rows=good)
    attempts = _attempts(run, listing, good, wanted, ids, sql.db_time(timezone.now()))
    with transaction.atomic():
        for batch in batches(attempts):
            sql.insert(SyncAttempt, batch, on_conflict="DO NOTHING")
        _mark_failed_campaigns(run)
        counts = _attempt_counts(run.pk)
        SyncRun.objects.filter(pk=run.pk, prepared_at__isnull=True).update(
            prepared_at=timezone.now(), campaigns_listed=counts["listed"], campaigns_failed=counts["failed"],
            warnings=_bad_fields_warning(good),
        )
    return counts["listed"] - counts["failed"]


def _bad_fields_warning(good: list[CampaignRow]) -> list[str]:
    with_bad_fields = sum(1 for row in good if row.warnings)
    if not with_bad_fields:
        return []
    campaigns = f"{with_bad_fields} campaign{'s' if with_bad_fields != 1 else ''}"
    return [f"{campaigns} listed with bad fields, stored empty and synced: the attempts' warnings say which fields "
            "and why"]


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
