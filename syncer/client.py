"""The only code that speaks HTTP to the ad platform.

One pooled `requests.Session`, connect and read timeouts on every call, one
bearer token shared by the client's threads and replaced when refused
(syncer/tokens.py), pages read by the contract's stop rules (syncer/pages.py), bodies never
read past SYNC_MAX_BODY_MB (syncer/answers.py), retries with full-jitter
exponential backoff (or the wait the platform asks for) on 429, 5xx,
timeouts, resets and malformed bodies, and an outage breaker that holds all
the client's calls while the platform is down (syncer/breaker.py). Every
`/api/*` call, retries included, first takes a slot from the account's rate
limiter.

It knows nothing of Django models: callers pass settings in and get plain
data or a `PlatformError` back, with a message that is safe to show.
"""
from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from syncer.answers import Answer, BodyTooLarge, api_body, read_answer
from syncer.breaker import Breaker, Held, OutageTooLong, Pass, TurnWatch
from syncer.errors import (  # noqa: F401 (re-exported: callers import them from here)
    AUTH,
    BAD_RESPONSE,
    CLIENT_ERROR,
    NETWORK,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    PlatformError,
)
from syncer.logs import forget_secret, register_secret
from syncer.pages import Page, read_page
from syncer.tokens import AccessWithdrawn, Lease, TokenKeeper

log = logging.getLogger(__name__)

MAX_PAGES = 10_000  # a platform that never stops saying has_more still ends (SYNC_MAX_PAGES sets a listing's)
MAX_REFUSALS_PER_CALL = 50  # 401s one call may meet while other calls go through: a safety net, never seen in churn


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
    max_body_mb: float = 10.0


