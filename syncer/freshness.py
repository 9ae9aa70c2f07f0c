"""Freshness under a budget: a campaign's class and target age, and the plan that keeps each class within it.

A full sync of an account with 1,000 campaigns takes 100 minutes at 10 calls
a minute, so a campaign spending money now should not wait behind last
year's paused ones. Each campaign is in one class (active, paused, other)
with a target age per account; the plan says how often each class is synced
and listed for the budget to keep them within their targets, and when it
cannot, how far each class is deferred, active campaigns served first and no
campaign planned past four times its target while the budget allows it.

Pure functions of counts, targets and a budget (no database, no Django), so
the status page, the admin and the planner of runs share them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from syncer.budget import RateBudget
from syncer.validation import DURATION_UNITS, parse_duration

ACTIVE, PAUSED, OTHER = "active", "paused", "other"
CLASSES = (ACTIVE, PAUSED, OTHER)
# Statuses as the platforms spell them, lower-cased (Meta's effective_status among them). A status we do not know,
# or could not read, counts as active: a call spent on it is cheaper than a live campaign gone stale.
PAUSED_STATUSES = frozenset({"paused", "campaign_paused", "adset_paused", "disabled"})
OTHER_STATUSES = frozenset({"archived", "completed", "deleted", "ended", "removed"})

DEFAULT_TARGETS_SECONDS = {ACTIVE: 3600, PAUSED: 24 * 3600, OTHER: 7 * 24 * 3600}
# A class is planned at 90 % of its target when the budget allows it: the pause between a campaign's turn and
# its answer (a run's start, the call's latency) is then spent inside the target, not past it.
HEADROOM = 0.9
# A slot is reused a little after its window: the limiter waits out the spread of the platform's answer times
# (syncer/answer_times.py), and each cycle starts and ends. So runs spend N calls per W + REUSE_MARGIN seconds:
# measured 2,014 calls in 420 s at 10/2s (96 %) in the freshness benchmark, where a plan that counted the whole
# budget left its last class (paused) within target only 96.3 % of the time (99.9 % with the margin counted, at
# 0ad3178). At 10/60s it costs 0.2 %.
REUSE_MARGIN = 0.1
# No campaign is planned past this many times its target while the budget can avoid it.
MAX_STRETCH = 4.0
# The histogram's bins: age as a multiple of the campaign's own target (the last bin is everything older).
AGE_BINS = (0.5, 1.0, 2.0, 4.0)
TARGET_BIN = AGE_BINS.index(1.0)  # the bins up to this one are within the target
AGE_BIN_LABELS = ("≤ ½ target", "≤ target", "≤ 2x target", "≤ 4x target", "> 4x target")

TARGET_EXPECTS = "seconds, or a number with s, m, h or d (90s, 1h, 24h, 7d), from 10 s to 365 d"
TARGET_MIN_SECONDS, TARGET_MAX_SECONDS = 10, 365 * 24 * 3600


def freshness_class(status: str, *, pinned: bool = False) -> str:
    """The class of a campaign with this status; a campaign pinned in the admin is active whatever it says."""
    word = (status or "").strip().lower()
    if pinned or not (word in PAUSED_STATUSES or word in OTHER_STATUSES):
        return ACTIVE
    return PAUSED if word in PAUSED_STATUSES else OTHER


def parse_target(text: str | int) -> int:
    """A target age in whole seconds from "3600" or a duration ("90s", "30m", "1h", "24h", "7d"); ValueError says
    what is wrong."""
    word = str(text).strip().lower()
    try:
        seconds = int(word) if word.isdigit() else int(parse_duration(word).total_seconds())
    except ValueError:
        seconds = None
    if seconds is None or not TARGET_MIN_SECONDS <= seconds <= TARGET_MAX_SECONDS:
        raise ValueError(f"{str(text)[:40]!r} is not a target age: expected {TARGET_EXPECTS}")
    return seconds


def target_text(seconds: float) -> str:
    """The largest unit that says a target exactly: 3600 -> "1h", 90 -> "90s", 86400 * 7 -> "7d"."""
    for unit in ("d", "h", "m"):
        if seconds >= DURATION_UNITS[unit] and seconds % DURATION_UNITS[unit] == 0:
            return f"{int(seconds // DURATION_UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def about(seconds: float) -> str:
    """A rough duration for a sentence: "31 h", "7.5 min", "2.3 d"."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.2g} {unit}" if seconds < 10 * size else f"{round(seconds / size)} {unit}"
    return f"{seconds:.2g} s" if seconds < 10 else f"{round(seconds)} s"


@dataclass(frozen=True)
class Targets:
    """Seconds a campaign of each class may go unsynced."""

    active: float
    paused: float
    other: float

    def of(self, klass: str) -> float:
        return getattr(self, klass)

    @property
    def shortest(self) -> float:
        return min(self.active, self.paused, self.other)


