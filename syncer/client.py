"""The only code that speaks HTTP to the ad platform.

One pooled `requests.Session`, connect and read timeouts on every call, a
token cached until shortly before it expires and fetched again once on a
401, pages read by the contract's stop rules (syncer/pages.py), and
retries (tenacity: exponential backoff with full jitter, or the wait the
platform asks for) on 429, 5xx, timeouts, resets and malformed bodies. Every `/api/*` call,
retries included, first takes a token from the account's rate limiter.

It knows nothing of Django models: callers pass settings in and get plain
data or a `PlatformError` back, with a message that is safe to show.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from syncer.logs import register_secret
from syncer.pages import Page, read_page

log = logging.getLogger(__name__)

TIMEOUT, RATE_LIMITED, SERVER_ERROR = "timeout", "rate_limited", "server_error"
AUTH, CLIENT_ERROR, NETWORK, BAD_RESPONSE = "auth", "client_error", "network", "bad_response"
MAX_PAGES = 10_000  # a platform that never stops saying has_more still ends (SYNC_MAX_PAGES sets a listing's)
MAX_INTEGER_DIGITS = 30  # longer JSON integers are kept as text: no count or budget is that long


class Permit(Protocol):
    # The call (GET: a listing page, POST: a sync) left at `at` and was answered at `answered_at`
    # (None: no answer), both time.time().
    def sent(self, method: str, at: float, answered_at: float | None) -> None: ...


class Limiter(Protocol):
    def acquire(self) -> Permit: ...

    # Wait until this thread's next call is the next for the budget; that call's `acquire` ends the turn.
    def turn(self) -> AbstractContextManager[None]: ...


class _FreePermit:
    def sent(self, method: str, at: float, answered_at: float | None) -> None:
        return None


class NoLimit:
    def acquire(self) -> Permit:
        return _FreePermit()

    def turn(self) -> AbstractContextManager[None]:
        return nullcontext()


class PlatformError(Exception):
    """A failed call: `category` says what kind, `message` is safe to show anyone."""

    def __init__(self, category: str, message: str, *, http_status: int | None = None,
                 retryable: bool = False, retry_after: float | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.http_status = http_status
        self.retryable = retryable
        self.retry_after = retry_after
        self.fatal = fatal  # no later call of this run can succeed either
        self.at = time.monotonic()


@dataclass
class CallStats:
    """What one logical call (or a whole listing) cost, retries included."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    pages: int = 0
    last_status: int | None = None
    last_latency_ms: int | None = None  # the platform's own time on the last try, not our waiting


@dataclass
class ClientSettings:
    base_url: str
    email: str
    password: str = field(repr=False)
    client_id: str
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_attempts: int = 5
    max_wait: float = 120.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    max_outage: float = 300.0
    pool_size: int = 10


