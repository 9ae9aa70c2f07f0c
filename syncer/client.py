"""The only code that speaks HTTP to an ad platform, the same for every dialect.

What to send and what an answer means is the account's platform adapter's
(syncer/platforms/); the rest is here: one pooled `requests.Session`, connect and read timeouts on every call, one
bearer token shared by the client's threads and replaced when refused
(syncer/tokens.py), bodies never read past SYNC_MAX_BODY_MB
(syncer/answers.py), retries with full-jitter exponential backoff on 5xx,
timeouts, resets and malformed bodies, throttles waited out as told (they
cost no try), and an outage breaker that holds all the client's calls while
the platform is down (syncer/breaker.py). Every data call, retries
included, first takes a slot from the platform client's rate limiter, which
hears what each answer says of the platform's real budget.

It knows nothing of Django models: callers pass settings in and get plain
data or a `PlatformError` back, with a message that is safe to show.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from syncer.answers import Answer, BodyTooLarge, read_answer
from syncer.breaker import Breaker, Held, OutageTooLong, Pass
from syncer.calls import CallStats, ClientSettings
from syncer.errors import (
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
from syncer.pacing import Limiter, NoLimit, Permit
from syncer.platforms import platform_named
from syncer.platforms.base import (
    OK,
    OUTAGE,
    PERMANENT,
    THROTTLED,
    TOKEN_REFUSED,
    BudgetSignal,
    Page,
    Request,
    Verdict,
)
from syncer.stops import pause
from syncer.tokens import AccessWithdrawn, Lease, TokenKeeper

log = logging.getLogger(__name__)

MAX_PAGES = 10_000  # a platform that never stops saying has_more still ends (SYNC_MAX_PAGES sets a listing's)
MAX_REFUSALS_PER_CALL = 50  # 401s one call may meet while other calls go through: a safety net, never seen in churn


class PlatformClient:
    def __init__(self, settings: ClientSettings, limiter: Limiter | None = None, *,
                 on_outage: Callable[[float | None], None] | None = None) -> None:
        """`on_outage` hears when an outage begins (its wall time) and when it ends (None)."""
        self.settings = settings
        self.platform = platform_named(settings.platform)
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
        after = None
        for number in range(1, max_pages + 1):
            request = self.platform.list_request(page_size=page_size, number=number, after=after)
            body = self._call(request, stats=stats)
            try:
                page = self.platform.page_read(body, number=number, page_size=page_size)
            except ValueError as error:
                raise PlatformError(BAD_RESPONSE, str(error)) from None
            stats.pages += 1
            yield page
            if page.is_last:
                return
            after = page.after
        log.warning("the campaign list still says there is more after %s pages: stopped at the page cap", max_pages)

    def sync_campaign(self, platform_id: str, *, stats: CallStats, stop: threading.Event | None = None) -> None:
        """Sync one campaign: PlatformError unless the platform confirms; Stopped when `stop` is set while it waits."""
        def confirmed(body: dict) -> dict:
            if not self.platform.sync_confirmed(body):
                raise PlatformError(BAD_RESPONSE, "the platform did not confirm the sync",
                                    http_status=stats.last_status, retryable=True)
            return body

        self._call(self.platform.sync_request(platform_id), stats=stats, check=confirmed, stop=stop)

    def check_connection(self) -> Page:
        """Get a token and the first page: proves the URL, the credentials and the budget."""
        stats = CallStats()
        return next(self.iter_pages(page_size=1, stats=stats))

    # --- tries ----------------------------------------------------------------

    def _call(self, request: Request, *, stats: CallStats, check: Callable[[dict], dict] | None = None,
              stop: threading.Event | None = None) -> dict:
        """One logical data call, to its end: its tries, throttles, token refreshes and waits in an outage."""
        self._refuse_unsendable_client_id()
        call = _Call(stats, began=time.monotonic(), stop=stop)

        def one_try() -> dict:
            body = self._api_try(request, call)
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
        """Run `one_try` until it succeeds; a failure spends a try unless the breaker held it, a token was
        refused or the platform throttled it (then it waits as told, within SYNC_MAX_WAIT in all)."""
        tries, waited, throttles = 0, 0.0, 0
        while True:
            call.sent = False
            try:
                return one_try()
            except (Held, _TokenRefused):
                pass  # a held call waits in the breaker at its next try; a refused token is replaced there
            except _Throttled as throttle:
                throttles += 1
                wait = self._throttle_wait(throttle, throttles, waited)
                pause(wait, call.stop)
                waited += wait
            except PlatformError as error:
                tries += 1
                if not error.retryable or tries >= self.settings.max_attempts or waited >= self.settings.max_wait:
                    raise
                wait = self._wait_seconds(error, tries, waited)
                pause(wait, call.stop)
                waited += wait
            if call.sent:
                call.stats.retries += 1

    def _throttle_wait(self, throttle: _Throttled, throttles: int, waited: float) -> float:
        """The wait the platform asked for (else backoff); RATE_LIMITED when it is past SYNC_MAX_WAIT."""
        cap = self.settings.max_wait
        if throttle.wait is not None and throttle.wait > cap:
            raise PlatformError(RATE_LIMITED, f"{throttle.message} and told to wait {throttle.wait:.0f} s, more "
                                              f"than the {cap:.0f} s cap (SYNC_MAX_WAIT)", http_status=throttle.status)
        if waited >= cap:
            raise PlatformError(RATE_LIMITED, f"{throttle.message}, still after waiting {waited:.0f} s "
                                              "(SYNC_MAX_WAIT)", http_status=throttle.status)
        wait = throttle.wait
        if wait is None:
            wait = random.uniform(0, min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (throttles - 1)))
        return max(0.0, min(wait, cap - waited))

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

    def _api_try(self, request: Request, call: _Call) -> dict:
        ticket = self.breaker.enter(call.stop)
        try:
            permit = self.limiter.acquire(call.stop)  # every data call, retries included, spends budget
        except BaseException:
            self.breaker.abandon(ticket)
            raise
        try:
            if not self.breaker.admit(ticket):
                raise Held()  # it opened while this call waited for its slot
            lease = self._tokens.lease(lambda: self._fetch_token(call, ticket), call_began=call.began)
        except BaseException:
            permit.sent(request.method, time.time(), None)  # no call on this slot: dated now, as if one had gone
            self.breaker.abandon(ticket)
            raise
        headers = {**request.headers, "Authorization": f"Bearer {lease.token}", "X-Client-ID": self.settings.client_id}
        try:
            answer, verdict = self._exchange(ticket, request, call, headers, permit=permit, data_call=True)
        except BaseException:
            self._tokens.settle(lease, refused=None)
            raise
        self._learn(answer, verdict)
        self._settle_token(lease, verdict, call)
        return self._body_of(answer, verdict)

    def _body_of(self, answer: Answer, verdict: Verdict) -> dict:
        """The body of an OK answer, or what its verdict means: a throttle to wait out, or the PlatformError."""
        if verdict.kind == OK:
            return verdict.body
        if verdict.kind == THROTTLED:
            raise _Throttled(verdict.wait, verdict.message, answer.status)
        if verdict.kind == OUTAGE:
            raise PlatformError(SERVER_ERROR, verdict.message, http_status=answer.status, retryable=True)
        raise PlatformError(verdict.category or CLIENT_ERROR, verdict.message, http_status=answer.status,
                            retryable=verdict.kind != PERMANENT)

    def _learn(self, answer: Answer, verdict: Verdict) -> None:
        """Tell the limiter what the answer says of the platform's real budget: its headers, or a throttle."""
        signal = self.platform.budget_signal(answer)
        if verdict.kind == THROTTLED:
            signal = dataclasses.replace(signal or BudgetSignal(), throttled=True)
        if signal is not None:
            self.limiter.learn(signal)

    def _settle_token(self, lease: Lease, verdict: Verdict, call: _Call) -> None:
        """Tell the token keeper what became of its token; a refused one is tried again with a new one, spending
        no try. A throttle or an outage says nothing of the token (a throttle is told before it is looked at)."""
        refused = None if verdict.kind in (THROTTLED, OUTAGE) else verdict.kind == TOKEN_REFUSED
        self._tokens.settle(lease, refused=refused)
        if not refused:
            return
        call.refusals += 1
        if call.refusals >= MAX_REFUSALS_PER_CALL:
            raise PlatformError(AUTH, f"the platform refused this call's token {call.refusals} times while other "
                                      "calls went through (401)", http_status=401)
        raise _TokenRefused()

    def _fetch_token(self, call: _Call, ticket: Pass) -> tuple[str, float]:
        request = self.platform.token_request(login=self.settings.email, secret=self.settings.password,
                                              basic=self._basic)
        answer, verdict = self._exchange(ticket, request, call, dict(request.headers))
        refusal = self.platform.credentials_refused(answer)
        if refusal:
            raise PlatformError(AUTH, refusal, http_status=answer.status, fatal=True)
        token = self.platform.token_read(self._body_of(answer, verdict))
        if token is None:
            raise PlatformError(BAD_RESPONSE, "the token endpoint answered without a usable access token",
                                http_status=answer.status, retryable=True)
        return token

    def _exchange(self, ticket: Pass, request: Request, call: _Call, headers: dict, *,
                  permit: Permit | None = None, data_call: bool = False) -> tuple[Answer, Verdict]:
        """One HTTP exchange and its verdict, told to the breaker; Held when it failed in an outage (no try spent)."""
        sent_at = time.monotonic()
        try:
            answer = self._http(request, call, headers)
        except PlatformError as error:
            self._slot_redate(permit, request, call, succeeded=False)
            if error.category not in (TIMEOUT, NETWORK):
                self._reached = self._reached or data_call
                self.breaker.answered(ticket, sent_at=sent_at)
            elif self._reached and self.breaker.failed(ticket, sent_at=sent_at):
                raise Held() from None
            self.breaker.abandon(ticket)
            raise
        except BaseException:
            self._slot_redate(permit, request, call, succeeded=False)
            self.breaker.abandon(ticket)
            raise
        verdict = self.platform.classify(answer, data_call=data_call)
        self._slot_redate(permit, request, call, succeeded=verdict.kind == OK)
        if verdict.kind != OUTAGE:
            call.stats.rate_limited += verdict.kind == THROTTLED
            self._reached = self._reached or data_call
            self.breaker.answered(ticket, sent_at=sent_at)
            return answer, verdict
        call.stats.server_errors += 1
        if self._reached and self.breaker.failed(ticket, sent_at=sent_at):
            raise Held()
        return answer, verdict

    @staticmethod
    def _slot_redate(permit: Permit | None, request: Request, call: _Call, *, succeeded: bool) -> None:
        """Tell the call's rate slot when the call left and was answered; only a success's answer time says how
        fast the platform works (a 429 or a 503 may come back in milliseconds: syncer/limiter.py)."""
        if permit is not None:
            permit.sent(request.method, call.left_at, call.answered_at, succeeded=succeeded)

    def _http(self, request: Request, call: _Call, headers: dict) -> Answer:
        call.stats.requests += 1
        call.sent = True
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        started, call.left_at, call.answered_at = time.monotonic(), time.time(), None
        try:
            response = self.session.request(request.method, self.base_url + request.path, headers=headers,
                                            params=request.params, json=request.json, data=request.data,
                                            timeout=timeout, proxies=self._proxies, stream=True)
            call.answered_at = time.time()
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
        call.stats.last_status = answer.status
        call.stats.last_latency_ms = int((time.monotonic() - started) * 1000)
        return answer


@dataclass
class _Call:
    """One logical call's bookkeeping across its tries."""

    stats: CallStats
    began: float
    stop: threading.Event | None = None  # set: stop waiting (budget, retry, throttle, outage): Stopped
    sent: bool = False  # did the current try send anything?
    left_at: float = 0.0  # when the current try's request left, and was answered (None: no answer), time.time()
    answered_at: float | None = None
    refusals: int = 0


class _TokenRefused(Exception):
    """A data call's token was refused (401): try again with a new one, spending no try."""


class _Throttled(Exception):
    """The platform throttled the call: wait as told (`wait`, else back off) and send it again, spending no try."""

    def __init__(self, wait: float | None, message: str, status: int) -> None:
        super().__init__(message)
        self.wait, self.message, self.status = wait, message, status