@dataclass(frozen=True)
class Plan:
    """How often each class is synced and the campaigns listed, and what that asks of the budget.

    `intervals` are the planned seconds between two syncs of one campaign of
    a class; `needed_per_minute` the calls a minute that syncing every class
    at its target (and listing) takes; `coverage` the share of that the
    budget gives (1.0: all of it).
    """

    counts: Mapping[str, int]
    targets: Targets
    intervals: Mapping[str, float]
    listing_every: float
    listing_pages: int
    needed_per_minute: float
    budget_per_minute: float | None
    coverage: float

    @property
    def load(self) -> float | None:
        """Calls the targets need against the calls the budget gives (above 1: it cannot cover them)."""
        return self.needed_per_minute / self.budget_per_minute if self.budget_per_minute else None

    def stretch(self, klass: str) -> float:
        return self.intervals[klass] / self.targets.of(klass)

    @property
    def deferred(self) -> list[str]:
        """The classes with campaigns planned past their target."""
        return [klass for klass in CLASSES if self.counts.get(klass) and self.stretch(klass) > 1.0]

    def load_text(self) -> str:
        """"the targets need 278 calls a minute; the budget gives 300 (93 %)"."""
        need = f"the targets need {self.needed_per_minute:.3g} calls a minute"
        if self.budget_per_minute is None:
            return f"{need}; no budget is set"
        return f"{need}; the budget gives {self.budget_per_minute:.3g} ({self.load * 100:.0f} %)"

    def shortfall_text(self) -> str | None:
        """"the budget covers 72 % of the targets; paused campaigns deferred to about every 31 h", or None."""
        if self.coverage >= 1.0:
            return None
        deferred = [f"{klass} campaigns to about every {about(self.intervals[klass])}" for klass in self.deferred]
        text = f"the budget covers {math.floor(self.coverage * 100)} % of the targets"
        if not deferred:
            return text
        worst = max(self.stretch(klass) for klass in self.deferred)
        beyond = "; even so some wait more than 4x their target: raise the budget or the targets" \
            if worst > MAX_STRETCH + 1e-9 else ""
        return f"{text}; deferred: {', '.join(deferred)}{beyond}"


def plan(*, counts: Mapping[str, int], targets: Targets, budget: RateBudget | None, page_size: int) -> Plan:
    """The plan for one account's campaigns (`counts` per class) under `budget` (None: no limit).

    The listing comes as often as the shortest target, so a new campaign is
    found within it; it pays its pages first. With enough budget every
    class is synced at `HEADROOM` of its target (or just under its target
    when the budget is nearly all needed). Without, active campaigns keep
    their target and the other classes share what is left.
    """
    pages = max(1, math.ceil(sum(counts.values()) / page_size))
    need = {klass: counts.get(klass, 0) / targets.of(klass) for klass in CLASSES}  # calls a second at the targets
    listing_every = targets.shortest
    rate = budget.calls / budget.window_seconds if budget is not None else math.inf
    usable = budget.calls / (budget.window_seconds + REUSE_MARGIN) if budget is not None else math.inf
    listing_every = max(listing_every, pages / (usable / 2))  # a listing alone never takes more than half of it
    syncs = usable - pages / listing_every
    needed = sum(need.values()) + pages / listing_every
    stretches = _stretches(need, syncs)
    return Plan(
        counts=dict(counts), targets=targets,
        intervals={klass: targets.of(klass) * stretches[klass] for klass in CLASSES},
        listing_every=listing_every, listing_pages=pages, needed_per_minute=needed * 60,
        budget_per_minute=None if budget is None else rate * 60,
        coverage=min(1.0, usable / needed) if needed else 1.0,
    )


def _stretches(need: Mapping[str, float], syncs: float) -> dict[str, float]:
    """Each class's interval as a multiple of its target, for `need` calls a second against `syncs` to spend.

    Past the budget, active campaigns keep `HEADROOM` of their target when
    the others then stay within `HEADROOM` of four times theirs; otherwise
    the calls left over from active at its target and the others at four
    times theirs shorten both alike, so each keeps the same margin.
    """
    total = sum(need.values())
    if total <= syncs:
        even = max(HEADROOM, total / syncs)
        return dict.fromkeys(CLASSES, even)
    rest = need[PAUSED] + need[OTHER]
    left = syncs - need[ACTIVE] / HEADROOM
    if left > 0 and rest <= left * MAX_STRETCH * HEADROOM:
        return {ACTIVE: HEADROOM, PAUSED: rest / left, OTHER: rest / left}
    floor = need[ACTIVE] + rest / MAX_STRETCH  # active at its target, the others at four times theirs
    if floor <= syncs:
        share = floor / syncs
        return {ACTIVE: share, PAUSED: MAX_STRETCH * share, OTHER: MAX_STRETCH * share}
    left = syncs - rest / MAX_STRETCH  # the others at 4x; active takes what remains, if that keeps it within 4x
    if left > 0 and need[ACTIVE] <= left * MAX_STRETCH:
        return {ACTIVE: need[ACTIVE] / left, PAUSED: MAX_STRETCH, OTHER: MAX_STRETCH}
    return dict.fromkeys(CLASSES, total / syncs)  # no class can be kept within 4x: all wait alike
