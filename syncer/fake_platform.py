"""The bundled fake ad platform: /work/shared/PLATFORM_API.md, every failure on a knob.

Pure Python + aiohttp (no Django). ``FakePlatform(cfg).start()`` serves it from
a daemon thread with its own event loop; ``serve_forever`` runs it in the
foreground (``manage.py run_fake_platform``). Knobs: ``FakePlatformConfig`` in
``syncer/fake_platform_config.py``; all faults are off by default.

Decisions the contract leaves open
----------------------------------
* Rate limit: sliding window of N calls per W seconds per ``X-Client-ID``
  (absent or empty: "default"). Every ``/api/*`` request that arrives counts,
  before auth (a 401 costs budget, like real platforms). A request answered
  429 does NOT count. A call at time t counts while ``now - W < t``.
  ``retry_after`` = seconds until the oldest call leaves the window, rounded
  up, at least 1 (or ``retry_after_override``), sent per ``retry_after_mode``.
* Order on ``/api/*``: down -> rate limit -> auth -> faults (reset, hang, 500,
  HTML, 503) -> handler. ``down`` also covers /auth/token and /health, never
  /_fake/*. Resets are TCP RSTs (SO_LINGER 0), no response bytes.
* Sync: body must be a JSON object whose ``campaign_id`` equals the path id
  (else 400, before the 404 check). Unknown and deleted ids answer 404 at
  once; 503 faults are fast too; only a good sync waits ``sync_latency``
  (+/- uniform ``sync_latency_jitter``, never below 0). ``synced_ids`` counts
  only syncs that ran the whole latency and answered 200.
* Deleted campaigns (``not_found_rate``): campaign i is deleted when
  ``Random(f"{seed}:deleted:{i}").random() < not_found_rate``: same ids every
  run and every call; still listed, sync gives 404. See ``deleted_ids()``.
* Listing: pages slice one sequence: every campaign in id order, each maybe
  followed by a bad row (``bad_row_rate``). ``total`` is that sequence's length
  (N + bad rows), so a page never holds more than ``limit`` rows, nothing real
  lies past ``total``, and counting rows or computing ``page * limit`` agree.
* ``has_more_lies``: has_more is always true; positions past ``total`` are
  filled with phantom rows ``campaign_{N+k}`` (sync: 404), forever.
* ``total_drift``: added to ``pagination.total`` on pages >= 2 (has_more stays
  truthful about the real data unless it lies too).
* ``duplicate_across_pages``: as if a campaign were inserted at the front
  after page 1 was read: pages >= 2 are shifted back one position (page 2
  starts with the last row of page 1) and report ``total`` + 1, so the last
  campaign moves onto the next page and is still inside ``total``: a client
  that follows total/has_more and ignores repeats loses nothing.

Bad rows (client must reject) vs hostile values (client must store): see
``syncer/fake_platform_config.py``.

Stats (``platform.stats``; JSON at GET /_fake/stats) keys: requests
{token,list,sync,health,other}, responses {status: n}, rate_limited,
rate_limited_by_client, calls_while_down, api_calls_by_client,
max_calls_in_any_window {client: n} (over window_seconds: the rate-limit W, or
60 s without a limit), window_seconds, synced_ids {id: n}, synced_total, hung,
resets, server_errors, bad_rows_served, sync_in_flight, concurrent_max,
tokens_issued, tokens_revoked, deleted_ids.
Control: GET /_fake/stats, GET|POST /_fake/config (JSON knobs; extra key
"down_for": seconds), POST /_fake/reset (optional JSON {"rate_limits": bool,
"tokens": bool}). Not rate limited, no auth, work while down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import random
import re
import secrets
import signal
import socket
import struct
import threading
import time
from collections import Counter, defaultdict, deque
from functools import lru_cache

from aiohttp import web

from syncer.fake_platform_config import (
    BAD_ROW_KINDS,
    HOSTILE_KINDS,
    PRESETS,
    FakePlatformConfig,
    bad_row,
    base_campaign,
    hostile_row,
    iso_now,
    parse_rate_limit,
    unit,
)

__all__ = [
    "BAD_ROW_KINDS",
    "FAKE_SECRET",
    "HOSTILE_KINDS",
    "PRESETS",
    "FakePlatform",
    "FakePlatformConfig",
    "parse_rate_limit",
]

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


@lru_cache(maxsize=16)
def _listing(seed, campaigns, bad_row_rate):
    """What the list endpoint pages through: every campaign in order, some followed by a bad row."""
    seq = []
    for i in range(1, campaigns + 1):
        seq.append(("campaign", i))
        if bad_row_rate > 0 and unit(seed, "bad", i) < bad_row_rate:
            seq.append(("bad", i))
    return tuple(seq)


class StatsSnapshot(dict):
    """A plain dict (JSON-able) whose keys are also attributes: ``s.hung == s["hung"]``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _json(status, payload, headers=None):
    return web.json_response(payload, status=status, headers=headers)


