"""The reference dialect (PLATFORM_API.md): offset pages under /api, 429s, a token from /auth/token.

A listing stops when `has_more` is false, when `page * limit >= total`
(with the page size the platform answered with: it may cap the one asked
for), or at an empty page. Rows past `total` are not real campaigns. A
row's position comes from its page number and that page size, never from
counting rows: a platform that repeats rows across pages makes a count wrong.
It says nothing of its budget but a 429.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from syncer.answers import Answer, json_object, retry_after_seconds
from syncer.errors import BAD_RESPONSE, CLIENT_ERROR
from syncer.platforms.base import (
    OK,
    OUTAGE,
    PERMANENT,
    THROTTLED,
    TOKEN_REFUSED,
    TRANSIENT,
    BudgetSignal,
    Page,
    Request,
    Verdict,
)
from syncer.rows import CampaignRow, Field, count, iso_time, money, name_text, parse_row, status_text

log = logging.getLogger(__name__)

FIELDS = {  # Campaign column -> where the reference dialect sends it
    "name": Field("name", name_text, ""),
    "status": Field("status", status_text, ""),
    "budget": Field("budget", money),
    "impressions": Field("impressions", count),
    "clicks": Field("clicks", count),
    "conversions": Field("conversions", count),
    "platform_created_at": Field("created_at", iso_time),
}


class ReferencePlatform:
    kind = "reference"
    label = "Reference (offset pages, 429s)"

    def token_request(self, *, login: str, secret: str, basic: str) -> Request:
        return Request("POST", "/auth/token", headers={"Authorization": f"Basic {basic}"})

    def credentials_refused(self, answer: Answer) -> str | None:
        if answer.status != 401:
            return None
        return ("the platform rejected the account's credentials (email or password; 401 on /auth/token); "
                "fix AD_PLATFORM_EMAIL / AD_PLATFORM_PASSWORD or the account in the admin")

    def token_read(self, body: dict) -> tuple[str, float] | None:
        return token_from(body, token_key="access_token", lifetime_key="expires_in")

    def list_request(self, *, page_size: int, number: int, after: Any) -> Request:
        return Request("GET", "/api/campaigns", params={"page": number, "limit": page_size})

    def page_read(self, body: dict, *, number: int, page_size: int) -> Page:
        rows = body.get("data")
        if not isinstance(rows, list):
            raise ValueError(f"page {number} of the campaign list has no 'data' list")
        pagination = body.get("pagination")
        if not isinstance(pagination, dict):
            # No pagination block: a short or empty page is the last one.
            log.warning("page %s of the campaign list has no pagination; reading on until a short page", number)
            return Page(number, rows, page_size, None, after=number + 1 if rows and len(rows) >= page_size else None)
        limit = _whole_number(pagination.get("limit"), minimum=1) or page_size
        total = _whole_number(pagination.get("total"), minimum=0)
        if total is not None:
            rows = rows[: max(0, total - (number - 1) * limit)]
        reached_total = total is not None and number * limit >= total
        last = pagination.get("has_more") is not True or not rows or reached_total
        return Page(number, rows, limit, total, after=None if last else number + 1)

    def sync_request(self, platform_id: str) -> Request:
        return Request("POST", f"/api/campaigns/{quote(platform_id, safe='')}/sync", json={"campaign_id": platform_id})

    def sync_confirmed(self, body: dict) -> bool:
        return body.get("success") is True

    def classify(self, answer: Answer, *, data_call: bool) -> Verdict:
        return classify_by_status(answer, data_call=data_call, throttled=answer.status == 429)

    def budget_signal(self, answer: Answer) -> BudgetSignal | None:
        # No usage headers: its 429s are the only sign (the client notes those), and an answer that is
        # none says the budget held.
        return BudgetSignal() if answer.status < 400 else None

    def campaign_row(self, raw: object) -> CampaignRow:
        return parse_row(raw, FIELDS)


def classify_by_status(answer: Answer, *, data_call: bool, throttled: bool) -> Verdict:
    """What an HTTP status says, as most platforms mean it; the body of a 2xx must be a JSON object."""
    status = answer.status
    if throttled:
        return Verdict(THROTTLED, wait=retry_after_seconds(answer), message=f"rate limited by the platform ({status})")
    if status == 401 and data_call:
        return Verdict(TOKEN_REFUSED, message="the platform refused the token (401)")
    if status >= 500:
        return Verdict(OUTAGE, message=f"the platform failed with HTTP {status}")
    if status == 404:
        return Verdict(PERMANENT, category=CLIENT_ERROR, message="not found on the platform (404): it may have been "
                                                                  "deleted")
    if status >= 400:
        return Verdict(PERMANENT, category=CLIENT_ERROR, message=f"the platform refused the request with HTTP {status}")
    body = json_object(answer.body)
    if body is None:
        return Verdict(TRANSIENT, category=BAD_RESPONSE,
                       message=f"the platform answered HTTP {status} with a body that is not a JSON object")
    return Verdict(OK, body=body)


def token_from(body: dict, *, token_key: str, lifetime_key: str) -> tuple[str, float] | None:
    """(token, lifetime) from a token answer's JSON object, or None when it holds no usable one."""
    token, lifetime = body.get(token_key), body.get(lifetime_key, 3600)
    if not isinstance(token, str) or not token or isinstance(lifetime, bool) \
            or not isinstance(lifetime, (int, float)) or lifetime <= 0:
        return None
    return token, float(lifetime)


def _whole_number(value: object, *, minimum: int) -> int | None:
    """A JSON integer of at least `minimum`, or None (a bool, a float, text, or one too long to count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return None
    return value
