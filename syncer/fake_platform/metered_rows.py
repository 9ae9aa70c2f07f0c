"""The metered dialect's shapes: numeric string ids, opaque cursors, and a row in the metered shape.

Pure functions, no state. A metered row is a reference row (``data.py``: metrics, hostile values and bad
fields applied) reshaped field by field; a value of the wrong kind for its field stays as it is, so a bad
field or bad row of the reference data set is just as bad in the metered shape.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

# Ids look like a big platform's (long digit strings), one block of a billion numbers per seed.
_ID_BASE = 23_847_000_000_000
_ID_BLOCK = 1_000_000_000
_STATUSES = {"active": "ACTIVE", "paused": "PAUSED", "completed": "ARCHIVED"}
_REFERENCE_ID = re.compile(r"^campaign_([1-9][0-9]{0,8})$")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(?:Z|([+-]\d\d):(\d\d))$")


def metered_id(seed, number):
    """Campaign ``number``'s metered id: a numeric string, the same for the same seed."""
    return str(_ID_BASE + (seed % 1000) * _ID_BLOCK + number)


def campaign_number(seed, campaign_id):
    """The campaign number a metered id stands for, or 0 when it is none of this seed's."""
    if not re.fullmatch(r"[1-9][0-9]{0,18}", campaign_id):
        return 0
    number = int(campaign_id) - _ID_BASE - (seed % 1000) * _ID_BLOCK
    return number if 1 <= number < _ID_BLOCK else 0


def encode_cursor(offset, page):
    """An opaque cursor for the page that starts at ``offset`` in the listing (``page`` counts from 1)."""
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "p": page}).encode()).decode().rstrip("=")


def decode_cursor(cursor):
    """(offset, page) from a cursor this platform made; ValueError for anything else."""
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset, page = state["o"], state["p"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise ValueError("invalid cursor") from None
    if not (type(offset) is int and type(page) is int and offset >= 0 and page >= 2):
        raise ValueError("invalid cursor")
    return offset, page


def metered_time(value):
    """``2024-12-11T10:30:00.000Z`` -> ``2024-12-11T10:30:00+0000``; text that is no such time stays as it is."""
    match = _ISO.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    stamp, hours, minutes = match.groups()
    return f"{stamp}{hours or '+00'}{minutes or '00'}"


def metered_now():
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _cents(budget):
    """A budget in currency units -> cents as a string (``"1234.50"`` -> ``"123450"``); other values stay."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float, str)):
        return budget
    try:
        return str(int(Decimal(str(budget)) * 100))
    except (InvalidOperation, ValueError):
        return budget


def _as_text(number):
    """A metric as the metered dialect sends it: a number becomes its digits; anything else stays."""
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        return str(number)
    return number


def metered_row(row, seed, deleted, with_insights):
    """A reference row in the metered shape; ``deleted`` campaigns say so, ``with_insights`` False drops them."""
    if not isinstance(row, dict):
        return row  # a bad row that is not an object stays one
    renamed = {"id", "name", "status", "budget", "impressions", "clicks", "conversions", "created_at"}
    shaped = {}
    if "id" in row:
        match = _REFERENCE_ID.match(row["id"]) if isinstance(row["id"], str) else None
        shaped["id"] = metered_id(seed, int(match.group(1))) if match else row["id"]
    if "name" in row:
        shaped["name"] = row["name"]
    if "status" in row:
        status = row["status"]
        shaped["effective_status"] = "DELETED" if deleted else (
            _STATUSES.get(status, status) if isinstance(status, str) else status)
    if "budget" in row:
        shaped["daily_budget"] = _cents(row["budget"])
    insights = {key: _as_text(row[key]) for key in ("impressions", "clicks", "conversions") if key in row}
    if insights and with_insights:
        shaped["insights"] = insights
    if "created_at" in row:
        shaped["created_time"] = metered_time(row["created_at"])
    shaped.update((key, value) for key, value in row.items() if key not in renamed)
    return shaped
