"""The reference dialect (PLATFORM_API.md's first part): /auth/token, offset pages on /api/campaigns, /api syncs.

A mixin of ``FakePlatform`` (``server.py``). The machinery both dialects share is in ``gate.py`` (budget,
faults, outages), ``tokens.py`` and ``catalog.py`` (the campaigns, rows, list answers, slow syncs).
"""

from __future__ import annotations

import math
import re
import time

from syncer.fake_platform.data import iso_now
from syncer.fake_platform.gate import FAKE_SECRET, TRACE, Dialect, json_response

_CAMPAIGN_ID = re.compile(r"^campaign_([1-9][0-9]{0,17})$")


def error_response(status, error, message):
    return json_response(status, {"error": error, "message": message})


class ReferenceErrors:
    """The reference dialect's error bodies: ``{"error": ..., "message": ...}``."""

    @staticmethod
    def unavailable(message):
        return error_response(503, "Service temporarily unavailable", message)

    @staticmethod
    def server_error():
        return json_response(500, {"error": "Internal Server Error",
                                   "message": f"Unhandled exception (STRIPE_KEY={FAKE_SECRET})",
                                   "trace": TRACE.format(secret=FAKE_SECRET)})

    @staticmethod
    def http(status, reason, text):
        return error_response(status, reason, text)


class ReferenceHandlers:
    async def _reference_gate(self, request, cfg, endpoint, handler):
        """Order on /api/*: rate limit (429) -> bearer token (401) -> faults -> the endpoint."""
        usage = self._admit(request.headers.get("X-Client-ID") or "default")
        if usage is not None and not usage.admitted:
            return self._too_many(cfg, max(1, math.ceil(usage.reset)))
        state = self._bearer_check(request, cfg)
        if state == "missing":
            return error_response(401, "Unauthorized", "Missing bearer token")
        if state == "refused":
            return error_response(401, "Token expired", "The access token is expired or invalid")
        fault = await self._fault(request, cfg, endpoint)
        return fault if fault is not None else await handler(request)

    def _too_many(self, cfg, retry_after):
        if cfg.retry_after_override is not None:
            retry_after = cfg.retry_after_override
        retry_after = int(retry_after) if float(retry_after).is_integer() else retry_after
        calls, window = self._limit or (0, 0)
        body = {"error": "Rate limit exceeded", "message": f"Too many requests: at most {calls} per {window:g} s"}
        headers = {}
        if cfg.retry_after_mode in ("body", "both"):
            body["retry_after"] = retry_after
        if cfg.retry_after_mode in ("header", "both"):
            headers["Retry-After"] = str(math.ceil(retry_after))
        return json_response(429, body, headers)

    async def _token(self, request):
        cfg = self._cfg
        if self._draw(cfg.token_fail_rate):
            return ReferenceErrors.unavailable("Token service unavailable, retry later")
        login = self._basic_login(request)
        if login is None:
            return error_response(401, "Invalid credentials", "Email or password is incorrect")
        token = self._issue_token(login, prefix="tok_")
        return json_response(200, {"access_token": token, "token_type": "Bearer",
                                   "expires_in": self._lifetime_seconds(cfg), "issued_at": int(time.time())})

    async def _list(self, request):
        cfg = self._cfg
        values = {}
        for name, default in (("page", 1), ("limit", cfg.default_page_size)):
            raw = request.query.get(name)
            if raw is None:
                values[name] = default
            elif re.fullmatch(r"[0-9]{1,12}", raw) and int(raw) >= 1:
                values[name] = int(raw)
            else:
                return error_response(400, "Bad request", f"{name} must be an integer >= 1")
        page, limit = values["page"], min(values["limit"], cfg.max_page_size)
        if cfg.list_latency and await self._wait(cfg.list_latency):
            return await self._abort(request, count=False)
        seq, tick, inserted = self._listing(cfg)
        size = len(seq)
        step = limit - 1 if cfg.overlap_pages and limit > 1 else limit  # overlapping pages share one row
        first = (page - 1) * step + 1  # 1-based positions in seq
        last = first + limit - 1
        positions = range(first, last + 1 if cfg.has_more_lies else min(last, size) + 1)
        phantom_base = cfg.campaigns + int(inserted) - size  # phantoms are numbered past every real campaign
        entries = [seq[pos - 1] if pos <= size else ("phantom", phantom_base + pos) for pos in positions]
        with self._lock:  # guards self._rng and the counters; <= max_page_size rows is quick
            data = [self._row(cfg, entry, tick) for entry in entries]
        total = size + (cfg.total_drift if page >= 2 else 0)
        has_more = True if cfg.has_more_lies else last < size
        body = {"data": data, "pagination": {"page": page, "limit": limit, "total": total, "has_more": has_more}}
        self._page_served(cfg, page)
        return await self._list_answer(request, cfg, body, "pagination", huge_integer_quoted=False)

    async def _sync(self, request):
        cfg, cid = self._cfg, request.match_info["id"]
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or body.get("campaign_id") != cid:
            return error_response(400, "Bad request", 'Body must be {"campaign_id": "<id in the URL>"}')
        match = _CAMPAIGN_ID.match(cid)
        if not self._is_live(cfg, int(match.group(1)) if match else 0):
            return error_response(404, "Not found", f"Campaign {cid} not found")
        await self._slow_sync(request, cfg, cid)
        return json_response(200, {"success": True, "campaign_id": cid, "synced_at": iso_now(),
                                   "message": "Campaign data synced successfully"})


REFERENCE = Dialect(
    name="reference", api_prefix="/api/",
    endpoints={"/auth/token": "token", "/api/campaigns": "list", "/health": "health"},
    sync_path=re.compile(r"^/api/campaigns/[^/]+/sync$"), errors=ReferenceErrors,
    api_gate=ReferenceHandlers._reference_gate,
    routes=(("POST", "/auth/token", ReferenceHandlers._token), ("GET", "/api/campaigns", ReferenceHandlers._list),
            ("POST", "/api/campaigns/{id}/sync", ReferenceHandlers._sync)),
    campaign_id=lambda seed, number: f"campaign_{number}",
)
