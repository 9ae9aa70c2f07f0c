"""The small protocol the engine speaks to an ad platform; one module per dialect implements it.

An adapter knows its dialect's paths, bodies and signals, and nothing of
Django, the database or the tries: it builds requests, reads pages and
rows, and classifies an answer. The client (syncer/client.py) does the
HTTP, the tries, the token, the breaker and the rate budget around it, the
same for every dialect.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from syncer.answers import Answer
from syncer.rows import CampaignRow

# What an answer means (Verdict.kind).
OK = "ok"  # the call did what it asked: `body` holds the answer
THROTTLED = "throttled"  # over the platform's budget: wait `wait` (or back off) and send again; costs no try
OUTAGE = "outage"  # the platform is failing (5xx): a try spent, and one more sign of an outage for the breaker
TRANSIENT = "transient"  # a broken answer worth another try (a body that is no JSON object)
PERMANENT = "permanent"  # no later try can succeed (404, 4xx): `category` says which kind
TOKEN_REFUSED = "token_refused"  # the bearer token was refused: take a new one and send again; costs no try


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict | None = None
    json: Any = None
    data: dict | None = None
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    kind: str
    body: dict | None = None
    wait: float | None = None  # THROTTLED: the wait the platform asked for, if it said
    category: str = ""  # PERMANENT / TRANSIENT: the ErrorCategory of the failure
    message: str = ""  # safe to show anyone: never a platform's body


@dataclass(frozen=True)
class BudgetSignal:
    """What one answer says of the platform's real budget for this client."""

    limit: int | None = None  # calls per window the platform allows now, when it says
    remaining: int | None = None
    reset_seconds: float | None = None  # until the oldest call in the window leaves it
    throttled: bool = False  # the answer was a throttle (the client sets it from the verdict)


@dataclass
class Page:
    """One page of the campaign list. `after` asks for the next page; None on the last one.

    `limit` is the page size the platform answered with (else the one
    asked); `total` the platform's count of campaigns, when it gives one.
    """

    number: int
    rows: list[Any]
    limit: int
    total: int | None
    after: Any = None

    @property
    def is_last(self) -> bool:
        return self.after is None


class Platform(Protocol):
    """One dialect. `kind` is what an account names (AdAccount.platform)."""

    kind: str
    label: str

    def token_request(self, *, login: str, secret: str, basic: str) -> Request:
        """The call that gets a bearer token; `basic` is base64(login:secret), already registered as a secret."""

    def credentials_refused(self, answer: Answer) -> str | None:
        """When the token call's answer refuses the account's login and secret: one line saying what to fix."""

    def token_read(self, body: dict) -> tuple[str, float] | None:
        """(token, lifetime in seconds) from an OK token answer; None when it holds no usable token."""

    def list_request(self, *, page_size: int, number: int, after: Any) -> Request:
        """Page `number` (1, 2, ...) of the campaign list; `after` is the previous page's (None for the first)."""

    def page_read(self, body: dict, *, number: int, page_size: int) -> Page:
        """The page in an OK list answer; ValueError saying why when the body is not a page."""

    def sync_request(self, platform_id: str) -> Request:
        """The call that syncs one campaign."""

    def sync_confirmed(self, body: dict) -> bool:
        """Does an OK sync answer confirm the sync?"""

    def classify(self, answer: Answer, *, data_call: bool) -> Verdict:
        """What the answer means; `data_call` is False for the token call."""

    def budget_signal(self, answer: Answer) -> BudgetSignal | None:
        """What the answer's headers say of the real budget, or None when they say nothing."""

    def campaign_row(self, raw: object) -> CampaignRow:
        """A listed row as campaign fields (syncer/rows.py); BadRow when it has no usable id."""
