"""The fake platform's server: its state, its controls and stats, and its lifecycle (the package doc has the rules)."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import statistics
import struct
import threading
import time
import types
from collections import Counter, defaultdict, deque

from aiohttp import web

from syncer.fake_platform.catalog import Catalog
from syncer.fake_platform.config import FakePlatformConfig
from syncer.fake_platform.controls import Controls
from syncer.fake_platform.data import unit
from syncer.fake_platform.gate import Gate
from syncer.fake_platform.handlers import REFERENCE, ReferenceHandlers
from syncer.fake_platform.metered import METERED, MeteredHandlers
from syncer.fake_platform.tokens import Tokens

DIALECTS = {dialect.name: dialect for dialect in (REFERENCE, METERED)}


class StatsSnapshot(dict):
    """A plain dict (JSON-able) whose keys are also attributes: ``s.hung == s["hung"]``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _max_in_window(times, window):
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _reuse_gap(times, calls):
    """The median time from a call to the `calls`-th after it: how long a client's rate slot went unused, at the
    median (the window itself for a client that paces perfectly); None with too few calls to tell."""
    gaps = [times[i + calls] - times[i] for i in range(len(times) - calls)]
    return statistics.median_low(gaps) if gaps else None


def _pacing_by_client(history, limit):
    """Per client: its first admitted call, and under a limit of N calls its first window (first call to Nth)
    and its slots' median reuse gap."""
    first_call = {c: t[0] for c, t in history.items() if t}  # monotonic, this process
    if not limit:
        return first_call, {}, {}
    calls = limit[0]
    first_window = {c: t[calls - 1] - t[0] for c, t in history.items() if len(t) >= calls}
    return first_call, first_window, {c: _reuse_gap(t, calls) for c, t in history.items()}


class FakePlatform(Gate, Tokens, Catalog, Controls, ReferenceHandlers, MeteredHandlers):
    """The fake platform server, speaking the dialect its config names. Thread-safe control from any thread."""

    def __init__(self, config=None, **knobs):
        config = config if config is not None else FakePlatformConfig()
        self._cfg = config.replace(**knobs) if knobs else config.replace()
        self._limit = self._cfg.parsed_rate_limit
        self._dialect = DIALECTS[self._cfg.dialect]
        self._lock = threading.RLock()
        self._rng = random.Random(self._cfg.seed)
        self._tokens = {}  # token -> (email, monotonic expiry)
        self._issued = []  # every token ever issued, for tests that prove none leaks
        self._windows = defaultdict(deque)  # client id -> monotonic times inside the limiter window
        self._authed_calls = 0
        self._list_ticks = 0
        self._down_gen = 0
        self._deleted_live = set()  # campaign numbers deleted while serving (``delete_between_pages``)
        self._deletion_done = False
        self._inserted = False  # campaign N+1 inserted at the front (``duplicate_across_pages``)
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
            if new.dialect != self._cfg.dialect:
                raise ValueError("dialect is fixed while the server runs: start another FakePlatform")
            if new.seed != self._cfg.seed:
                self._rng = random.Random(new.seed)
            if "down" in knobs:
                self._down_gen += 1  # cancels a pending down_for
            if "duplicate_across_pages" in knobs:
                self._inserted = False
            if "delete_between_pages" in knobs:
                self._deleted_live, self._deletion_done = set(), False
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
            self._throttled, self._throttled_by_client = 0, Counter()
            self._history = defaultdict(list)  # client id -> monotonic times of admitted /api calls
            self._rate_limited = self._calls_while_down = self._hung = self._resets = self._server_errors = 0
            self._bad_rows = self._bad_fields = self._sync_in_flight = self._concurrent_max = 0
            self._tokens_issued = self._tokens_revoked = self._oversized_bytes_sent = 0
            if rate_limits:
                self._windows.clear()
            if tokens:
                self._tokens.clear()

    def issued_tokens(self):
        """Every token this platform has issued (tests search logs and pages for them)."""
        with self._lock:
            return list(self._issued)

    def deleted_ids(self):
        """Ids of campaigns that answer 404 on sync: listed but deleted (``not_found_rate``), or deleted while
        serving (``delete_between_pages``: no longer listed either)."""
        cfg = self._cfg
        with self._lock:
            live_deletions = set(self._deleted_live)
        if cfg.not_found_rate <= 0 and not live_deletions:
            return []
        return [self._dialect.campaign_id(cfg.seed, i) for i in range(1, cfg.campaigns + 1)
                if self._is_deleted(cfg, i) or i in live_deletions]

    def campaign_ids(self, include_deleted=False):
        """Ids of the real campaigns, one inserted while serving included (by default only those a sync can succeed
        on)."""
        gone = set() if include_deleted else set(self.deleted_ids())
        seed, last = self._cfg.seed, self._cfg.campaigns + int(self._inserted)
        ids = (self._dialect.campaign_id(seed, i) for i in range(1, last + 1))
        return [campaign_id for campaign_id in ids if campaign_id not in gone]

    def max_calls_in_window(self, seconds, client_id="default"):
        with self._lock:
            return _max_in_window(self._history.get(client_id, []), seconds)

    @property
    def stats(self):
        with self._lock:
            window = self._limit[1] if self._limit else 60.0
            first_call, first_window, reuse_gap = _pacing_by_client(self._history, self._limit)
            return StatsSnapshot(
                requests=dict(self._requests), responses=dict(self._responses),
                rate_limited=self._rate_limited, rate_limited_by_client=dict(self._rl_by_client),
                throttled=self._throttled, throttled_by_client=dict(self._throttled_by_client),
                calls_while_down=self._calls_while_down,
                api_calls_by_client={c: len(t) for c, t in self._history.items()},
                max_calls_in_any_window={c: _max_in_window(t, window) for c, t in self._history.items()},
                first_call_by_client=first_call, first_window_by_client=first_window, reuse_gap_by_client=reuse_gap,
                window_seconds=window, synced_ids=dict(self._synced), synced_total=sum(self._synced.values()),
                hung=self._hung, resets=self._resets, server_errors=self._server_errors,
                bad_rows_served=self._bad_rows, bad_fields_served=self._bad_fields, sync_in_flight=self._sync_in_flight,
                concurrent_max=self._concurrent_max, tokens_issued=self._tokens_issued,
                tokens_revoked=self._tokens_revoked, deleted_ids=self.deleted_ids(),
                oversized_bytes_sent=self._oversized_bytes_sent)

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
        for method, path, handler in self._dialect.routes:
            app.router.add_route(method, path, types.MethodType(handler, self))
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
