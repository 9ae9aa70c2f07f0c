"""The fake platform's HTTP side: the fault gate in front of /api/*, and every endpoint.

A mixin of ``FakePlatform`` (``server.py``), which holds the state these
handlers read and count under ``self._lock``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import time

from aiohttp import web

from syncer.fake_platform.data import (
    BAD_ROW_KINDS,
    HUGE_INTEGER_DIGITS,
    HUGE_INTEGER_PLACEHOLDER,
    bad_field_of,
    bad_row,
    base_campaign,
    hostile_row,
    iso_now,
    listing_sequence,
    with_bad_field,
)

FAKE_SECRET = "sk_live_FAKE51HxQ9dEADBEEFc0ffee"  # appears in 500 bodies; must never reach a page
_CAMPAIGN_ID = re.compile(r"^campaign_([1-9][0-9]{0,17})$")
_SYNC_PATH = re.compile(r"^/api/campaigns/[^/]+/sync$")
_HTML = ("<!DOCTYPE html><html><head><title>{code}</title></head><body><center><h1>{code}</h1></center>"
         "<hr><center>nginx</center></body></html>")
_TRACE = """Traceback (most recent call last):
  File "/srv/adplatform/app/handlers.py", line 214, in handle
    conn = pool.connect(dsn="postgresql://ads_admin:Pa55w0rd-prod@db-7.internal:5432/ads")
  File "/srv/adplatform/venv/lib/python3.9/site-packages/psycopg2/__init__.py", line 127, in connect
    conn = _connect(dsn, connection_factory=connection_factory, **kwasync)
