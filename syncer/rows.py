"""Turn one listed row into campaign fields, or say clearly why it is bad.

Hostile but meaningful values are kept as data: unicode, emoji, SQL or HTML
in a name, long names, negative numbers, numbers sent as strings, nulls.
A row is bad when it cannot be stored truthfully: not an object, no usable
id or name, a field missing, a value of the wrong kind or out of range.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 20_000
MAX_STATUS_LENGTH = 50
MAX_BIGINT = 2**63 - 1
MAX_BUDGET = Decimal("1e18")
REQUIRED_FIELDS = ("id", "name", "status", "budget", "impressions", "clicks", "conversions", "created_at")


class BadRow(ValueError):
    """A row that cannot be stored; the message says which field and why."""


@dataclass(frozen=True)
class CampaignRow:
    platform_id: str
    name: str
    status: str
    budget: Decimal | None
    impressions: int | None
    clicks: int | None
    conversions: int | None
    created_at: datetime | None

    def as_fields(self) -> dict:
        return {
            "name": self.name, "status": self.status, "budget": self.budget,
            "impressions": self.impressions, "clicks": self.clicks, "conversions": self.conversions,
            "platform_created_at": self.created_at,
        }


def row_id(raw: object) -> str | None:
    """The row's platform id if it has a usable one (even when the rest is bad)."""
    if isinstance(raw, dict):
        try:
            return _text(raw, "id", MAX_ID_LENGTH, required=True)
        except BadRow:
            return None
    return None


def parse_row(raw: object) -> CampaignRow:
    if not isinstance(raw, dict):
        raise BadRow(f"row is a {type(raw).__name__}, not an object")
    missing = [name for name in REQUIRED_FIELDS if name not in raw]
    if missing:
        raise BadRow(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return CampaignRow(
        platform_id=_text(raw, "id", MAX_ID_LENGTH, required=True),
        name=_text(raw, "name", MAX_NAME_LENGTH, required=True),
        status=_text(raw, "status", MAX_STATUS_LENGTH) or "",
        budget=_budget(raw.get("budget")),
        impressions=_count(raw, "impressions"),
        clicks=_count(raw, "clicks"),
        conversions=_count(raw, "conversions"),
        created_at=_timestamp(raw.get("created_at")),
    )


def _text(raw: dict, name: str, max_length: int, *, required: bool = False) -> str | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRow(f"{name} is {_kind(value)}, expected text")
    if len(value) > max_length:
        raise BadRow(f"{name} is {len(value)} characters long, more than {max_length}")
    if "\x00" in value:
        raise BadRow(f"{name} contains a NUL character")
    return value


def _number(value: object, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRow(f"{name} is {_kind(value)}, expected a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadRow(f"{name} is {_kind(value)}, expected a number") from None
    if not number.is_finite():
        raise BadRow(f"{name} is not a finite number")
    return number


def _budget(value: object) -> Decimal | None:
    number = _number(value, "budget")
    if number is not None and abs(number) >= MAX_BUDGET:
        raise BadRow("budget is out of range")
    return None if number is None else number.quantize(Decimal("0.01"))


def _count(raw: dict, name: str) -> int | None:
    number = _number(raw.get(name), name)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise BadRow(f"{name} is not a whole number")
    if abs(number) > MAX_BIGINT:
        raise BadRow(f"{name} is out of range")
    return int(number)


def _timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well formed but impossible, like month 13
        parsed = None
    if parsed is None:
        raise BadRow(f"created_at is {_kind(value)}, expected an ISO 8601 time")
    return make_aware(parsed, UTC) if is_naive(parsed) else parsed


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string that does not fit"
    return f"a {type(value).__name__}"
