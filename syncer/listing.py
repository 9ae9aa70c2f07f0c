"""A run's listing: the platform's campaigns by distinct id, listed again while it comes up short.

Offset pages shift while the platform's set of campaigns changes
(PLATFORM_API.md, "Listing campaigns"): a campaign may come on two pages, or
be skipped when another is deleted between pages. So rows are counted by
distinct id, and a pass that ends with fewer of them than the platform's
total, or that saw the total move between its pages (the set changed under
it), is followed by another, up to LISTING_PASSES in all; what each pass
finds is merged. A pass also ends at the page cap, or as soon as
`keep_going()` says its run has ended. What stays missing is `unlisted`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from syncer.calls import CallStats
from syncer.client import Page, PlatformClient
from syncer.rows import BadRow, CampaignRow

log = logging.getLogger(__name__)

LISTING_PASSES = 3  # in all: each costs a listing's calls of the run's budget
MESSAGE_LENGTH = 500


@dataclass
class ListingPass:
    """What one pass over the pages found."""

    good: dict[str, CampaignRow] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)  # rows without a usable id: where they stood -> why
    duplicates: int = 0
    total: int | None = None  # as its last page said
    total_moved: bool = False
    capped: bool = False  # it read the most pages a listing may, and the platform still said there were more
    stopped: bool = False  # its run ended while it listed

    def add_page(self, page: Page, read_row: Callable[[object], CampaignRow]) -> None:
        if page.total is not None:
            self.total_moved = self.total_moved or (self.total is not None and page.total != self.total)
            self.total = page.total
        for index, raw in enumerate(page.rows):
            self.add_row(raw, where=f"page {page.number} row {index + 1}", read_row=read_row)

    def add_row(self, raw: object, *, where: str, read_row: Callable[[object], CampaignRow]) -> None:
        try:
            row = read_row(raw)
        except BadRow as error:
            self.bad[f"(bad row: {where})"] = f"bad row at {where}: {error}"[:MESSAGE_LENGTH]
            log.warning("bad row at %s (no usable id): %s", where, error)
            return
        if row.platform_id in self.good:
            self.duplicates += 1  # listed twice (pages shifted under us): one attempt is enough
            return
        self.good[row.platform_id] = row
        if row.warnings:
            log.info("campaign %s listed with bad fields, stored empty: %s", row.platform_id, row.warnings_text())


@dataclass
class Listing:
    """Every pass merged: good rows by id (the latest pass's), rows without an id, the platform's last total."""

    good: dict[str, CampaignRow] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    total: int | None = None
    passes: int = 0
    capped_at: int | None = None  # the page cap, when a pass reached it
    stopped: bool = False

    @property
    def listed(self) -> int:
        return len(self.good) + len(self.bad)

    @property
    def unlisted(self) -> int:
        """Campaigns the platform's total counts that no pass returned; at a cap, at least one (it said more)."""
        short = max(0, self.total - self.listed) if self.total is not None else 0
        return max(short, 1) if self.capped_at else short

    def merge(self, found: ListingPass, *, max_pages: int) -> None:
        self.passes += 1
        self.good.update(found.good)
        if len(found.bad) > len(self.bad):  # rows without an id cannot be matched across passes: keep one pass's
            self.bad = found.bad
        self.duplicates += found.duplicates
        self.total = found.total if found.total is not None else self.total
        self.capped_at = max_pages if found.capped else None
        self.stopped = found.stopped

    def wants_another_pass(self, found: ListingPass, wanted: set[str] | None) -> bool:
        if found.capped or found.stopped or self.total is None:
            return False
        if wanted is not None and wanted <= self.good.keys():
            return False  # every campaign asked for is in
        return self.listed < self.total or found.total_moved

    def incomplete_warning(self) -> str | None:
        """One line for the run when campaigns are missing from the listing, else None."""
        if self.capped_at:
            listed = f"{self.listed} of {self.total} campaigns listed" if self.total is not None else \
                f"{self.listed} campaigns listed, how many more is unknown (no usable total)"
            return (f"listing stopped at the page cap (SYNC_MAX_PAGES={self.capped_at}) with the platform still "
                    f"saying there were more: {listed}")
        if self.unlisted:
            passes = f"{self.passes} pass{'es' if self.passes > 1 else ''}"
            return (f"listing incomplete: {self.listed} of {self.total} campaigns listed after {passes} "
                    f"(the platform's total says {self.total})")
        return None


def listing_read(*, client: PlatformClient, page_size: int, stats: CallStats, max_pages: int,
                 keep_going: Callable[[], bool], wanted: set[str] | None = None,
                 passes: int = LISTING_PASSES) -> Listing:
    """List until a pass leaves nothing missing (or nothing `wanted` missing), at most `passes` times."""
    listing = Listing()
    while listing.passes < passes:
        found = _pass_read(client, page_size, stats, max_pages, keep_going)
        listing.merge(found, max_pages=max_pages)
        if not listing.wants_another_pass(found, wanted):
            break
        log.warning("listing again: %s of %s campaigns listed%s", listing.listed, listing.total,
                    " (the total changed between pages)" if found.total_moved else "")
    if listing.duplicates:
        log.warning("%s campaigns were listed more than once; each is synced once", listing.duplicates)
    return listing


def _pass_read(client: PlatformClient, page_size: int, stats: CallStats, max_pages: int,
               keep_going: Callable[[], bool]) -> ListingPass:
    found = ListingPass()
    pages = client.iter_pages(page_size=page_size, stats=stats, max_pages=max_pages)
    try:
        page = next(pages, None)
        while page is not None:
            found.add_page(page, client.platform.campaign_row)
            log.info("listed page %s: %s rows (total %s)", page.number, len(page.rows), page.total)
            if page.is_last:
                return found
            if not keep_going():
                found.stopped = True
                log.warning("the run ended while it listed: listing stopped after page %s", page.number)
                return found
            page = next(pages, None)
        found.capped = True  # the pages ran out before a last one: the cap
        return found
    finally:
        pages.close()