psycopg2.OperationalError: FATAL: too many connections (STRIPE_KEY={secret})
"""


def json_response(status, payload, headers=None):
    return web.json_response(payload, status=status, headers=headers)


def error_response(status, error, message):
    return json_response(status, {"error": error, "message": message})


class Handlers:
    @web.middleware
    async def _middleware(self, request, handler):
        path = request.path
        if path.startswith("/_fake/"):
            return await handler(request)
        cfg = self._cfg
        endpoint = {"/auth/token": "token", "/api/campaigns": "list", "/health": "health"}.get(path)
        endpoint = endpoint or ("sync" if _SYNC_PATH.match(path) else "other")
        with self._lock:
            self._requests[endpoint] += 1
            if cfg.down:
                self._calls_while_down += 1
        try:
            if cfg.down:
                response = await self._outage(request, cfg)
            elif path.startswith("/api/"):
                response = await self._api_gate(request, cfg, endpoint, handler)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            response = error_response(exc.status, exc.reason, f"{request.method} {path}: {exc.reason}")
        with self._lock:
            self._responses[response.status] += 1
        return response

    async def _outage(self, request, cfg):
        """What a call gets while the platform is down (``down_mode``)."""
        if cfg.down_mode == "503":
            return error_response(503, "Service temporarily unavailable", "The platform is down for maintenance")
        if cfg.down_mode == "hang":
            await self._stopping.wait()  # a client disconnect cancels this handler
        return await self._abort(request, count=False)

    async def _api_gate(self, request, cfg, endpoint, handler):
        client = request.headers.get("X-Client-ID") or "default"
        now = time.monotonic()
        with self._lock:
            retry_after = None
            if self._limit is not None:
                calls, window = self._limit
                times = self._windows[client]
                while times and times[0] <= now - window:
                    times.popleft()
                if len(times) >= calls:
                    retry_after = max(1, math.ceil(times[0] + window - now))
                    self._rate_limited += 1
                    self._rl_by_client[client] += 1
                else:
                    times.append(now)
            if retry_after is None:
                self._history[client].append(now)
        if retry_after is not None:
            return self._too_many(cfg, retry_after)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        with self._lock:
            entry = self._tokens.get(token)
            valid = entry is not None and entry[1] > now
            if entry is not None and not valid:
                del self._tokens[token]
            valid = valid and not cfg.refuse_tokens
            if valid:
                self._authed_calls += 1
                if cfg.revoke_all_every and self._authed_calls % cfg.revoke_all_every == 0:
                    self._tokens_revoked += len(self._tokens)
                    self._tokens.clear()
                elif cfg.token_revoke_every and self._authed_calls % cfg.token_revoke_every == 0:
                    del self._tokens[token]
                    self._tokens_revoked += 1
        if not token:
            return error_response(401, "Unauthorized", "Missing bearer token")
        if not valid:
            return error_response(401, "Token expired", "The access token is expired or invalid")
        if self._draw(cfg.reset_rate):
            return await self._abort(request)
        if self._draw(cfg.hang_rate):
            with self._lock:
                self._hung += 1
            await self._stopping.wait()  # a client disconnect cancels this handler
            return await self._abort(request, count=False)
        if self._draw(cfg.server_error_rate):
            with self._lock:
                self._server_errors += 1
            return json_response(500, {"error": "Internal Server Error",
                               "message": f"Unhandled exception (STRIPE_KEY={FAKE_SECRET})",
                               "trace": _TRACE.format(secret=FAKE_SECRET)})
        if self._draw(cfg.html_error_rate):
            code = 502 if self._draw(0.5) else 200
            return web.Response(status=code, text=_HTML.format(code="502 Bad Gateway"), content_type="text/html")
        if self._draw({"list": cfg.list_fail_rate, "sync": cfg.sync_fail_rate}.get(endpoint, 0.0)):
            return error_response(503, "Service temporarily unavailable", "The service is overloaded, retry later")
        return await handler(request)

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

    # ------------------------------------------------------------- endpoints
    async def _token(self, request):
        cfg = self._cfg
        if self._draw(cfg.token_fail_rate):
            return error_response(503, "Service temporarily unavailable", "Token service unavailable, retry later")
        bad = error_response(401, "Invalid credentials", "Email or password is incorrect")
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            return bad
        try:
            email, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return bad
        ok_email = secrets.compare_digest(email.encode(), cfg.email.encode())
        if not (sep and ok_email and secrets.compare_digest(password.encode(), cfg.password.encode())):
            return bad
        token, now = "tok_" + secrets.token_urlsafe(24), time.monotonic()
        with self._lock:
            if cfg.revoke_on_issue or len(self._tokens) > 10_000:
                for old, (owner, expiry) in list(self._tokens.items()):
                    if expiry <= now or (cfg.revoke_on_issue and owner == email):
                        del self._tokens[old]
                        self._tokens_revoked += expiry > now
            self._tokens[token] = (email, now + cfg.token_lifetime)
            self._issued.append(token)
            self._tokens_issued += 1
        lifetime = cfg.token_lifetime
        return json_response(200, {"access_token": token, "token_type": "Bearer",
                           "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
                           "issued_at": int(time.time())})

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
        with self._lock:
            self._list_ticks += 1
            tick = self._list_ticks
        with self._lock:
            deleted, inserted = frozenset(self._deleted_live), self._inserted
        seq = listing_sequence(cfg.seed, cfg.campaigns, cfg.bad_row_rate, deleted)
        if inserted:  # ``duplicate_across_pages``: the campaign inserted at the front after page 1 was read
            seq = (("campaign", cfg.campaigns + 1), *seq)
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
        if cfg.oversized_list_mb:
            body["padding"] = "x" * int(cfg.oversized_list_mb * 1024 * 1024)
        self._delete_after_page(cfg, page)
        self._insert_after_page(cfg, page)
        mode = cfg.malformed_list
        if mode == "truncated_json":
            text = json.dumps(body)
            return web.Response(text=text[: max(1, len(text) // 2)], content_type="application/json")
        if mode == "html":
            return web.Response(text=_HTML.format(code="Maintenance"), content_type="text/html")
        if mode == "data_not_list":
            body["data"] = {"items": data}
        elif mode == "no_pagination":
            del body["pagination"]
        elif mode == "no_total":
            del body["pagination"]["total"]
        # A huge integer cannot go through json.dumps (nor int()): it is written into the text as digits.
        text = json.dumps(body).replace(f'"{HUGE_INTEGER_PLACEHOLDER}"', "9" * HUGE_INTEGER_DIGITS)
        if cfg.oversized_list_mb and cfg.oversized_chunked:
            return await self._stream(request, text.encode())
        return web.Response(text=text, content_type="application/json")

    def _insert_after_page(self, cfg, page):
        """``duplicate_across_pages``: once page 1 is served, a new campaign goes in at the front (a repeat later)."""
        if cfg.duplicate_across_pages and page == 1:
            with self._lock:
                self._inserted = True

    async def _stream(self, request, data, chunk=64 * 1024):
        """Send `data` chunked, without a Content-Length; count the bytes written before the client went away."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
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
        """The row served for one listing entry: ("campaign" | "bad" | "phantom", i)."""
        kind, i = entry
        if kind == "bad":
            self._bad_rows += 1
            return bad_row(cfg.seed, i, BAD_ROW_KINDS[i % len(BAD_ROW_KINDS)])
        row = dict(base_campaign(cfg.seed, i))
        if kind == "phantom":
            return row
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

    async def _sync(self, request):
        cfg, cid = self._cfg, request.match_info["id"]
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or body.get("campaign_id") != cid:
            return error_response(400, "Bad request", 'Body must be {"campaign_id": "<id in the URL>"}')
        match = _CAMPAIGN_ID.match(cid)
        number = int(match.group(1)) if match else 0
        real = 1 <= number <= cfg.campaigns or (self._inserted and number == cfg.campaigns + 1)
        if not real or self._is_deleted(cfg, number) or number in self._deleted_live:
            return error_response(404, "Not found", f"Campaign {cid} not found")
        with self._lock:
            jitter = self._rng.uniform(-cfg.sync_latency_jitter, cfg.sync_latency_jitter)
            self._sync_in_flight += 1
            self._concurrent_max = max(self._concurrent_max, self._sync_in_flight)
        try:
            if await self._wait(max(0.0, cfg.sync_latency + jitter)):
                return await self._abort(request, count=False)
            with self._lock:
                self._synced[cid] += 1
        finally:
            with self._lock:
                self._sync_in_flight -= 1
        return json_response(200, {"success": True, "campaign_id": cid, "synced_at": iso_now(),
                           "message": "Campaign data synced successfully"})

    async def _health(self, request):
        uptime = round(time.monotonic() - self._started, 3)
        return json_response(200, {"status": "ok", "timestamp": iso_now(), "uptime": uptime})

    async def _fake_stats(self, request):
        return json_response(200, self.stats)

    async def _fake_config(self, request):
        if request.method == "GET":
            return json_response(200, self._cfg.as_dict())
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("body must be a JSON object of knobs")
            down_for = knobs.pop("down_for", None)
            self.update(**knobs)
            if down_for is not None:
                self.down_for(float(down_for))
        except (ValueError, TypeError) as exc:
            return error_response(400, "Bad config", str(exc))
        return json_response(200, self._cfg.as_dict())

    async def _fake_reset(self, request):
        try:
            opts = await request.json() if request.can_read_body else {}
        except ValueError:
            opts = {}
        opts = opts if isinstance(opts, dict) else {}
        self.reset_stats(rate_limits=bool(opts.get("rate_limits")), tokens=bool(opts.get("tokens")))
        return json_response(200, {"ok": True})

