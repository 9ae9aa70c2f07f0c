"""The platform's answers as the client reads them: a body never read past its cap, JSON, a Retry-After.

Pure Python (requests only), no Django.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

MAX_INTEGER_DIGITS = 30  # longer JSON integers are kept as text: no count or budget is that long
CHUNK_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    pass


@dataclass
class Answer:
    status: int
    headers: Any  # requests' case-insensitive headers
    body: bytes


def read_answer(response: requests.Response, *, max_bytes: int) -> Answer:
    """The status, headers and body of a streamed response; BodyTooLarge past `max_bytes` (never read further).

    The connection goes back to the pool once the body is read whole, and is
    closed when the body is cut short.
    """
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge()
        chunks, size = [], 0
        for chunk in response.iter_content(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge()
            chunks.append(chunk)
        return Answer(response.status_code, response.headers, b"".join(chunks))
    finally:
        response.close()


def json_object(body: bytes) -> dict | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        parsed = json.loads(body, parse_int=_parse_int)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _parse_int(digits: str) -> int | str:
    """A JSON integer; one too long to be a count comes back as its digits (rows then call it out of range).

    Python refuses to parse integers of more than 4,300 digits: one such
    value in one row must not make the whole page unreadable.
    """
    return int(digits) if len(digits) <= MAX_INTEGER_DIGITS else digits


def retry_after_seconds(answer: Answer) -> float | None:
    """The wait from a Retry-After header (seconds or a date) or the body's retry_after."""
    header = answer.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    value = (json_object(answer.body) or {}).get("retry_after")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
