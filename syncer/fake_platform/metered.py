"""The metered dialect (PLATFORM_API.md's last part): /oauth/token, cursor pages on /v2/campaigns, /v2 syncs.

A mixin of ``FakePlatform`` (``server.py``), on the machinery the reference dialect uses too (``gate.py``,
``tokens.py``, ``catalog.py``); the shapes are in ``metered_rows.py``. Every /v2 answer carries the
caller's usage headers; over the budget the answer is HTTP 200 with code 40100.
"""

from __future__ import annotations

import json
import math
import re

from aiohttp import web

from syncer.fake_platform.data import unit
from syncer.fake_platform.gate import ANSWER_HEADERS, FAKE_SECRET, TRACE, Dialect, json_response
from syncer.fake_platform.metered_rows import (
    campaign_number,
    decode_cursor,
    encode_cursor,
    metered_id,
    metered_now,
    metered_row,
)

MAX_PAGE_SIZE = 200  # the contract's largest limit; max_page_size may cap it lower
THROTTLED = 40100  # the body code of an answer over the budget (HTTP 200)
TOKEN_INVALID = 190  # 401: expired, revoked or unknown token
INVALID_PARAMETER = 100  # 400 and 404: a bad parameter or an object that does not exist
UNKNOWN_ERROR = 1  # 500
UNAVAILABLE = 2  # 503


def metered_error(status, code, message, transient, **extra):
    return json_response(status, {"error": {"code": code, "message": message, "is_transient": transient, **extra}})


class MeteredErrors:
    """The metered dialect's error bodies: ``{"error": {"code", "message", "is_transient"}}``."""

    @staticmethod
    def unavailable(message):
        return metered_error(503, UNAVAILABLE, message, True)

    @staticmethod
    def server_error():
        return metered_error(500, UNKNOWN_ERROR, f"Unhandled exception (STRIPE_KEY={FAKE_SECRET})", True,
                             trace=TRACE.format(secret=FAKE_SECRET))

    @staticmethod
    def http(status, reason, text):
        code = UNKNOWN_ERROR if status >= 500 else INVALID_PARAMETER
        return metered_error(status, code, text, status >= 500)


def usage_headers(usage):
    """The usage headers of one answer; none without a rate limit (an unmetered platform sends none).

    ``X-RateLimit-Reset`` is whole seconds rounded up, as most real platforms send it: a client that waits
    it never comes back before the oldest call has left the window.
    """
    if usage is None:
        return {}
    return {"X-RateLimit-Limit": str(usage.calls), "X-RateLimit-Remaining": str(max(0, usage.calls - usage.used)),
            "X-RateLimit-Reset": str(max(1, math.ceil(usage.reset))),
            "X-App-Usage": json.dumps({"call_count": round(100 * usage.used / usage.calls)})}


class MeteredHandlers:
    async def _metered_gate(self, request, cfg, endpoint, handler):
        """Order on /v2/*: budget (200 + code 40100) -> bearer token (401/190) -> faults -> the endpoint;
        the usage headers go on every answer."""
        client = request.headers.get("X-Client-ID") or "default"
        usage = self._admit(client)
        request[ANSWER_HEADERS] = headers = usage_headers(usage)
        response = await self._metered_answer(request, cfg, endpoint, handler, client, usage)
        if not response.prepared:
            response.headers.update(headers)
        return response

    async def _metered_answer(self, request, cfg, endpoint, handler, client, usage):
        if usage is not None and not usage.admitted:
            with self._lock:
                self._throttled += 1
                self._throttled_by_client[client] += 1
            return json_response(200, {"code": THROTTLED, "message": "Too many requests"})
        state = self._bearer_check(request, cfg)
        if state != "ok":
            message = "An access token is required" if state == "missing" else \
                "Error validating access token: the session has expired or been revoked"
            return metered_error(401, TOKEN_INVALID, message, False)
        fault = await self._fault(request, cfg, endpoint)
        if fault is not None:
            return fault
        try:
            return await handler(request)
        except web.HTTPException as exc:  # an unknown /v2 path or method, answered with the usage headers too
            return MeteredErrors.http(exc.status, exc.reason, f"{request.method} {request.path}: {exc.reason}")

    async def _metered_token(self, request):
        cfg = self._cfg
        if self._draw(cfg.token_fail_rate):
            return MeteredErrors.unavailable("Token service unavailable, retry later")
        login = self._basic_login(request)
        if login is None:
            return json_response(400, {"error": "invalid_client"})
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        token = self._issue_token(login, prefix="EAAM")
        return json_response(200, {"access_token": token, "token_type": "bearer",
                                   "expires_in": self._lifetime_seconds(cfg)})

    async def _metered_list(self, request):
        cfg = self._cfg
        raw_limit, cursor = request.query.get("limit"), request.query.get("after")
        if raw_limit is not None and not (re.fullmatch(r"[0-9]{1,12}", raw_limit) and int(raw_limit) >= 1):
            return metered_error(400, INVALID_PARAMETER, f"limit must be an integer from 1 to {MAX_PAGE_SIZE}",
                                 False)
        try:
            offset, page = (0, 1) if cursor is None else decode_cursor(cursor)
        except ValueError:
            return metered_error(400, INVALID_PARAMETER, "Invalid cursor: pass paging.next as it came", False)
        limit = min(int(raw_limit or cfg.default_page_size), cfg.max_page_size, MAX_PAGE_SIZE)
        if cfg.list_latency and await self._wait(cfg.list_latency):
            return await self._abort(request, count=False)
        seq, tick, _inserted = self._listing(cfg)
        with self._lock:  # guards self._rng and the counters; <= 200 rows is quick
            data = [self._metered_row(cfg, entry, tick) for entry in seq[offset:offset + limit]]
        paging = {}
        if offset + limit < len(seq):  # overlapping pages share one row
            step = limit - 1 if cfg.overlap_pages and limit > 1 else limit
            paging["next"] = encode_cursor(offset + step, page + 1)
        self._page_served(cfg, page)
        body = {"data": data, "paging": paging}
        return await self._list_answer(request, cfg, body, "paging", huge_integer_quoted=True)

    def _metered_row(self, cfg, entry, tick):
        kind, number = entry
        row = self._row(cfg, entry, tick)
        if kind != "campaign":
            return metered_row(row, cfg.seed, deleted=False, with_insights=True)
        return metered_row(row, cfg.seed, deleted=self._is_deleted(cfg, number),
                           with_insights=unit(cfg.seed, "insights", number) >= cfg.no_insights_rate)

    async def _metered_sync(self, request):
        cfg, cid = self._cfg, request.match_info["id"]
        if not self._is_live(cfg, campaign_number(cfg.seed, cid)):
            return metered_error(404, INVALID_PARAMETER, f"Campaign {cid} does not exist", False)
        await self._slow_sync(request, cfg, cid)
        return json_response(200, {"ok": True, "synced_time": metered_now()})


METERED = Dialect(
    name="metered", api_prefix="/v2/",
    endpoints={"/oauth/token": "token", "/v2/campaigns": "list", "/health": "health"},
    sync_path=re.compile(r"^/v2/campaigns/[^/]+/sync$"), errors=MeteredErrors,
    api_gate=MeteredHandlers._metered_gate,
    routes=(("POST", "/oauth/token", MeteredHandlers._metered_token),
            ("GET", "/v2/campaigns", MeteredHandlers._metered_list),
            ("POST", "/v2/campaigns/{id}/sync", MeteredHandlers._metered_sync)),
    campaign_id=metered_id,
)
