"""The fake platform's data set: campaigns, hostile values, bad rows, bad fields, the listing sequence.

Campaigns are ``campaign_1..campaign_N``; name, status, budget, created_at and
base metrics are fixed by (seed, i); metrics grow on every list call.

Bad rows vs hostile values
--------------------------
``bad_row_rate``: campaign i (``Random(f"{seed}:bad:{i}")``) is FOLLOWED by an
EXTRA malformed row, counted in ``pagination.total`` like any item (the data
set holds N campaigns + the bad rows); real campaigns are never replaced, so
every good campaign stays listable and syncable. Kinds, cycling: ``missing_id`` (no "id"),
``int_id`` (id is a number), ``empty_id`` (id ""), ``not_object`` (the row is
a string, null, list or number), ``null_name`` (name null), ``missing_fields``
(only an id), ``wrong_types`` (name a list, status a number, budget "lots",
impressions an object), ``bad_values`` (created_at "yesterday", clicks 12.5,
impressions true), ``long_id`` (an id of over 300 characters), ``nul_id`` (a NUL
in the id), ``surrogate_id`` (a lone UTF-16 surrogate in the id). The kinds in
``UNUSABLE_ID_KINDS`` have no usable id: a client must REJECT them (record an
error, keep going). The others (``null_name``, ``missing_fields``,
``wrong_types``, ``bad_values``) carry a string id ``bad_<i>_<kind>``: a
client stores them with their bad fields empty and a warning, like a row
with bad fields (below), and their sync answers 404 (the id is never real).

``hostile_values=True``: every 5th campaign (i % 5 == 0) is served with a
HOSTILE BUT VALID value; these are real campaigns a robust client must STORE
(and sync). Kinds, cycling over those campaigns in this order: ``emoji``
(emoji, accents, CJK, RTL mark in name), ``sql`` (``'; DROP TABLE ...`` in
name), ``html`` (``<script>`` in name), ``long_name`` (name > 10 kB),
``numeric_strings`` (budget "1234.50", metrics as digit strings), ``huge_numbers``
(impressions 2**53+1, clicks 2**40, conversions 2**31, budget 9999999999: all
fit a signed 64-bit int), ``negative_numbers`` (budget -500, conversions -1),
``extra_fields`` (unknown keys, created_at without milliseconds and with
+00:00), ``whitespace`` (name with tabs, a newline, a zero-width space,
padded). 20 of the 100 reference campaigns are hostile.

Bad fields vs bad rows
----------------------
``bad_field_rate``: campaign i (``Random(f"{seed}:badfield:{i}")``) is served
with ONE bad field in an otherwise good row: a real campaign with a usable id,
which a client must store (the bad field empty, with a warning naming it) and
sync. Kinds, by campaign number (``i % 9``): ``empty_name``, ``name_not_text`` (an object),
``surrogate_name`` (a lone UTF-16 surrogate, ``\\ud800``), ``year_one_created_at``
(``0001-01-01T00:30:00+05:00``: before year 1 in UTC), ``unparsable_created_at``,
``huge_integer`` (impressions with 5,000 digits: more than Python parses by
default), ``budget_out_of_range`` (1e300), ``status_not_text`` (a number),
``fractional_clicks`` (12.5). See ``bad_field_of(seed, i)``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# Campaign rows, hostile-but-valid rows and bad rows (see the module docstring).

STATUSES = ("active", "paused", "completed")
_ADJ = ("Spring", "Summer", "Autumn", "Winter", "Flash", "Brand", "Retargeting", "Holiday", "Launch", "Evergreen")
_NOUN = ("Sale", "Awareness", "Promo", "Push", "Boost", "Drive", "Blitz", "Funnel", "Reach", "Splash")
HOSTILE_KINDS = ("emoji", "sql", "html", "long_name", "numeric_strings", "huge_numbers", "negative_numbers",
                 "extra_fields", "whitespace")
BAD_ROW_KINDS = ("missing_id", "int_id", "empty_id", "not_object", "null_name", "missing_fields", "wrong_types",
                 "bad_values", "long_id", "nul_id", "surrogate_id")
UNUSABLE_ID_KINDS = ("missing_id", "int_id", "empty_id", "not_object", "long_id", "nul_id", "surrogate_id")
# (field, kind) in the order campaigns with a bad field get them.
BAD_FIELD_KINDS = (("name", "empty_name"), ("name", "name_not_text"), ("name", "surrogate_name"),
                   ("created_at", "year_one_created_at"), ("created_at", "unparsable_created_at"),
                   ("impressions", "huge_integer"), ("budget", "budget_out_of_range"), ("status", "status_not_text"),
                   ("clicks", "fractional_clicks"))
# A JSON number too long for Python's default int parsing (4,300 digits); the server writes it raw.
HUGE_INTEGER_DIGITS = 5_000
HUGE_INTEGER_PLACEHOLDER = "__fake_platform_huge_integer__"


def iso_now(dt=None):
    dt = dt or datetime.now(UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=65536)
def base_campaign(seed, i):
    rng = random.Random(f"{seed}:campaign:{i}")
    impressions = rng.randrange(1_000, 50_000)
    clicks = rng.randrange(10, impressions // 20)
    created = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(365 * 86400))
    return {"id": f"campaign_{i}", "name": f"Campaign {i} {rng.choice(_ADJ)} {rng.choice(_NOUN)}",
            "status": rng.choice(STATUSES), "budget": rng.randrange(5, 101) * 100, "impressions": impressions,
            "clicks": clicks, "conversions": rng.randrange(0, clicks // 10 + 1), "created_at": iso_now(created)}


@lru_cache(maxsize=262144)
def unit(seed, purpose, i):
    """A fixed number in [0, 1) for (seed, purpose, campaign i)."""
    return random.Random(f"{seed}:{purpose}:{i}").random()


def hostile_row(row, i):
    kind = HOSTILE_KINDS[(i // 5 - 1) % len(HOSTILE_KINDS)]
    if kind == "emoji":
        row["name"] = f"Campaign {i} \U0001F680 Été – 日本語 ✓ \u200f\U0001F600"  # noqa: RUF001 (a hostile name on purpose)
    elif kind == "sql":
        row["name"] = f"Campaign {i}'); DROP TABLE campaigns; --"
    elif kind == "html":
        row["name"] = f"<script>alert('campaign {i}')</script><b>Campaign {i}</b>"
    elif kind == "long_name":
        row["name"] = f"Campaign {i} " + "very long name " * 700
    elif kind == "numeric_strings":
        for key in ("impressions", "clicks", "conversions"):
            row[key] = str(row[key])
        row["budget"] = f"{row['budget']}.50"
    elif kind == "huge_numbers":
        row.update(impressions=2**53 + 1, clicks=2**40, conversions=2**31, budget=9_999_999_999)
    elif kind == "negative_numbers":
        row.update(budget=-500, conversions=-1)
    elif kind == "extra_fields":
        row.update(tags=["a", {"b": None}], meta={"nested": {"x": [1, 2]}}, created_at="2024-03-01T12:00:00+00:00")
    else:  # whitespace
        row["name"] = f"  \tCampaign {i}\nsecond line\u200b  "
    return row


def bad_row(seed, i, kind):
    base = dict(base_campaign(seed, i), id=f"bad_{i}_{kind}", name=f"Broken row after campaign {i}")
    if kind == "missing_id":
        del base["id"]
        return base
    if kind == "int_id":
        return dict(base, id=900_000 + i)
    if kind == "empty_id":
        return dict(base, id="")
    if kind == "not_object":
        return (f"campaign_{i}", None, [f"bad_{i}", 1], 42)[(i // len(BAD_ROW_KINDS)) % 4]
    if kind == "null_name":
        return dict(base, name=None)
    if kind == "missing_fields":
        return {"id": base["id"]}
    if kind == "wrong_types":
        return dict(base, name=["not", "a", "string"], status=7, budget="lots", impressions={"n": 1})
    if kind == "long_id":
        return dict(base, id=f"bad_{i}_long_id_" + "x" * 300)
    if kind == "nul_id":
        return dict(base, id=f"bad_{i}_nul\x00id")
    if kind == "surrogate_id":
        return dict(base, id=f"bad_{i}_surrogate_\ud800")
    return dict(base, created_at="yesterday", clicks=12.5, impressions=True)  # bad_values


def bad_field_of(seed, i, rate):
    """The (field, kind) campaign i is served with a bad value in, or None (``bad_field_rate``)."""
    if rate <= 0 or unit(seed, "badfield", i) >= rate:
        return None
    return BAD_FIELD_KINDS[i % len(BAD_FIELD_KINDS)]


def with_bad_field(row, kind):
    """``row`` with the bad value of ``kind``; a huge integer is a placeholder the server writes out raw."""
    values = {
        "empty_name": ("name", ""), "name_not_text": ("name", {"en": row["name"]}),
        "surrogate_name": ("name", f"{row['name']} \ud800 broken"),
        "year_one_created_at": ("created_at", "0001-01-01T00:30:00+05:00"),
        "unparsable_created_at": ("created_at", "13/45/2024 25:61"),
        "huge_integer": ("impressions", HUGE_INTEGER_PLACEHOLDER), "budget_out_of_range": ("budget", 1e300),
        "status_not_text": ("status", 42), "fractional_clicks": ("clicks", 12.5),
    }
    name, value = values[kind]
    return {**row, name: value}


@lru_cache(maxsize=16)
def listing_sequence(seed, campaigns, bad_row_rate, deleted=frozenset()):
    """What the list endpoint pages through: every live campaign in order, some followed by a bad row."""
    seq = []
    for i in range(1, campaigns + 1):
        if i in deleted:
            continue
        seq.append(("campaign", i))
        if bad_row_rate > 0 and unit(seed, "bad", i) < bad_row_rate:
            seq.append(("bad", i))
    return tuple(seq)
