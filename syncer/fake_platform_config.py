"""Knobs and data set of the bundled fake ad platform (server: ``syncer/fake_platform.py``).

Pure Python, no Django. ``FakePlatformConfig`` holds every knob; the
management command builds one CLI flag per field from ``KNOB_HELP``.
Every fault is OFF by default; the reference (contract) values are on for
the non-fault knobs: 100 campaigns, 10 calls per 60 s, 2 s sync latency.
Use ``FakePlatformConfig.preset("contract")`` for the contract's hostility
(1 list call in 5 answers 503, some hangs, bad rows) or ``preset("demo")``
for the same at demo speed.

Campaigns are ``campaign_1..campaign_N``; name, status, budget, created_at and
base metrics are fixed by (seed, i); metrics grow on every list call.

Bad rows vs hostile values
--------------------------
``bad_row_rate``: campaign i (``Random(f"{seed}:bad:{i}")``) is FOLLOWED by an
EXTRA malformed row, counted in ``pagination.total`` like any item (the data
set holds N campaigns + the bad rows); real campaigns are never replaced, so
every good campaign stays listable and syncable. Bad rows are rows a client must REJECT
(record an error, keep going). Kinds, cycling: ``missing_id`` (no "id"),
``int_id`` (id is a number), ``empty_id`` (id ""), ``not_object`` (the row is
a string, null, list or number), ``null_name`` (name null), ``missing_fields``
(only an id), ``wrong_types`` (name a list, status a number, budget "lots",
impressions an object), ``bad_values`` (created_at "yesterday", clicks 12.5,
impressions true). Rows with a string id use ids ``bad_<i>_<kind>`` that are
never real (sync: 404).

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
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from syncer.budget import parse_budget

RETRY_AFTER_MODES = ("header", "body", "both", "neither")
MALFORMED_LIST_MODES = ("truncated_json", "data_not_list", "no_pagination", "html")



def parse_rate_limit(text):
    """``"10/60s"`` -> ``(10, 60.0)``: N calls per sliding window of W seconds.

    The same notation as the syncer's budgets (``syncer.budget``): ``None``,
    ``""`` and ``"none"`` mean no limit and give ``None``; a ``(n, w)`` tuple
    is accepted too. Anything else raises ``ValueError`` saying what is expected.
    """
    if isinstance(text, (tuple, list)) and len(text) == 2:
        text = f"{text[0]}/{text[1]}s"
    if text is not None and not isinstance(text, str):
        raise ValueError(f"invalid rate limit {text!r}: expected a string like '10/60s' or None")
    try:
        budget = parse_budget(text)
    except ValueError as error:
        raise ValueError(f"invalid rate limit: {error}") from None
    return None if budget is None else (budget.calls, budget.window_seconds)


def format_rate_limit(parsed):
    if parsed is None:
        return "none"
    calls, window = parsed
    return f"{calls}/{window:g}s"


# Help text for every knob; the management command turns each into a flag.
KNOB_HELP = {
    "campaigns": "number of real campaigns campaign_1..campaign_N",
    "default_page_size": "page size when the list call sends no limit",
    "max_page_size": "cap applied to the limit query parameter",
    "rate_limit": "N/Ws sliding window per X-Client-ID on /api/* (e.g. 10/60s), 'none' = unlimited",
    "retry_after_mode": "where a 429 tells the wait: header | body | both | neither",
    "retry_after_override": "seconds announced on 429 instead of the real wait (e.g. 86400)",
    "sync_latency": "seconds a sync call takes (non-blocking sleep)",
    "sync_latency_jitter": "sync latency varies uniformly by +/- this many seconds",
    "token_lifetime": "seconds a token lives",
    "email": "accepted login email",
    "password": "accepted login password",
    "seed": "seed for the campaign data and every random fault",
    "list_fail_rate": "share of list calls answering 503",
    "sync_fail_rate": "share of sync calls answering 503",
    "hang_rate": "share of /api/* calls that never answer (until the client gives up)",
    "reset_rate": "share of /api/* calls whose connection is reset without a response",
    "server_error_rate": "share of /api/* calls answering 500 with a stack trace and a fake secret",
    "html_error_rate": "share of /api/* calls answering an HTML page (200 or 502)",
    "not_found_rate": "share of campaigns (fixed by the seed) deleted: listed, but sync gives 404",
    "bad_row_rate": "share of campaigns followed by an extra malformed row in the listing (counted in total)",
    "hostile_values": "serve hostile but valid values (emoji/SQL/HTML/10kB names, numeric strings, huge numbers)",
    "has_more_lies": "has_more stays true past total, phantom items are served past total",
    "total_drift": "added to pagination.total on pages >= 2",
    "duplicate_across_pages": "pages >= 2 shift back one row (page 2 repeats page 1's last row), total + 1",
    "malformed_list": "every list call answers malformed: truncated_json | data_not_list | no_pagination | html",
    "token_revoke_every": "every K-th authenticated /api/* call revokes the token it used (0 = off)",
    "token_fail_rate": "share of /auth/token calls answering 503",
    "revoke_on_issue": "issuing a token ends the previous tokens of the same credentials",
    "down": "refuse service: reset every connection except /_fake/*",
}


@dataclass
class FakePlatformConfig:
    # data set and paging
    campaigns: int = 100
    default_page_size: int = 10
    max_page_size: int = 100
    # rate limit
    rate_limit: str | None = "10/60s"
    retry_after_mode: str = "both"
    retry_after_override: float | None = None
    # latency
    sync_latency: float = 2.0
    sync_latency_jitter: float = 0.0
    # auth
    token_lifetime: float = 3600
    email: str = "demo@adplatform.test"
    password: str = field(default="demo-password", repr=False)
    seed: int = 0
    # faults (all off)
    list_fail_rate: float = 0.0
    sync_fail_rate: float = 0.0
    hang_rate: float = 0.0
    reset_rate: float = 0.0
    server_error_rate: float = 0.0
    html_error_rate: float = 0.0
    not_found_rate: float = 0.0
    bad_row_rate: float = 0.0
    hostile_values: bool = False
    has_more_lies: bool = False
    total_drift: int = 0
    duplicate_across_pages: bool = False
    malformed_list: str | None = None
    token_revoke_every: int = 0
    token_fail_rate: float = 0.0
    revoke_on_issue: bool = False
    down: bool = False

    def __post_init__(self):
        self.validate()

    @classmethod
    def knob_names(cls):
        return [f.name for f in fields(cls)]

    @classmethod
    def preset(cls, name, **overrides):
        """A config from a named preset (see ``PRESETS``), with overrides."""
        try:
            values = dict(PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
        values.update(overrides)
        return cls(**values)

    def replace(self, **knobs):
        """A validated copy with some knobs changed; unknown names raise ValueError."""
        unknown = sorted(set(knobs) - set(self.knob_names()))
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; known: {self.knob_names()}")
        return dataclasses.replace(self, **knobs)

    @property
    def parsed_rate_limit(self):
        return parse_rate_limit(self.rate_limit)

    def validate(self):
        def check(cond, msg):
            if not cond:
                raise ValueError(f"invalid fake platform config: {msg}")

        def number(name, minimum=0):
            value = getattr(self, name)
            check(isinstance(value, (int, float)) and not isinstance(value, bool),
                  f"{name} must be a number, got {value!r}")
            check(value >= minimum, f"{name} must be >= {minimum}, got {value!r}")

        for name in ("campaigns", "default_page_size", "max_page_size", "token_revoke_every", "seed"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an int, got {value!r}")
        check(isinstance(self.total_drift, int) and not isinstance(self.total_drift, bool),
              f"total_drift must be an int, got {self.total_drift!r}")
        number("campaigns")
        number("default_page_size", 1)
        number("max_page_size", 1)
        number("token_revoke_every")
        number("sync_latency")
        number("sync_latency_jitter")
        number("token_lifetime")
        for name in ("list_fail_rate", "sync_fail_rate", "hang_rate", "reset_rate", "server_error_rate",
                     "html_error_rate", "not_found_rate", "bad_row_rate", "token_fail_rate"):
            number(name)
            check(getattr(self, name) <= 1, f"{name} is a probability, must be <= 1")
        if self.retry_after_override is not None:
            number("retry_after_override")
        parse_rate_limit(self.rate_limit)  # raises ValueError with a clear message
        check(self.retry_after_mode in RETRY_AFTER_MODES,
              f"retry_after_mode must be one of {RETRY_AFTER_MODES}, got {self.retry_after_mode!r}")
        check(self.malformed_list is None or self.malformed_list in MALFORMED_LIST_MODES,
              f"malformed_list must be None or one of {MALFORMED_LIST_MODES}, got {self.malformed_list!r}")
        for name in ("hostile_values", "has_more_lies", "duplicate_across_pages", "revoke_on_issue", "down"):
            check(isinstance(getattr(self, name), bool), f"{name} must be a bool")
        check(isinstance(self.email, str) and isinstance(self.password, str), "email and password must be strings")

    def as_dict(self, hide_password=True):
        data = dataclasses.asdict(self)
        if hide_password:
            data["password"] = "***"
        return data

    def describe(self):
        """One-line ``knob=value`` summary (password hidden)."""
        parts = []
        for key, value in self.as_dict().items():
            if key == "rate_limit":
                value = format_rate_limit(self.parsed_rate_limit)
            parts.append(f"{key}={value}")
        return " ".join(parts)


# Named presets. "demo": every contract failure mode on, at demo speed
# (10 calls per 6 s instead of per 60 s, 0.2 s syncs): a well-built client
# still syncs all 100 campaigns (bad rows are extra rows, hostile values are
# valid rows, nothing is deleted) in about a minute with zero 429s.
PRESETS = {
    "reference": {},
    "demo": {
        "campaigns": 100,
        "max_page_size": 100,
        "rate_limit": "10/6s",
        "sync_latency": 0.2,
        "sync_latency_jitter": 0.05,
        "token_lifetime": 20,
        "list_fail_rate": 0.2,
        "sync_fail_rate": 0.05,
        "hang_rate": 0.02,
        "bad_row_rate": 0.03,
        "hostile_values": True,
    },
    "contract": {
        "list_fail_rate": 0.2,
        "sync_fail_rate": 0.02,
        "hang_rate": 0.01,
        "bad_row_rate": 0.03,
        "hostile_values": True,
    },
}


# ---------------------------------------------------------------- the data set
# Campaign rows, hostile-but-valid rows and bad rows (see the module docstring).

STATUSES = ("active", "paused", "completed")
_ADJ = ("Spring", "Summer", "Autumn", "Winter", "Flash", "Brand", "Retargeting", "Holiday", "Launch", "Evergreen")
_NOUN = ("Sale", "Awareness", "Promo", "Push", "Boost", "Drive", "Blitz", "Funnel", "Reach", "Splash")
HOSTILE_KINDS = ("emoji", "sql", "html", "long_name", "numeric_strings", "huge_numbers", "negative_numbers",
                 "extra_fields", "whitespace")
BAD_ROW_KINDS = ("missing_id", "int_id", "empty_id", "not_object", "null_name", "missing_fields", "wrong_types",
                 "bad_values")


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
    return dict(base, created_at="yesterday", clicks=12.5, impressions=True)  # bad_values
