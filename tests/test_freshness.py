"""Freshness targets and the plan that keeps each class of campaign within them (syncer/freshness.py)."""
from __future__ import annotations

import pytest

from syncer.budget import parse_budget
from syncer.freshness import (
    ACTIVE,
    MAX_STRETCH,
    OTHER,
    PAUSED,
    REUSE_MARGIN,
    Targets,
    freshness_class,
    parse_target,
    plan,
    target_text,
)

BENCH_TARGETS = Targets(active=40, paused=200, other=7 * 86400)
BENCH_COUNTS = {ACTIVE: 100, PAUSED: 400}


@pytest.mark.parametrize(("status", "expected"), [
    ("active", ACTIVE), ("ACTIVE", ACTIVE), ("with_issues", ACTIVE), ("", ACTIVE), ("some new word", ACTIVE),
    ("paused", PAUSED), ("PAUSED", PAUSED), ("campaign_paused", PAUSED),
    ("completed", OTHER), ("ARCHIVED", OTHER), ("deleted", OTHER),
])
def test_a_campaign_is_active_paused_or_other_by_its_status_and_an_unknown_status_counts_as_active(status, expected):
    assert freshness_class(status) == expected


def test_a_pinned_campaign_is_active_whatever_its_status():
    assert freshness_class("archived", pinned=True) == ACTIVE
    assert freshness_class("paused", pinned=True) == ACTIVE


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("90s", 90), ("30m", 1800), ("1h", 3600),
                                               ("24h", 86400), ("7d", 604800), (" 2 H ", 7200)])
def test_a_target_is_seconds_or_a_number_with_a_unit(text, seconds):
    assert parse_target(text) == seconds


@pytest.mark.parametrize("text", ["", "an hour", "1.5h", "5s", "0", "400d", "-1h", "1w"])
def test_a_bad_target_raises_one_line_saying_what_is_expected(text):
    with pytest.raises(ValueError, match="is not a target age: expected seconds, or a number with s, m, h or d"):
        parse_target(text)


@pytest.mark.parametrize(("seconds", "text"), [(3600, "1h"), (90, "90s"), (604800, "7d"), (5400, "90m"), (86400, "1d")])
def test_a_target_is_shown_in_the_largest_unit_that_says_it_exactly(seconds, text):
    assert target_text(seconds) == text
    assert parse_target(text) == seconds


def test_a_feasible_plan_syncs_every_class_a_little_before_its_target_and_lists_within_the_shortest():
    # The freshness benchmark's first row: 500 campaigns, 10/2s, about 90 % of the budget.
    result = plan(counts=BENCH_COUNTS, targets=BENCH_TARGETS, budget=parse_budget("10/2s"), page_size=100)
    assert result.coverage == 1.0 and result.shortfall_text() is None and not result.deferred
    assert result.listing_every == 40 and result.listing_pages == 5
    assert result.needed_per_minute == pytest.approx((100 / 40 + 400 / 200 + 5 / 40) * 60)
    assert result.load == pytest.approx(4.625 / 5)
    for klass in (ACTIVE, PAUSED):
        assert 0.9 <= result.stretch(klass) < 1.0
    # The plan spends what runs can of the budget (a slot is reused REUSE_MARGIN after its window): syncs at the
    # planned intervals plus the listing.
    spent = sum(result.counts[klass] / result.intervals[klass] for klass in (ACTIVE, PAUSED)) + 5 / 40
    assert spent == pytest.approx(10 / (2 + REUSE_MARGIN))


def test_with_budget_to_spare_every_class_is_planned_at_nine_tenths_of_its_target():
    result = plan(counts=BENCH_COUNTS, targets=BENCH_TARGETS, budget=parse_budget("100/2s"), page_size=100)
    assert result.intervals[ACTIVE] == pytest.approx(36) and result.intervals[PAUSED] == pytest.approx(180)
    assert result.coverage == 1.0


def test_an_overloaded_plan_keeps_active_campaigns_within_their_target_and_defers_the_others_within_four_times():
    # The benchmark's second row: the same with 10/3s, about 135 % load.
    result = plan(counts=BENCH_COUNTS, targets=BENCH_TARGETS, budget=parse_budget("10/3s"), page_size=100)
    assert result.coverage == pytest.approx(10 / (3 + REUSE_MARGIN) / 4.625)
    # Both keep a margin: active under its target, paused under four times its own, by the same share.
    assert result.stretch(ACTIVE) < 1.0
    assert 1.0 < result.stretch(PAUSED) < MAX_STRETCH
    assert result.stretch(PAUSED) == pytest.approx(MAX_STRETCH * result.stretch(ACTIVE))
    assert result.deferred == [PAUSED]
    spent = sum(result.counts[klass] / result.intervals[klass] for klass in (ACTIVE, PAUSED)) + 5 / 40
    assert spent == pytest.approx(10 / (3 + REUSE_MARGIN))
    assert result.intervals[PAUSED] == pytest.approx(774, abs=1)
    assert result.shortfall_text() == ("the budget covers 69 % of the targets; deferred: paused campaigns to about "
                                       "every 13 min")


def test_a_small_overload_keeps_active_campaigns_at_nine_tenths_of_their_target():
    result = plan(counts={ACTIVE: 100, PAUSED: 500}, targets=BENCH_TARGETS, budget=parse_budget("10/2s"), page_size=100)
    assert result.coverage < 1.0 and result.stretch(ACTIVE) == pytest.approx(0.9)
    assert 1.0 < result.stretch(PAUSED) < 0.9 * MAX_STRETCH


def test_when_even_four_times_the_target_is_out_of_reach_for_the_others_active_campaigns_give_way_first():
    counts = {ACTIVE: 100, PAUSED: 1200}  # paused at 4x its target leaves active less than its target needs
    result = plan(counts=counts, targets=BENCH_TARGETS, budget=parse_budget("10/3s"), page_size=100)
    assert result.stretch(PAUSED) == MAX_STRETCH
    assert result.stretch(ACTIVE) > 1.0
    assert "active campaigns to about every" in result.shortfall_text()


def test_a_budget_far_below_the_targets_stretches_every_class_alike_and_says_to_raise_it():
    counts = {ACTIVE: 10_000, PAUSED: 10_000, OTHER: 10_000}
    result = plan(counts=counts, targets=Targets(active=3600, paused=86400, other=604800),
                  budget=parse_budget("10/60s"), page_size=100)
    stretches = {result.stretch(klass) for klass in (ACTIVE, PAUSED, OTHER)}
    assert len({round(stretch, 6) for stretch in stretches}) == 1 and min(stretches) > MAX_STRETCH
    assert result.shortfall_text().endswith("raise the budget or the targets")


def test_the_listing_never_takes_more_than_half_the_budget():
    result = plan(counts={ACTIVE: 100_000}, targets=Targets(active=60, paused=600, other=6000),
                  budget=parse_budget("10/60s"), page_size=100)
    assert result.listing_pages / result.listing_every == pytest.approx(10 / (60 + REUSE_MARGIN) / 2)


def test_without_a_budget_every_class_is_planned_at_nine_tenths_of_its_target():
    result = plan(counts=BENCH_COUNTS, targets=BENCH_TARGETS, budget=None, page_size=100)
    assert result.intervals[ACTIVE] == pytest.approx(36) and result.coverage == 1.0 and result.load is None