class PlatformClient:
    def __init__(self, settings: ClientSettings, limiter: Limiter | None = None, *,
                 on_outage: Callable[[float | None], None] | None = None) -> None:
        """`on_outage` hears when an outage begins (its wall time) and when it ends (None)."""
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.limiter = TurnWatch(limiter or NoLimit())
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
        self._tokens = TokenKeeper()
        self.breaker = Breaker(name=self.base_url, backoff_base=settings.backoff_base,
                               backoff_cap=settings.backoff_cap, max_outage=settings.max_outage, on_change=on_outage)
        self._max_body_bytes = int(settings.max_body_mb * 1024 * 1024)
        # Has the platform answered one of this client's data calls with something not outage-like? Until then
        # failures spend tries: a platform that never answered is more likely a wrong URL, or an endpoint
        # that always fails, than an outage (and "Test connection" stays quick).
        self._reached = False
        self.closed = False

    def close(self) -> None:
        """Close the connections and forget the secrets (a replaced client: its calls in flight still end)."""
        if self.closed:
            return
        self.closed = True
        self.session.close()
        self._tokens.forget_all()
        forget_secret(self.settings.password)
        forget_secret(self._basic)

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

    # --- tries ----------------------------------------------------------------

    def _call(self, method: str, path: str, *, stats: CallStats,
              check: Callable[[dict], dict] | None = None, **kwargs: Any) -> dict:
        """One logical /api call, to its end: its tries, token refreshes and waits in an outage."""
        self._refuse_unsendable_client_id()
        call = _Call(stats, began=time.monotonic())

        def one_try() -> dict:
            body = self._api_try(method, path, call, **kwargs)
            return check(body) if check else body

        try:
            return self._with_tries(one_try, call)
        except OutageTooLong as outage:
            raise PlatformError(NETWORK, f"the platform at {self.base_url} has been unavailable (5xx, timeouts or "
                                         f"refused connections) for more than {outage.seconds:g} s (SYNC_MAX_OUTAGE); "
                                         "check the platform's status, then retry the failed campaigns",
                                fatal=True) from None
        except AccessWithdrawn:
            raise PlatformError(AUTH, "the platform refused two freshly issued tokens in a row (401 on first use, "
                                      "no call accepted): its access for this account was withdrawn; check the "
                                      "account's credentials, API access and client id with the platform",
                                http_status=401, fatal=True) from None

    def _with_tries(self, one_try: Callable[[], dict], call: _Call) -> dict:
        """Run `one_try` until it succeeds; a failure spends a try unless the breaker held it or a token was refused."""
        tries, waited = 0, 0.0
        while True:
            call.sent = False
            try:
                return one_try()
            except (Held, _TokenRefused):
                pass  # a held call waits in the breaker at its next try; a refused token is replaced there
            except PlatformError as error:
                tries += 1
                if not error.retryable or tries >= self.settings.max_attempts or waited >= self.settings.max_wait:
                    raise
                wait = self._wait_seconds(error, tries, waited)
                time.sleep(wait)
                waited += wait
            if call.sent:
                call.stats.retries += 1

    def _wait_seconds(self, error: PlatformError, tries: int, waited: float) -> float:
        """The platform's requested wait when it gives one, else full-jitter exponential backoff; capped."""
        if error.retry_after is not None:
            wait = error.retry_after
        else:
            wait = random.uniform(0, min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (tries - 1)))
        return max(0.0, min(wait, self.settings.max_wait - waited))

    def _refuse_unsendable_client_id(self) -> None:
        client_id = self.settings.client_id
        if not (client_id.isascii() and client_id.isprintable()) or " " in client_id:
            raise PlatformError(CLIENT_ERROR, "the account's client id is not printable ASCII without spaces, so it "
                                              "cannot be sent as the X-Client-ID header; fix it in the admin "
                                              "(or AD_PLATFORM_CLIENT_ID)", fatal=True)

    # --- one try: the breaker, a rate slot, a token, the exchange -------------------

    def _api_try(self, method: str, path: str, call: _Call, **kwargs: Any) -> dict:
        ticket = self.breaker.enter(holds_turn=self.limiter.holds_turn())
        permit = self.limiter.acquire()  # every /api/* call, retries included, spends budget
        try:
            if not self.breaker.admit(ticket):
                raise Held()  # it opened while this call waited for its slot
            lease = self._tokens.lease(lambda: self._fetch_token(call, ticket), call_began=call.began)
        except BaseException:
            permit.sent(method, time.time(), None)  # no call on this slot: dated now, as if one had gone
            self.breaker.abandon(ticket)
            raise
        headers = {"Authorization": f"Bearer {lease.token}", "X-Client-ID": self.settings.client_id}
        try:
            answer = self._exchange(ticket, method, path, call, headers, permit=permit, data_call=True, **kwargs)
        except BaseException:
            self._tokens.settle(lease, refused=None)
            raise
        self._settle_token(lease, answer, call)
        return api_body(answer, max_wait=self.settings.max_wait)

    def _settle_token(self, lease: Lease, answer: Answer, call: _Call) -> None:
        """Tell the token keeper what became of its token; a 401 is tried again with a new one, spending no try."""
        self._tokens.settle(lease, refused=_token_refused(answer.status))
        if answer.status != 401:
            return
        call.refusals += 1
        if call.refusals >= MAX_REFUSALS_PER_CALL:
            raise PlatformError(AUTH, f"the platform refused this call's token {call.refusals} times while other "
                                      "calls went through (401)", http_status=401)
        raise _TokenRefused()

    def _fetch_token(self, call: _Call, ticket: Pass) -> tuple[str, float]:
        answer = self._exchange(ticket, "POST", "/auth/token", call, {"Authorization": f"Basic {self._basic}"})
        if answer.status == 401:
            raise PlatformError(AUTH, "the platform rejected the account's credentials "
                                      "(email or password; 401 on /auth/token); "
                                      "fix AD_PLATFORM_EMAIL / AD_PLATFORM_PASSWORD or the account in the admin",
                                http_status=401, fatal=True)
        body = api_body(answer, max_wait=self.settings.max_wait)
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token or isinstance(lifetime, bool) \
                or not isinstance(lifetime, (int, float)) or lifetime <= 0:
            raise PlatformError(BAD_RESPONSE, "the token endpoint answered without a usable access_token",
                                http_status=answer.status, retryable=True)
        return token, float(lifetime)

    def _exchange(self, ticket: Pass, method: str, path: str, call: _Call, headers: dict, *,
                  permit: Permit | None = None, data_call: bool = False, **kwargs: Any) -> Answer:
        """One HTTP exchange, told to the breaker; Held when it failed in an outage (then no try is spent)."""
        sent_at = time.monotonic()
        try:
            answer = self._http(method, path, call, headers, permit=permit, **kwargs)
        except PlatformError as error:
            if error.category not in (TIMEOUT, NETWORK):
                self._reached = self._reached or data_call
                self.breaker.answered(ticket, sent_at=sent_at)
            elif self._reached and self.breaker.failed(ticket, sent_at=sent_at):
                raise Held() from None
            self.breaker.abandon(ticket)
            raise
        except BaseException:
            self.breaker.abandon(ticket)
            raise
        if answer.status < 500:
            call.stats.rate_limited += answer.status == 429
            self._reached = self._reached or data_call
            self.breaker.answered(ticket, sent_at=sent_at)
            return answer
        call.stats.server_errors += 1
        if self._reached and self.breaker.failed(ticket, sent_at=sent_at):
            raise Held()
        return answer

    def _http(self, method: str, path: str, call: _Call, headers: dict, *,
              permit: Permit | None = None, **kwargs: Any) -> Answer:
        call.stats.requests += 1
        call.sent = True
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        started, sent_at, answered_at = time.monotonic(), time.time(), None
        try:
            response = self.session.request(method, self.base_url + path, headers=headers, timeout=timeout,
                                            proxies=self._proxies, stream=True, **kwargs)
            answered_at = time.time()
            answer = read_answer(response, max_bytes=self._max_body_bytes)
        except BodyTooLarge:
            raise PlatformError(BAD_RESPONSE, f"the platform's answer is larger than the {self.settings.max_body_mb:g} "
                                              "MB cap and was not read further; raise SYNC_MAX_BODY_MB if its answers "
                                              "are that large", http_status=response.status_code) from None
        except requests.Timeout:
            call.stats.timeouts += 1
            raise PlatformError(TIMEOUT, f"no answer from the platform within {self.settings.read_timeout:g} s",
                                retryable=True) from None
        except requests.RequestException:
            raise PlatformError(NETWORK, f"could not reach the platform at {self.base_url} "
                                         "(connection refused or reset)", retryable=True) from None
        finally:
            if permit is not None:
                permit.sent(method, sent_at, answered_at)
        call.stats.last_status = answer.status
        call.stats.last_latency_ms = int((time.monotonic() - started) * 1000)
        return answer

def _token_refused(status: int) -> bool | None:
    """True: a 401; False: the token was accepted (an answer under 500, but for a 429: that one is told before
    the token is looked at); None: the answer says nothing of the token."""
    if status == 401:
        return True
    return None if status == 429 or status >= 500 else False


@dataclass
class _Call:
    """One logical call's bookkeeping across its tries."""

    stats: CallStats
    began: float
    sent: bool = False  # did the current try send anything?
    refusals: int = 0


class _TokenRefused(Exception):
    """A data call's token was refused (401): try again with a new one, spending no try."""


