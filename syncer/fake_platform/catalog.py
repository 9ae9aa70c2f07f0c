"""The campaigns both dialects serve: the listing sequence as it changes while serving, rows, list answers, syncs.

A mixin of ``FakePlatform`` (``server.py``). Rows come out in the reference shape (``data.py``); the metered
dialect reshapes them (``metered_rows.py``), so both serve the same campaigns, metrics, bad rows and bad fields.
"""

from __future__ import annotations

import json

from aiohttp import web

from syncer.fake_platform.data import (
    BAD_ROW_KINDS,
    HUGE_INTEGER_DIGITS,
    HUGE_INTEGER_PLACEHOLDER,
    bad_field_of,
    bad_row,
    base_campaign,
    hostile_row,
    listing_sequence,
    with_bad_field,
)
from syncer.fake_platform.gate import ANSWER_HEADERS, HTML_PAGE
from syncer.fake_platform.statuses import status_of


class Catalog:
    def _listing(self, cfg):
        """The entries ("campaign" | "bad", i) a listing pages through now, and whether N+1 was inserted."""
        with self._lock:
            self._list_ticks += 1
            tick = self._list_ticks
            deleted, inserted = frozenset(self._deleted_live), self._inserted
        seq = listing_sequence(cfg.seed, cfg.campaigns, cfg.bad_row_rate, deleted)
        if inserted:  # ``duplicate_across_pages``: the campaign inserted at the front after page 1 was read
            seq = (("campaign", cfg.campaigns + 1), *seq)
        return seq, tick, inserted

    def _page_served(self, cfg, page):
        """Page ``page`` was served: ``delete_between_pages`` and ``duplicate_across_pages`` change the set now."""
        self._delete_after_page(cfg, page)
        self._insert_after_page(cfg, page)

    def _insert_after_page(self, cfg, page):
        """``duplicate_across_pages``: once page 1 is served, a new campaign goes in at the front (a repeat later)."""
        if cfg.duplicate_across_pages and page == 1:
            with self._lock:
                self._inserted = True

    def _delete_after_page(self, cfg, page):
        """``delete_between_pages``: once page K is served, the first live campaign goes (a skip on later pages)."""
        if cfg.delete_between_pages != page:
            return
        with self._lock:
            if self._deletion_done:
                return
            live = next((i for i in range(1, cfg.campaigns + 1) if i not in self._deleted_live), None)
            if live is not None:
                self._deleted_live.add(live)
            self._deletion_done = True

    def _row(self, cfg, entry, tick):
        """The row served for one listing entry: ("campaign" | "bad" | "phantom", i). Call under ``self._lock``."""
        kind, i = entry
        if kind == "bad":
            self._bad_rows += 1
            return bad_row(cfg.seed, i, BAD_ROW_KINDS[i % len(BAD_ROW_KINDS)])
        row = dict(base_campaign(cfg.seed, i))
        if kind == "phantom":
            return row
        row["status"] = status_of(cfg, i, row["status"])
        row["impressions"] += tick * (i % 7 + 1) * 13 + self._rng.randrange(10)
        row["clicks"] += tick * (i % 3) + self._rng.randrange(3)
        row["conversions"] += tick // 4
        if cfg.hostile_values and i % 5 == 0:
            row = hostile_row(row, i)
        bad_field = bad_field_of(cfg.seed, i, cfg.bad_field_rate)
        if bad_field is not None:
            self._bad_fields += 1
            row = with_bad_field(row, bad_field[1])
        return row

    async def _list_answer(self, request, cfg, body, paging_key, huge_integer_quoted):
        """The list answer for ``body`` as ``oversized_list_mb`` and ``malformed_list`` shape it.

        A huge integer cannot go through json.dumps (nor int()): it is written into the text as digits,
        in quotes where the dialect sends numbers as strings.
        """
        if cfg.oversized_list_mb:
            body["padding"] = "x" * int(cfg.oversized_list_mb * 1024 * 1024)
        mode = cfg.malformed_list
        if mode == "truncated_json":
            text = json.dumps(body)
            return web.Response(text=text[: max(1, len(text) // 2)], content_type="application/json")
        if mode == "html":
            return web.Response(text=HTML_PAGE.format(code="Maintenance"), content_type="text/html")
        if mode == "data_not_list":
            body["data"] = {"items": body["data"]}
        elif mode == "no_pagination":
            del body[paging_key]
        elif mode == "no_total":
            body[paging_key].pop("total", None)
        digits = "9" * HUGE_INTEGER_DIGITS
        text = json.dumps(body).replace(f'"{HUGE_INTEGER_PLACEHOLDER}"', f'"{digits}"' if huge_integer_quoted
                                        else digits)
        if cfg.oversized_list_mb and cfg.oversized_chunked:
            return await self._stream(request, text.encode())
        return web.Response(text=text, content_type="application/json")

    async def _stream(self, request, data, chunk=64 * 1024):
        """Send `data` chunked, without a Content-Length; count the bytes written before the client went away.

        The headers a gate wants on every answer (``ANSWER_HEADERS``) go out before the body.
        """
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               **request.get(ANSWER_HEADERS, {})})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for start in range(0, len(data), chunk):
                await response.write(data[start:start + chunk])  # waits while the client does not read
                with self._lock:
                    self._oversized_bytes_sent += len(data[start:start + chunk])
            await response.write_eof()
        except ConnectionError:  # the client stopped reading and closed the connection
            pass
        return response

    def _is_live(self, cfg, number):
        """Campaign ``number`` exists and a sync of it can succeed."""
        real = 1 <= number <= cfg.campaigns or (self._inserted and number == cfg.campaigns + 1)
        return real and not self._is_deleted(cfg, number) and number not in self._deleted_live

    async def _slow_sync(self, request, cfg, campaign_id):
        """Take a good sync's latency, then count it in ``synced_ids``; if the server stops meanwhile, reset."""
        with self._lock:
            jitter = self._rng.uniform(-cfg.sync_latency_jitter, cfg.sync_latency_jitter)
            self._sync_in_flight += 1
            self._concurrent_max = max(self._concurrent_max, self._sync_in_flight)
        try:
            if await self._wait(max(0.0, cfg.sync_latency + jitter)):
                await self._abort(request, count=False)
            with self._lock:
                self._synced[campaign_id] += 1
        finally:
            with self._lock:
                self._sync_in_flight -= 1
