"""Knobs of the bundled fake ad platform: one field of ``FakePlatformConfig`` each, all faults off by default.

Pure Python, no Django. The management command builds one CLI flag per field
from ``KNOB_HELP``. The reference (contract) values are on for the non-fault
knobs: 100 campaigns, 10 calls per 60 s, 2 s sync latency. Use
``FakePlatformConfig.preset("contract")`` for the contract's hostility (1 list
call in 5 answers 503, some hangs, bad rows) or ``preset("demo")`` for the
same at demo speed. The data set is in ``data.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from syncer.budget import parse_budget
from syncer.fake_platform.statuses import parse_status_changes, parse_statuses

RETRY_AFTER_MODES = ("header", "body", "both", "neither")
MALFORMED_LIST_MODES = ("truncated_json", "data_not_list", "no_pagination", "no_total", "html")
DOWN_MODES = ("reset", "503", "hang")
DIALECTS = ("reference", "metered")


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
    "dialect": "the API spoken: reference (/auth/token, /api/*) | metered (/oauth/token, /v2/*: cursor pages, "
               "usage headers, throttles as HTTP 200); fixed while the server runs",
    "campaigns": "number of real campaigns campaign_1..campaign_N",
    "default_page_size": "page size when the list call sends no limit",
    "max_page_size": "cap applied to the limit query parameter",
    "rate_limit": "N/Ws sliding window per X-Client-ID on /api/* or /v2/* (e.g. 10/60s), 'none' = unlimited; the "
                  "metered dialect's real budget, announced in its usage headers",
    "retry_after_mode": "where a 429 tells the wait: header | body | both | neither",
    "retry_after_override": "seconds announced on 429 instead of the real wait (e.g. 86400)",
    "sync_latency": "seconds a sync call takes (non-blocking sleep)",
    "sync_latency_jitter": "sync latency varies uniformly by +/- this many seconds",
    "list_latency": "seconds a list call takes (non-blocking sleep)",
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
    "duplicate_across_pages": "once page 1 is served a new campaign is inserted at the front: later pages shift back "
                              "one row (page 2 repeats page 1's last row) and total grows by one",
    "overlap_pages": "every page after the first starts with the previous page's last row; total unchanged, so a "
                     "client stopping at page * limit >= total misses the tail",
    "delete_between_pages": "once page K is first served, the first live campaign is deleted (unlisted, sync 404): "
                            "later pages shift and one campaign is skipped (0 = off)",
    "bad_field_rate": "share of campaigns served with one bad field (empty name, lone surrogate, year-1 date, "
                      "a 5,000-digit integer, ...) in an otherwise good row",
    "oversized_list_mb": "list answers carry this many MB of padding (0 = off)",
    "oversized_chunked": "oversized list answers are streamed in 64 kB chunks without a Content-Length",
    "malformed_list": "every list call answers malformed: truncated_json | data_not_list | no_pagination | "
                      "no_total (pagination without a total) | html",
    "token_revoke_every": "every K-th authenticated /api/* call revokes the token it used (0 = off)",
    "token_fail_rate": "share of /auth/token calls answering 503",
    "revoke_on_issue": "issuing a token ends the previous tokens of the same credentials",
    "revoke_all_every": "every K-th authenticated /api/* call revokes every live token; new ones work (0 = off)",
    "refuse_tokens": "tokens are issued, but every /api/* call refuses them with 401 (access withdrawn)",
    "down": "an outage: every call except /_fake/* fails the way down_mode says",
    "down_mode": "how the platform fails while down: reset (connection reset) | 503 | hang (never answers)",
    "no_insights_rate": "metered: share of campaigns (fixed by the seed) listed without insights (no data yet)",
    "statuses": "how many campaigns have each status, in id order, e.g. active:100,paused:400 (the rest: the seed's "
                "draw of active, paused, completed)",
    "status_changes": "campaigns whose status changed on the platform, e.g. 7=paused,12=completed (change it while "
                      "running to pause or archive one)",
}


@dataclass
class FakePlatformConfig:
    dialect: str = "reference"
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
    list_latency: float = 0.0
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
    overlap_pages: bool = False
    delete_between_pages: int = 0
    bad_field_rate: float = 0.0
    oversized_list_mb: float = 0.0
    oversized_chunked: bool = False
    malformed_list: str | None = None
    token_revoke_every: int = 0
    token_fail_rate: float = 0.0
    revoke_on_issue: bool = False
    revoke_all_every: int = 0
    refuse_tokens: bool = False
    down: bool = False
    down_mode: str = "reset"
    no_insights_rate: float = 0.1
    statuses: str = ""
    status_changes: str = ""

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

        for name in ("campaigns", "default_page_size", "max_page_size", "token_revoke_every", "seed",
                     "delete_between_pages", "revoke_all_every"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an int, got {value!r}")
        check(isinstance(self.total_drift, int) and not isinstance(self.total_drift, bool),
              f"total_drift must be an int, got {self.total_drift!r}")
        number("campaigns")
        number("default_page_size", 1)
        number("max_page_size", 1)
        number("token_revoke_every")
        number("revoke_all_every")
        number("delete_between_pages")
        number("oversized_list_mb")
        number("sync_latency")
        number("sync_latency_jitter")
        number("list_latency")
        number("token_lifetime")
        for name in ("list_fail_rate", "sync_fail_rate", "hang_rate", "reset_rate", "server_error_rate",
                     "html_error_rate", "not_found_rate", "bad_row_rate", "token_fail_rate", "bad_field_rate",
                     "no_insights_rate"):
            number(name)
            check(getattr(self, name) <= 1, f"{name} is a probability, must be <= 1")
        if self.retry_after_override is not None:
            number("retry_after_override")
        parse_rate_limit(self.rate_limit)  # raises ValueError with a clear message
        check(self.retry_after_mode in RETRY_AFTER_MODES,
              f"retry_after_mode must be one of {RETRY_AFTER_MODES}, got {self.retry_after_mode!r}")
        check(self.malformed_list is None or self.malformed_list in MALFORMED_LIST_MODES,
              f"malformed_list must be None or one of {MALFORMED_LIST_MODES}, got {self.malformed_list!r}")
        check(self.dialect in DIALECTS, f"dialect must be one of {DIALECTS}, got {self.dialect!r}")
        check(self.down_mode in DOWN_MODES, f"down_mode must be one of {DOWN_MODES}, got {self.down_mode!r}")
        for name in ("hostile_values", "has_more_lies", "duplicate_across_pages", "overlap_pages", "revoke_on_issue",
                     "refuse_tokens", "down", "oversized_chunked"):
            check(isinstance(getattr(self, name), bool), f"{name} must be a bool")
        check(isinstance(self.email, str) and isinstance(self.password, str), "email and password must be strings")
        check(isinstance(self.statuses, str) and isinstance(self.status_changes, str),
              "statuses and status_changes must be strings")
        try:
            parse_statuses(self.statuses)
            parse_status_changes(self.status_changes)
        except ValueError as error:
            check(False, str(error))

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


