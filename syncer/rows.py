"""Turn one listed row into campaign fields; a field that came bad is stored empty and named in a warning.

Hostile but meaningful values are kept as data: unicode, emoji, SQL or HTML
in a name, long names, negative numbers, numbers sent as strings, nulls.
Only a row that is not an object or has no usable id is bad (`BadRow`):
nothing can be stored under it. Any other field that cannot be stored as
sent (missing, empty, of the wrong kind, out of range, holding a NUL or a
lone surrogate, a time outside CREATED_AT_RANGE) is stored empty (None, or
"" for the text columns that take no null) and the row carries a warning
naming the field and why; the campaign is stored and synced like any
other. A warning never quotes the value: it may be what a log line, a page
or the database cannot hold.

Each platform adapter (syncer/platforms/) names its fields in a table:
which `Campaign` column, where in its row, which parser below. The table
is the only place a platform's payload meets our model: a new field is a
model column, its migration and one line there.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime

MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 20_000
MAX_STATUS_LENGTH = 50
MAX_BIGINT = 2**63 - 1
MAX_BUDGET = Decimal("1e18")
# A number written with more characters than this is out of range whatever it says. (The client hands
# JSON integers of more than 30 digits over as their digit string: Python cannot parse 5,000 of them.)
MAX_NUMBER_TEXT = 64
MAX_TIME_TEXT = 64
# A campaign created before 1970 or after 2099 is a bad value, not a date: no ad platform predates the
# epoch, and year 1 or 9999 with an offset does not even fit a datetime once turned into UTC.
CREATED_AT_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
MAX_WARNINGS_LENGTH = 1000


class BadRow(ValueError):
    """A row that cannot be stored at all (not an object, no usable id); the message says why."""


class BadField(ValueError):
    """A field that cannot be stored as sent; the message says why, never what the value was."""


@dataclass(frozen=True)
class Field:
    """One campaign column as a platform sends it: where in the row, how it is read, what a bad one is stored as.

    `source` is the row's key, or keys joined by dots for a nested object
    ("insights.clicks"). An `optional` field may be absent (stored empty,
    no warning); a required one that is absent is a bad field.
    """

    source: str
    parse: Callable[[object], object]
    empty: object = None
    optional: bool = False


@dataclass(frozen=True)
class CampaignRow:
    platform_id: str
    fields: dict  # Campaign column -> value
    warnings: tuple[str, ...] = ()  # "field: why" for each field stored empty

    def as_fields(self) -> dict:
        return dict(self.fields)

    def warnings_text(self) -> str:
        """One line for the attempt: "name: empty; clicks: not a whole number", capped."""
        text = "; ".join(self.warnings)
        return text if len(text) <= MAX_WARNINGS_LENGTH else text[: MAX_WARNINGS_LENGTH - 3] + "..."


def row_id(raw: object, id_key: str = "id") -> str | None:
    """The row's platform id if it has a usable one (whatever the rest holds)."""
    if not isinstance(raw, dict):
        return None
    try:
        return platform_id(raw.get(id_key))
    except BadField:
        return None


def parse_row(raw: object, table: dict[str, Field], *, id_key: str = "id") -> CampaignRow:
    """The row's id and the columns of `table`; BadRow when it is not an object or has no usable id."""
    if not isinstance(raw, dict):
        raise BadRow(f"row is {_kind(raw)}, not an object")
    try:
        campaign_id = platform_id(raw.get(id_key))
    except BadField as error:
        raise BadRow(f"{id_key}: {error}") from None
    values, warnings = {}, []
    for column, spec in table.items():
        try:
            present, value = _lookup(raw, spec.source)
            if not present and not spec.optional:
                raise BadField("missing")
            values[column] = spec.parse(value) if present else spec.empty
        except BadField as error:
            values[column] = spec.empty
            warnings.append(f"{spec.source}: {error}")
    return CampaignRow(platform_id=campaign_id, fields=values, warnings=tuple(warnings))


def _lookup(raw: dict, source: str) -> tuple[bool, object]:
    """(present, value) of a key, or of dotted keys into nested objects; a nested non-object is a bad field."""
    value: object = raw
    for key in source.split("."):
        if value is None:
            return False, None
        if not isinstance(value, dict):
            raise BadField(f"inside {_kind(value)}, expected an object")
        if key not in value:
            return False, None
        value = value[key]
    return True, value


# --- one field each ------------------------------------------------------------------------------

def _text(value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise BadField(f"{_kind(value)}, expected text")
    if len(value) > max_length:
        raise BadField(f"{len(value)} characters long, more than {max_length}")
    if "\x00" in value:
        raise BadField("holds a NUL character")
    if _has_lone_surrogate(value):
        raise BadField("holds a lone surrogate (not valid Unicode)")
    return value


def platform_id(value: object) -> str:
    if value is None:
        raise BadField("missing")
    text = _text(value, MAX_ID_LENGTH)
    if not text.strip():
        raise BadField("empty")
    return text


def name_text(value: object) -> str:
    text = _text(value, MAX_NAME_LENGTH)
    if not text.strip():
        raise BadField("empty")
    return text


def status_text(value: object) -> str:
    return "" if value is None else _text(value, MAX_STATUS_LENGTH)


def number(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadField(f"{_kind(value)}, expected a number")
    if isinstance(value, str) and len(value.strip()) > MAX_NUMBER_TEXT:
        raise BadField(f"a number of {len(value.strip())} characters, out of range")
    try:
        parsed = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadField(f"{_kind(value)}, expected a number") from None
    if not parsed.is_finite():
        raise BadField("not a finite number")
    return parsed


def money(value: object) -> Decimal | None:
    amount = number(value)
    if amount is not None and abs(amount) >= MAX_BUDGET:
        raise BadField(f"out of range (at most {MAX_BUDGET:.0e})")
    return None if amount is None else amount.quantize(Decimal("0.01"))


def count(value: object) -> int | None:
    whole = number(value)
    if whole is None:
        return None
    if whole != whole.to_integral_value():
        raise BadField("not a whole number")
    if abs(whole) > MAX_BIGINT:
        raise BadField("out of range (more than a 64-bit integer)")
    return int(whole)


def iso_time(value: object) -> datetime | None:
    """A time in UTC inside CREATED_AT_RANGE; a naive one is taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TIME_TEXT:
        raise BadField(f"{_kind(value)}, expected an ISO 8601 time")
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well formed but impossible, like month 13 or an offset of 99 hours
        parsed = None
    if parsed is None:
        raise BadField(f"{_kind(value)}, not an ISO 8601 time")
    try:
        moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset is before year 1 in UTC
        raise BadField("outside the years a time can hold once turned into UTC") from None
    low, high = CREATED_AT_RANGE
    if not low <= moment < high:
        raise BadField(f"before {low.year} or after {high.year - 1}, not a campaign's creation time")
    return moment


def _has_lone_surrogate(text: str) -> bool:
    # JSON pairs surrogates into one character; one left alone cannot be encoded, stored or logged.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "empty text" if not value.strip() else "text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {"dict": "an object", "list": "a list"}.get(type(value).__name__, f"a {type(value).__name__}")


def money_in_cents(value: object) -> Decimal | None:
    """An amount sent in cents (as a number or its digits), in the currency's units."""
    amount = number(value)
    if amount is None:
        return None
    amount /= 100
    if abs(amount) >= MAX_BUDGET:
        raise BadField(f"out of range (at most {MAX_BUDGET:.0e})")
    return amount.quantize(Decimal("0.01"))


def status_word(value: object) -> str:
    """A status as one lower-case word: "ACTIVE" and "active" are one status."""
    return status_text(value).lower()