def _err(status, error, message):
    return _json(status, {"error": error, "message": message})


def _max_in_window(times, window):
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class FakePlatform:
    """The fake platform server. Thread-safe control from any thread."""

    def __init__(self, config=None, **knobs):
        config = config if config is not None else FakePlatformConfig()
        self._cfg = config.replace(**knobs) if knobs else config.replace()
        self._limit = self._cfg.parsed_rate_limit
        self._lock = threading.RLock()
        self._rng = random.Random(self._cfg.seed)
        self._tokens = {}  # token -> (email, monotonic expiry)
        self._issued = []  # every token ever issued, for tests that prove none leaks
        self._windows = defaultdict(deque)  # client id -> monotonic times inside the limiter window
        self._authed_calls = 0
        self._list_ticks = 0
        self._down_gen = 0
        self._started = time.monotonic()
        self._thread = self._loop = self._stop_requested = self._stopping = None
        self.url = None
        self.reset_stats()

    # ----------------------------------------------------------------- control
    @property
    def config(self):
        return self._cfg

    def update(self, **knobs):
        """Change knobs at runtime (validated; unknown names raise ValueError). Returns the new config."""
        with self._lock:
            new = self._cfg.replace(**knobs)
            if new.seed != self._cfg.seed:
                self._rng = random.Random(new.seed)
            if "down" in knobs:
                self._down_gen += 1  # cancels a pending down_for
            self._cfg, self._limit = new, new.parsed_rate_limit
            return new

    def down_for(self, seconds):
        """Go down now and come back after ``seconds`` (in a timer thread)."""
        with self._lock:
            self.update(down=True)
            gen = self._down_gen

        def back_up():
            with self._lock:
                if self._down_gen == gen:
                    self.update(down=False)

        timer = threading.Timer(float(seconds), back_up)
        timer.daemon = True
        timer.start()

    def reset_stats(self, rate_limits=False, tokens=False):
        """Zero the counters; optionally also empty the limiter windows / revoke all tokens."""
        with self._lock:
            self._requests, self._responses = Counter(), Counter()
            self._rl_by_client, self._synced = Counter(), Counter()
            self._history = defaultdict(list)  # client id -> monotonic times of admitted /api calls
            self._rate_limited = self._calls_while_down = self._hung = self._resets = self._server_errors = 0
            self._bad_rows = self._sync_in_flight = self._concurrent_max = 0
            self._tokens_issued = self._tokens_revoked = 0
            if rate_limits:
                self._windows.clear()
            if tokens:
                self._tokens.clear()

    def issued_tokens(self):
        """Every token this platform has issued (tests search logs and pages for them)."""
        with self._lock:
            return list(self._issued)

    def deleted_ids(self):
        """Ids of campaigns that are listed but answer 404 on sync (``not_found_rate``)."""
        cfg = self._cfg
        if cfg.not_found_rate <= 0:
            return []
        return [f"campaign_{i}" for i in range(1, cfg.campaigns + 1) if self._is_deleted(cfg, i)]

    def campaign_ids(self, include_deleted=False):
        """Ids of the real campaigns (by default only those a sync can succeed on)."""
        gone = set() if include_deleted else set(self.deleted_ids())
        return [f"campaign_{i}" for i in range(1, self._cfg.campaigns + 1) if f"campaign_{i}" not in gone]

    def max_calls_in_window(self, seconds, client_id="default"):
        with self._lock:
            return _max_in_window(self._history.get(client_id, []), seconds)

    @property
    def stats(self):
        with self._lock:
            window = self._limit[1] if self._limit else 60.0
            return StatsSnapshot(
                requests=dict(self._requests), responses=dict(self._responses),
                rate_limited=self._rate_limited, rate_limited_by_client=dict(self._rl_by_client),
                calls_while_down=self._calls_while_down,
                api_calls_by_client={c: len(t) for c, t in self._history.items()},
                max_calls_in_any_window={c: _max_in_window(t, window) for c, t in self._history.items()},
                window_seconds=window, synced_ids=dict(self._synced), synced_total=sum(self._synced.values()),
                hung=self._hung, resets=self._resets, server_errors=self._server_errors,
                bad_rows_served=self._bad_rows, sync_in_flight=self._sync_in_flight,
                concurrent_max=self._concurrent_max, tokens_issued=self._tokens_issued,
                tokens_revoked=self._tokens_revoked, deleted_ids=self.deleted_ids())

    # --------------------------------------------------------------- lifecycle
    def start(self, host="127.0.0.1", port=0, timeout=10.0):
        """Serve from a daemon thread; returns the URL once the port accepts connections."""
        if self._thread is not None:
            return self.url
        ready, errors = threading.Event(), []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(host, port, lambda url: ready.set(), False))
            except BaseException as exc:
                errors.append(exc)
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-platform", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or errors:
            self.stop()
            raise errors[0] if errors else RuntimeError("fake platform did not start in time")
        return self.url

    def stop(self):
        """Stop serving, end hanging and sleeping calls, join the thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and self._stop_requested is not None:
            try:
                loop.call_soon_threadsafe(self._stop_requested.set)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout=15)
        self._thread = self._loop = self._stop_requested = None
        with self._lock:
            self._down_gen += 1

    def serve_forever(self, host="127.0.0.1", port=3001, on_ready=None):
        """Serve in the foreground until SIGINT/SIGTERM; ``on_ready(url)`` once listening."""
        try:
            asyncio.run(self._serve(host, port, on_ready or (lambda url: None), True))
        except KeyboardInterrupt:
            pass

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    async def _serve(self, host, port, on_ready, handle_signals):
        self._stop_requested, self._stopping = asyncio.Event(), asyncio.Event()
        self._started = time.monotonic()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/auth/token", self._token)
        app.router.add_get("/api/campaigns", self._list)
        app.router.add_post("/api/campaigns/{id}/sync", self._sync)
        app.router.add_get("/health", self._health)
        app.router.add_get("/_fake/stats", self._fake_stats)
        app.router.add_get("/_fake/config", self._fake_config)
        app.router.add_post("/_fake/config", self._fake_config)
        app.router.add_post("/_fake/reset", self._fake_reset)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=1024)
            await site.start()
            self.url = f"http://{host}:{runner.addresses[0][1]}"
            if handle_signals and threading.current_thread() is threading.main_thread():
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, self._stop_requested.set)
            on_ready(self.url)
            await self._stop_requested.wait()
        finally:
            self._stopping.set()
            await asyncio.sleep(0.05)  # let hanging/sleeping handlers abort their connections
            await runner.cleanup()

    # ------------------------------------------------------------- plumbing
    def _draw(self, rate):
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    @staticmethod
    def _is_deleted(cfg, i):
        return cfg.not_found_rate > 0 and unit(cfg.seed, "deleted", i) < cfg.not_found_rate

    async def _abort(self, request, count=True):
        """Reset the connection (RST, no response) and wait to be cancelled."""
        if count:
            with self._lock:
                self._resets += 1
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except (AttributeError, OSError):
                pass
            transport.abort()
        await asyncio.sleep(30)  # connection_lost cancels this handler long before
        raise web.HTTPServiceUnavailable()

    async def _wait(self, seconds):
        """Sleep without blocking; True if the server began stopping meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
            return True
        except TimeoutError:
            return False

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
        if cfg.down:
            return await self._abort(request, count=False)
        try:
            if path.startswith("/api/"):
                response = await self._api_gate(request, cfg, endpoint, handler)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            response = _err(exc.status, exc.reason, f"{request.method} {path}: {exc.reason}")
        with self._lock:
            self._responses[response.status] += 1
        return response

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
            if valid:
                self._authed_calls += 1
                if cfg.token_revoke_every and self._authed_calls % cfg.token_revoke_every == 0:
                    del self._tokens[token]
                    self._tokens_revoked += 1
        if not token:
            return _err(401, "Unauthorized", "Missing bearer token")
        if not valid:
            return _err(401, "Token expired", "The access token is expired or invalid")
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
            return _json(500, {"error": "Internal Server Error",
                               "message": f"Unhandled exception (STRIPE_KEY={FAKE_SECRET})",
                               "trace": _TRACE.format(secret=FAKE_SECRET)})
        if self._draw(cfg.html_error_rate):
            code = 502 if self._draw(0.5) else 200
            return web.Response(status=code, text=_HTML.format(code="502 Bad Gateway"), content_type="text/html")
        if self._draw({"list": cfg.list_fail_rate, "sync": cfg.sync_fail_rate}.get(endpoint, 0.0)):
            return _err(503, "Service temporarily unavailable", "The service is overloaded, retry later")
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
        return _json(429, body, headers)

    # ------------------------------------------------------------- endpoints
    async def _token(self, request):
        cfg = self._cfg
        if self._draw(cfg.token_fail_rate):
            return _err(503, "Service temporarily unavailable", "Token service unavailable, retry later")
        bad = _err(401, "Invalid credentials", "Email or password is incorrect")
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
        return _json(200, {"access_token": token, "token_type": "Bearer",
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
                return _err(400, "Bad request", f"{name} must be an integer >= 1")
        page, limit = values["page"], min(values["limit"], cfg.max_page_size)
        with self._lock:
            self._list_ticks += 1
            tick = self._list_ticks
        seq = _listing(cfg.seed, cfg.campaigns, cfg.bad_row_rate)
        size, shift = len(seq), 1 if cfg.duplicate_across_pages and page >= 2 else 0
        first, last = (page - 1) * limit + 1 - shift, page * limit - shift  # 1-based positions in seq
        positions = range(first, last + 1 if cfg.has_more_lies else min(last, size) + 1)
        entries = [seq[pos - 1] if pos <= size else ("phantom", cfg.campaigns + pos - size) for pos in positions]
        with self._lock:  # guards self._rng and the counters; <= max_page_size rows is quick
            data = [self._row(cfg, entry, tick) for entry in entries]
        total = size + shift + (cfg.total_drift if page >= 2 else 0)
        has_more = True if cfg.has_more_lies else last < size
        body = {"data": data, "pagination": {"page": page, "limit": limit, "total": total, "has_more": has_more}}
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
        return _json(200, body)

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
        return hostile_row(row, i) if cfg.hostile_values and i % 5 == 0 else row

    async def _sync(self, request):
        cfg, cid = self._cfg, request.match_info["id"]
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or body.get("campaign_id") != cid:
            return _err(400, "Bad request", 'Body must be {"campaign_id": "<id in the URL>"}')
        match = _CAMPAIGN_ID.match(cid)
        if not match or int(match.group(1)) > cfg.campaigns or self._is_deleted(cfg, int(match.group(1))):
            return _err(404, "Not found", f"Campaign {cid} not found")
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
        return _json(200, {"success": True, "campaign_id": cid, "synced_at": iso_now(),
                           "message": "Campaign data synced successfully"})

    async def _health(self, request):
        uptime = round(time.monotonic() - self._started, 3)
        return _json(200, {"status": "ok", "timestamp": iso_now(), "uptime": uptime})

    async def _fake_stats(self, request):
        return _json(200, self.stats)

    async def _fake_config(self, request):
        if request.method == "GET":
            return _json(200, self._cfg.as_dict())
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("body must be a JSON object of knobs")
            down_for = knobs.pop("down_for", None)
            self.update(**knobs)
            if down_for is not None:
                self.down_for(float(down_for))
        except (ValueError, TypeError) as exc:
            return _err(400, "Bad config", str(exc))
        return _json(200, self._cfg.as_dict())

    async def _fake_reset(self, request):
        try:
            opts = await request.json() if request.can_read_body else {}
        except ValueError:
            opts = {}
        opts = opts if isinstance(opts, dict) else {}
        self.reset_stats(rate_limits=bool(opts.get("rate_limits")), tokens=bool(opts.get("tokens")))
        return _json(200, {"ok": True})
