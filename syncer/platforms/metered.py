"""The metered dialect (PLATFORM_API.md, "The metered dialect"), shaped like the big real platforms.

Cursor pages under /v2 with no total, numbers as strings, budgets in
cents, usage headers on every answer (X-RateLimit-Limit, -Remaining,
-Reset, X-App-Usage), and a throttle that is HTTP 200 with code 40100 in
the body, its wait in X-RateLimit-Reset: a client that looks only at the
status would record it as a success. Errors carry `is_transient`.
"""
from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

from syncer.answers import Answer, json_object
from syncer.errors import BAD_RESPONSE, CLIENT_ERROR, SERVER_ERROR
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
from syncer.platforms.reference import token_from
from syncer.rows import CampaignRow, Field, count, iso_time, money_in_cents, name_text, parse_row, status_word

THROTTLE_CODE = 40100
TOKEN_EXPIRED_CODE = 190
MAX_PAGE_SIZE = 200

FIELDS = {  # Campaign column -> where the metered dialect sends it
    "name": Field("name", name_text, ""),
    "status": Field("effective_status", status_word, ""),
    "budget": Field("daily_budget", money_in_cents),
    "impressions": Field("insights.impressions", count, optional=True),  # no insights yet: no data, not bad data
    "clicks": Field("insights.clicks", count, optional=True),
    "conversions": Field("insights.conversions", count, optional=True),
    "platform_created_at": Field("created_time", iso_time),
}


class MeteredPlatform:
    kind = "metered"
    label = "Metered (cursor pages, usage headers, throttles in the body)"

    def token_request(self, *, login: str, secret: str, basic: str) -> Request:
        return Request("POST", "/oauth/token", data={"grant_type": "client_credentials"},
                       headers={"Authorization": f"Basic {basic}"})

    def credentials_refused(self, answer: Answer) -> str | None:
        error = (json_object(answer.body) or {}).get("error")
        if answer.status not in (400, 401) or error not in ("invalid_client", "unauthorized_client"):
            return None
        return ("the platform rejected the account's client credentials (login or secret; invalid_client on "
                "/oauth/token); fix them on the account in the admin (or AD_PLATFORM_EMAIL / AD_PLATFORM_PASSWORD)")

    def token_read(self, body: dict) -> tuple[str, float] | None:
        return token_from(body, token_key="access_token", lifetime_key="expires_in")

    def list_request(self, *, page_size: int, number: int, after: Any) -> Request:
        params = {"limit": min(page_size, MAX_PAGE_SIZE)}
        if after is not None:
            params["after"] = after
        return Request("GET", "/v2/campaigns", params=params)

    def page_read(self, body: dict, *, number: int, page_size: int) -> Page:
        rows = body.get("data")
        if not isinstance(rows, list):
            raise ValueError(f"page {number} of the campaign list has no 'data' list")
        paging = body.get("paging")
        after = paging.get("next") if isinstance(paging, dict) else None
        if after is not None and (not isinstance(after, str) or not after):
            raise ValueError(f"page {number} of the campaign list has a 'paging.next' that is not a cursor")
        return Page(number, rows, min(page_size, MAX_PAGE_SIZE), None, after=after if rows else None)

    def sync_request(self, platform_id: str) -> Request:
        return Request("POST", f"/v2/campaigns/{quote(platform_id, safe='')}/sync")

    def sync_confirmed(self, body: dict) -> bool:
        return body.get("ok") is True

    def classify(self, answer: Answer, *, data_call: bool) -> Verdict:
        status, body = answer.status, json_object(answer.body)
        if status == 429 or (status < 300 and body is not None and body.get("code") == THROTTLE_CODE):
            return Verdict(THROTTLED, wait=_number(answer.headers.get("X-RateLimit-Reset")),
                           message=f"throttled by the platform (code {THROTTLE_CODE})")
        if status >= 400:
            return _error_verdict(status, _error_of(body), data_call=data_call)
        if body is None:
            return Verdict(TRANSIENT, category=BAD_RESPONSE,
                           message=f"the platform answered HTTP {status} with a body that is not a JSON object")
        return Verdict(OK, body=body)

    def budget_signal(self, answer: Answer) -> BudgetSignal | None:
        limit = _number(answer.headers.get("X-RateLimit-Limit"))
        if limit is None or limit < 1 or limit != int(limit):
            limit = _limit_from_usage(answer.headers.get("X-App-Usage"), answer.headers.get("X-RateLimit-Remaining"))
        if limit is None:
            return None
        remaining = _number(answer.headers.get("X-RateLimit-Remaining"))
        return BudgetSignal(limit=int(limit), remaining=None if remaining is None else int(remaining),
                            reset_seconds=_number(answer.headers.get("X-RateLimit-Reset")))

    def campaign_row(self, raw: object) -> CampaignRow:
        return parse_row(raw, FIELDS)


def _error_of(body: dict | None) -> dict:
    """The body's `error` object, or {} when it has none (a proxy's page, an empty body)."""
    error = body.get("error") if body is not None else None
    return error if isinstance(error, dict) else {}


def _error_verdict(status: int, error: dict, *, data_call: bool) -> Verdict:
    """What a 4xx or 5xx means: the error's `code` and `is_transient` decide, as the contract says."""
    code, transient = error.get("code"), error.get("is_transient")
    # 190 is an expired or revoked token; a 401 with no code is a proxy's, which a new token may pass.
    # Another code (a permission, a bad parameter) refuses this call whatever token it carries.
    if status == 401 and data_call and code in (None, TOKEN_EXPIRED_CODE):
        return Verdict(TOKEN_REFUSED, message=f"the platform refused the token (401, {_code_named(code)})")
    # A 5xx the platform itself calls not transient fails this campaign only: no retry, no sign of an outage.
    if status >= 500 and transient is not False:
        return Verdict(OUTAGE, message=f"the platform failed with HTTP {status}")
    if status >= 500:
        return Verdict(PERMANENT, category=SERVER_ERROR, message=f"the platform failed with HTTP {status} "
                                                                 f"({_code_named(code)}, not transient): not retried")
    if transient is True:
        return Verdict(TRANSIENT, category=SERVER_ERROR,
                       message=f"the platform failed with HTTP {status} (transient, {_code_named(code)})")
    if status == 404:
        return Verdict(PERMANENT, category=CLIENT_ERROR,
                       message="not found on the platform (404): it may have been deleted")
    return Verdict(PERMANENT, category=CLIENT_ERROR,
                   message=f"the platform refused the request with HTTP {status} ({_code_named(code)})")


def _code_named(code: object) -> str:
    """An error code for a message; one that is no number is left out, as a body's text never reaches a page."""
    if isinstance(code, bool) or not isinstance(code, int):
        return "no error code" if code is None else "an error code that is not a number"
    return f"code {code}"


def _number(text: str | None) -> float | None:
    """A header's non-negative finite number, or None when it holds none."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _limit_from_usage(usage: str | None, remaining: str | None) -> float | None:
    """The budget from X-App-Usage's percent used and the calls remaining, when only those are sent."""
    try:
        percent = float(json.loads(usage or "null")["call_count"])
    except (ValueError, TypeError, KeyError):
        return None
    left = _number(remaining)
    if left is None or not 0 <= percent < 100:
        return None
    return round(left / (1 - percent / 100)) or None
