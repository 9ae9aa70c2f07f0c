"""The margin a rate slot waits before its reuse follows the measured spread of the platform's answers."""
from __future__ import annotations

import pytest

from syncer import answer_times as answer_times_module
from syncer.answer_times import MARGIN_FLOOR, AnswerTimes, safety_margin


@pytest.fixture
def answers(monkeypatch) -> AnswerTimes:
    fresh = AnswerTimes(recent=100)
    monkeypatch.setattr(answer_times_module, "ANSWER_TIMES", fresh)
    return fresh


def test_before_any_answer_the_margin_is_the_floor(answers):
    assert safety_margin(60) == MARGIN_FLOOR


def test_steady_answers_keep_the_margin_at_the_floor_at_the_real_budget(answers):
    for index in range(100):
        answers.note("POST", 2.0 + (index % 5) * 0.002)  # 2 s answers that vary by a few milliseconds
    assert answers.spread() == pytest.approx(0.008)
    assert safety_margin(60) == MARGIN_FLOOR, "0.1 s a window, not the 0.6 s of a fixed 1 %"


def test_answers_that_vary_widen_the_margin_by_their_spread(answers):
    for index in range(100):
        answers.note("POST", 2.0 + (index % 10) * 0.05)  # between 2.0 and 2.45 s
    assert safety_margin(60) == pytest.approx(0.45)


def test_a_rare_slow_answer_does_not_widen_the_margin(answers):
    for _ in range(99):
        answers.note("POST", 2.0)
    answers.note("POST", 30.0)  # one call that hung until its timeout
    assert safety_margin(60) == MARGIN_FLOOR


def test_the_margin_never_exceeds_one_percent_of_the_window(answers):
    for index in range(100):
        answers.note("POST", 1.0 + index * 0.1)  # anything from 1 s to 11 s
    assert safety_margin(60) == pytest.approx(0.6)


def test_only_the_recent_answers_count(answers):
    for _ in range(100):
        answers.note("POST", 3.0)  # a slow stretch: spread 0 against its own fastest
    answers.note("POST", 2.0)  # faster now: the old ones set the 95th percentile a second above it
    assert answers.spread() == pytest.approx(1.0)
    for _ in range(100):
        answers.note("POST", 2.0)  # the stretch has left the window
    assert answers.spread() == 0.0


def test_each_kind_of_call_has_its_own_fastest_answer_and_the_wider_spread_counts(answers):
    for _ in range(100):
        answers.note("GET", 0.01)
        answers.note("POST", 2.0)
    answers.note("POST", 2.3)
    for _ in range(10):
        answers.note("POST", 2.3)
    assert answers.spread() == pytest.approx(0.3), "a listing's fast pages do not make every sync look slow"