class PlatformClient:
    def __init__(self, settings: ClientSettings, limiter: Limiter | None = None) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.limiter = limiter or NoLimit()
        self.session = requests.Session()
        # Proxies from the environment are read once here, not on every call (that lookup was a tenth
        # of a call's CPU); credentials never come from ~/.netrc: we send our own Authorization.
        self._proxies = requests.utils.get_environ_proxies(self.base_url)
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(settings.pool_size, 2), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._basic = base64.b64encode(f"{settings.email}:{settings.password}".encode()).decode()
        register_secret(settings.password)
        register_secret(self._basic)
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = threading.Lock()
        self._backoff = wait_random_exponential(multiplier=settings.backoff_base, max=settings.backoff_cap)
        self._outage_lock = threading.Lock()
        self._platform_seen_up = time.monotonic()
        self._reached = False  # has the platform ever answered this client?

    def close(self) -> None:
        self.session.close()

    # --- public calls -------------------------------------------------------

    def iter_pages(self, *, page_size: int, stats: CallStats, max_pages: int = MAX_PAGES) -> Iterator[Page]:
        """Yield the pages of campaigns until one `is_last`, or `max_pages` of them (the last yielded then is not)."""
        for number in range(1, max_pages + 1):
            body = self._call("GET", "/api/campaigns", stats=stats, params={"page": number, "limit": page_size})
            try:
                page = read_page(body, number, page_size)
            except ValueError as error:
                raise PlatformError(BAD_RESPONSE, str(error)) from None
            stats.pages += 1
            yield page
            if page.is_last:
                return
        log.warning("the campaign list still says there is more after %s pages: stopped at the page cap", max_pages)

    def sync_campaign(self, platform_id: str, *, stats: CallStats) -> None:
        """Ask the platform to sync one campaign; raise PlatformError unless it confirms."""
        path = f"/api/campaigns/{quote(platform_id, safe='')}/sync"

        def confirmed(body: dict) -> dict:
            if body.get("success") is not True:
                raise PlatformError(BAD_RESPONSE, "the platform did not confirm the sync (success is not true)",
                                    http_status=stats.last_status, retryable=True)
            return body

        self._call("POST", path, stats=stats, json={"campaign_id": platform_id}, check=confirmed)

    def check_connection(self) -> Page:
        """Get a token and the first page: proves the URL, the credentials and the budget."""
        stats = CallStats()
        return next(self.iter_pages(page_size=1, stats=stats))

    # --- retries ------------------------------------------------------------

    def _call(self, method: str, path: str, *, stats: CallStats,
              check: Callable[[dict], dict] | None = None, **kwargs: Any) -> dict:
        try:
            for attempt in self._retrying():
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        stats.retries += 1
                    body = self._call_with_token(method, path, stats, **kwargs)
                    return check(body) if check else body
        except PlatformError as error:
            if error.category == AUTH and not error.fatal:
                # A fresh token refused again on every try is not a race between threads.
                raise PlatformError(AUTH, "the platform rejected every freshly issued token (401 after each "
                                          "refresh); check the account's credentials and client id",
                                    http_status=401, fatal=True) from None
            raise
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(lambda error: isinstance(error, PlatformError) and error.retryable),
            stop=self._should_stop,
            wait=self._wait_seconds,
            reraise=True,
        )

    def _should_stop(self, state: RetryCallState) -> bool:
        return state.attempt_number >= self.settings.max_attempts or state.idle_for >= self.settings.max_wait

    def _wait_seconds(self, state: RetryCallState) -> float:
        """The platform's requested wait when it gives one, else full-jitter backoff; capped.

        When a platform that answered before cannot be reached at all, wait
        for it to come back instead of spending tries on it. (One that never
        answered is more likely a wrong URL: that fails fast, after the tries.)
        """
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, PlatformError) and error.category == NETWORK and self._reached:
            self._wait_for_platform(failed_at=error.at)
            return 0.0
        asked = getattr(error, "retry_after", None)
        wait = asked if asked is not None else self._backoff(state)
        return max(0.0, min(wait, self.settings.max_wait - state.idle_for))

    # --- outages ------------------------------------------------------------

    def _wait_for_platform(self, *, failed_at: float) -> None:
        """Block until the platform answers /health again; one thread probes, the others wait.

        Probes back off exponentially (capped) so a platform that is down is
        not hammered; past `max_outage` the run gives up with a clear error.
        """
        with self._outage_lock:
            if self._platform_seen_up > failed_at:
                return  # another thread saw it come back after our failure
            started, delay = time.monotonic(), self.settings.backoff_base
            log.warning("the platform at %s is unreachable; pausing calls until it answers again", self.base_url)
            while not self._health_ok():
                if time.monotonic() - started > self.settings.max_outage:
                    raise PlatformError(NETWORK, f"the platform at {self.base_url} has been unreachable for more "
                                                 f"than {self.settings.max_outage:g} s (SYNC_MAX_OUTAGE); check "
                                                 "AD_PLATFORM_URL and the platform's status", fatal=True)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_cap)
            self._platform_seen_up = time.monotonic()
            log.warning("the platform at %s answers again after %.1f s; resuming", self.base_url,
                        time.monotonic() - started)

    def _health_ok(self) -> bool:
        try:
            response = self.session.get(self.base_url + "/health", proxies=self._proxies,
                                        timeout=(self.settings.connect_timeout, self.settings.read_timeout))
        except requests.RequestException:
            return False
        return response.status_code < 500

    # --- tokens -------------------------------------------------------------

    def _call_with_token(self, method: str, path: str, stats: CallStats, **kwargs: Any) -> dict:
        token = self._current_token(stats)
        try:
            return self._send(method, path, stats, token, **kwargs)
        except PlatformError as error:
            if error.category != AUTH:
                raise
        # Tokens are revoked early too: fetch a new one once and try again once.
        self._forget_token(token)
        fresh = self._current_token(stats)  # a refusal here is about the credentials and says so
        try:
            return self._send(method, path, stats, fresh, **kwargs)
        except PlatformError as error:
            if error.category == AUTH:
                # Refused twice. With calls in parallel another thread's call may have ended the fresh
                # token (platforms revoke early): worth another try, and fatal once the tries are spent.
                raise PlatformError(AUTH, "the platform rejected a freshly issued token (401 twice)",
                                    http_status=401, retryable=True) from None
            raise

    def _current_token(self, stats: CallStats) -> str:
        with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_refresh_at:
                self._token, lifetime = self._fetch_token(stats)
                margin = min(60.0, lifetime * 0.1)
                self._token_refresh_at = time.monotonic() + lifetime - margin
            return self._token

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:  # another thread may have replaced it already
                self._token = None

    def _fetch_token(self, stats: CallStats) -> tuple[str, float]:
        try:
            for attempt in self._retrying():
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        stats.retries += 1
                    return self._request_token(stats)
        except PlatformError as error:
            # Its own retries are spent; the calling call must not retry it all again.
            error.retryable = False
            raise
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _request_token(self, stats: CallStats) -> tuple[str, float]:
        response = self._http("POST", "/auth/token", stats, {"Authorization": f"Basic {self._basic}"})
        if response.status_code == 401:
            raise PlatformError(AUTH, "the platform rejected the account's credentials "
                                      "(email or password; 401 on /auth/token); "
                                      "fix AD_PLATFORM_EMAIL / AD_PLATFORM_PASSWORD or the account in the admin",
                                http_status=401, fatal=True)
        body = self._json(response, stats)
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token or isinstance(lifetime, bool) \
                or not isinstance(lifetime, (int, float)) or lifetime <= 0:
            raise PlatformError(BAD_RESPONSE, "the token endpoint answered without a usable access_token",
                                http_status=response.status_code, retryable=True)
        register_secret(token)
        return token, float(lifetime)

    # --- one HTTP exchange ----------------------------------------------------

    def _send(self, method: str, path: str, stats: CallStats, token: str, **kwargs: Any) -> dict:
        permit = self.limiter.acquire()  # every /api/* call, retries included, spends budget
        headers = {"Authorization": f"Bearer {token}", "X-Client-ID": self.settings.client_id}
        response = self._http(method, path, stats, headers, permit=permit, **kwargs)
        if response.status_code == 401:
            raise PlatformError(AUTH, "the platform rejected the token (401)", http_status=401)
        return self._json(response, stats)

    def _http(self, method: str, path: str, stats: CallStats, headers: dict, *,
              permit: Permit | None = None, **kwargs: Any) -> requests.Response:
        stats.requests += 1
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        started, sent_at, answered_at = time.monotonic(), time.time(), None
        try:
            response = self.session.request(method, self.base_url + path, headers=headers, timeout=timeout,
                                            proxies=self._proxies, **kwargs)
            answered_at = time.time()
        except requests.Timeout:
            stats.timeouts += 1
            raise PlatformError(TIMEOUT, f"no answer from the platform within {self.settings.read_timeout:g} s",
                                retryable=True) from None
        except requests.RequestException:
            raise PlatformError(NETWORK, f"could not reach the platform at {self.base_url} "
                                         "(connection refused or reset)", retryable=True) from None
        finally:
            if permit is not None:
                permit.sent(method, sent_at, answered_at)
        self._reached = True
        stats.last_status = response.status_code
        stats.last_latency_ms = int((time.monotonic() - started) * 1000)
        return response

    def _json(self, response: requests.Response, stats: CallStats) -> dict:
        status = response.status_code
        if status == 429:
            stats.rate_limited += 1
            raise self._rate_limited(response)
        if status >= 500:
            stats.server_errors += 1
            raise PlatformError(SERVER_ERROR, f"the platform failed with HTTP {status}", http_status=status,
                                retryable=True)
        if status == 404:
            raise PlatformError(CLIENT_ERROR, "not found on the platform (404): it may have been deleted",
                                http_status=status)
        if status >= 400:
            raise PlatformError(CLIENT_ERROR, f"the platform refused the request with HTTP {status}",
                                http_status=status)
        try:
            body = json.loads(response.content, parse_int=_parse_int)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PlatformError(BAD_RESPONSE, f"the platform answered HTTP {status} with a body that is not a "
                                              "JSON object", http_status=status, retryable=True)
        return body

    def _rate_limited(self, response: requests.Response) -> PlatformError:
        wait = _retry_after_seconds(response)
        if wait is not None and wait > self.settings.max_wait:
            return PlatformError(RATE_LIMITED, f"rate limited (429) and told to wait {wait:.0f} s, more than the "
                                               f"{self.settings.max_wait:.0f} s cap (SYNC_MAX_WAIT)", http_status=429)
        return PlatformError(RATE_LIMITED, "rate limited by the platform (429)", http_status=429,
                             retryable=True, retry_after=wait)


def _parse_int(digits: str) -> int | str:
    """A JSON integer; one too long to be a count comes back as its digits (rows then call it out of range).

    Python refuses to parse integers of more than 4,300 digits: one such
    value in one row must not make the whole page unreadable.
    """
    return int(digits) if len(digits) <= MAX_INTEGER_DIGITS else digits


def _retry_after_seconds(response: requests.Response) -> float | None:
    """The wait from a Retry-After header (seconds or a date) or the body's retry_after."""
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    try:
        value = response.json().get("retry_after")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
