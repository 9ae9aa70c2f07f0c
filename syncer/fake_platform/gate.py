"""What stands in front of both dialects' endpoints: counting, outages, the budget window and the fault draws.

A mixin of ``FakePlatform`` (``server.py``). ``self._dialect`` (``handlers.REFERENCE`` or ``metered.METERED``)
says which paths are the API, how its errors look and which gate its API calls go through.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

FAKE_SECRET = "sk_live_FAKE51HxQ9dEADBEEFc0ffee"  # appears in 500 bodies; must never reach a page
HTML_PAGE = ("<!DOCTYPE html><html><head><title>{code}</title></head><body><center><h1>{code}</h1></center>"
             "<hr><center>nginx</center></body></html>")
TRACE = """Traceback (most recent call last):
  File "/srv/adplatform/app/handlers.py", line 214, in handle
    conn = pool.connect(dsn="postgresql://ads_admin:Pa55w0rd-prod@db-7.internal:5432/ads")
  File "/srv/adplatform/venv/lib/python3.9/site-packages/psycopg2/__init__.py", line 127, in connect
    conn = _connect(dsn, connection_factory=connection_factory, **kwasync)
psycopg2.OperationalError: FATAL: too many connections (STRIPE_KEY={secret})
"""


# Headers a gate wants on every answer; a streamed answer, sent before the gate sees it, adds them itself.
ANSWER_HEADERS = web.RequestKey("answer_headers", dict)


def json_response(status, payload, headers=None):
    return web.json_response(payload, status=status, headers=headers)


@dataclass(frozen=True)
class Dialect:
    """What the shared machinery needs to know of one dialect."""

    name: str
    api_prefix: str  # calls under it are budgeted, authenticated and faulted
    endpoints: dict  # exact path -> stats key ("token", "list", "health")
    sync_path: re.Pattern
    errors: type  # error bodies: unavailable(message), server_error(), http(status, reason, text)
    api_gate: Callable  # (platform, request, cfg, endpoint, handler) -> response
    routes: tuple  # (method, path, unbound handler)
    campaign_id: Callable  # (seed, campaign number) -> the id this dialect serves


@dataclass(frozen=True)
class Usage:
    """A client's budget window as one call left it."""

    admitted: bool
    calls: int  # the budget: calls per window
    used: int  # calls in the window now, this one included when admitted
    reset: float  # seconds until the oldest call in the window leaves it


class Gate:
    @web.middleware
    async def _middleware(self, request, handler):
        path = request.path
        if path.startswith("/_fake/"):
            return await handler(request)
        cfg, dialect = self._cfg, self._dialect
        endpoint = dialect.endpoints.get(path) or ("sync" if dialect.sync_path.match(path) else "other")
        with self._lock:
            self._requests[endpoint] += 1
            if cfg.down:
                self._calls_while_down += 1
        try:
            if cfg.down:
                response = await self._outage(request, cfg)
            elif path.startswith(dialect.api_prefix):
                response = await dialect.api_gate(self, request, cfg, endpoint, handler)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            response = dialect.errors.http(exc.status, exc.reason, f"{request.method} {path}: {exc.reason}")
        with self._lock:
            self._responses[response.status] += 1
        return response

    async def _outage(self, request, cfg):
        """What a call gets while the platform is down (``down_mode``)."""
        if cfg.down_mode == "503":
            return self._dialect.errors.unavailable("The platform is down for maintenance")
        if cfg.down_mode == "hang":
            await self._stopping.wait()  # a client disconnect cancels this handler
        return await self._abort(request, count=False)

    def _admit(self, client):
        """Count one API call against ``client``'s sliding window; None without a rate limit.

        A call over the budget is not admitted and does not count; admitted calls go into the history
        the stats' ``max_calls_in_any_window`` is computed from.
        """
        now = time.monotonic()
        with self._lock:
            usage = None
            if self._limit is not None:
                calls, window = self._limit
                times = self._windows[client]
                while times and times[0] <= now - window:
                    times.popleft()
                admitted = len(times) < calls
                if admitted:
                    times.append(now)
                else:
                    self._rate_limited += 1
                    self._rl_by_client[client] += 1
                usage = Usage(admitted, calls, len(times), times[0] + window - now)
            if usage is None or usage.admitted:
                self._history[client].append(now)
            return usage

    async def _fault(self, request, cfg, endpoint):
        """The answer of a fault drawn for this call, or None: reset, hang, 500, HTML, 503, drawn in that order."""
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
            return self._dialect.errors.server_error()
        if self._draw(cfg.html_error_rate):
            code = 502 if self._draw(0.5) else 200
            return web.Response(status=code, text=HTML_PAGE.format(code="502 Bad Gateway"), content_type="text/html")
        if self._draw({"list": cfg.list_fail_rate, "sync": cfg.sync_fail_rate}.get(endpoint, 0.0)):
            return self._dialect.errors.unavailable("The service is overloaded, retry later")
        return None
