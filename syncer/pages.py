"""The campaign list's pages as the contract reads them (PLATFORM_API.md, "Listing campaigns").

A listing stops when `has_more` is false, when `page * limit >= total`
(with the page size the platform answered with: it may cap the one asked
for), or at an empty page. Rows past `total` are not real campaigns. A
row's position comes from its page number and that page size, never from
counting rows: a platform that repeats rows across pages makes a count wrong.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Page:
    """One page; `limit` is the page size the platform answered with (else the one asked)."""

    number: int
    rows: list[Any]
    limit: int
    total: int | None
    has_more: bool

    @property
    def is_last(self) -> bool:
        reached_total = self.total is not None and self.number * self.limit >= self.total
        return not self.has_more or not self.rows or reached_total


def read_page(body: dict, number: int, page_size: int) -> Page:
    """Page `number` of a list body asked with `page_size`; ValueError when the body is not a page."""
    rows = body.get("data")
    if not isinstance(rows, list):
        raise ValueError(f"page {number} of the campaign list has no 'data' list")
    pagination = body.get("pagination")
    if not isinstance(pagination, dict):
        # No pagination block: a short or empty page is the last one.
        log.warning("page %s of the campaign list has no pagination; reading on until a short page", number)
        return Page(number, rows, page_size, None, has_more=len(rows) >= page_size)
    limit = _whole_number(pagination.get("limit"), minimum=1) or page_size
    total = _whole_number(pagination.get("total"), minimum=0)
    if total is not None:
        rows = rows[: max(0, total - (number - 1) * limit)]
    return Page(number, rows, limit, total, has_more=pagination.get("has_more") is True)


def _whole_number(value: object, *, minimum: int) -> int | None:
    """A JSON integer of at least `minimum`, or None (a bool, a float, text, or one too long to count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return None
    return value
