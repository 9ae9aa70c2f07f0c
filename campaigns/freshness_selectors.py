"""How fresh each account's campaigns are against its targets, per class, and what the targets ask of the budget.

One aggregate query per distinct set of targets (most installations have
one or two), whatever the number of accounts: the class and the age bin of
every campaign are worked out by the database.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, CharField, Count, IntegerField, Min, Q, Value, When
from django.db.models.functions import Coalesce, Lower

from campaigns.models import AdAccount, Campaign
from syncer.budget import RateBudget
from syncer.freshness import (
    ACTIVE,
    AGE_BINS,
    CLASSES,
    OTHER,
    OTHER_STATUSES,
    PAUSED,
    PAUSED_STATUSES,
    TARGET_BIN,
    Plan,
    Targets,
    plan,
)


@dataclass
class ClassFreshness:
    """One class of an account's campaigns: how many, how many within the target, since when the oldest."""

    klass: str
    target_seconds: float
    campaigns: int = 0
    within_target: int = 0
    oldest_since: datetime | None = None  # the oldest last sync (or first sighting, never synced)

    @property
    def share(self) -> float | None:
        return self.within_target / self.campaigns if self.campaigns else None

    def oldest_seconds(self, now: datetime) -> float | None:
        return max((now - self.oldest_since).total_seconds(), 0.0) if self.oldest_since else None


@dataclass
class AccountFreshness:
    classes: dict[str, ClassFreshness]
    histogram: list[int]  # campaigns per age bin, the age a multiple of each one's own target (AGE_BINS)
    plan: Plan


def accounts_freshness(accounts: list[AdAccount], *, budgets: dict[int, RateBudget | None], page_size: int,
                       now: datetime) -> dict[int, AccountFreshness]:
    """Account pk -> its freshness; `budgets` is the budget each account may spend (None: no limit)."""
    by_targets: dict[Targets, list[int]] = defaultdict(list)
    for account in accounts:
        by_targets[account.freshness_targets].append(account.pk)
    found: dict[int, AccountFreshness] = {}
    for targets, account_ids in by_targets.items():
        blank = {pk: _blank(targets) for pk in account_ids}
        for row in _age_rows(account_ids, targets, now):
            freshness = blank[row["account_id"]]
            _count(freshness, row)
        for pk, (classes, histogram) in blank.items():
            counts = {klass: classes[klass].campaigns for klass in CLASSES}
            found[pk] = AccountFreshness(classes=classes, histogram=histogram,
                                         plan=plan(counts=counts, targets=targets, budget=budgets.get(pk),
                                                   page_size=page_size))
    return found


def _blank(targets: Targets) -> tuple[dict[str, ClassFreshness], list[int]]:
    return ({klass: ClassFreshness(klass=klass, target_seconds=targets.of(klass)) for klass in CLASSES},
            [0] * (len(AGE_BINS) + 1))


def _count(freshness: tuple[dict[str, ClassFreshness], list[int]], row: dict) -> None:
    classes, histogram = freshness
    one = classes[row["klass"]]
    one.campaigns += row["n"]
    if row["age_bin"] <= TARGET_BIN:
        one.within_target += row["n"]
    if row["oldest"] is not None and (one.oldest_since is None or row["oldest"] < one.oldest_since):
        one.oldest_since = row["oldest"]
    histogram[row["age_bin"]] += row["n"]


def _age_rows(account_ids: list[int], targets: Targets, now: datetime):
    """(account, class, age bin) -> campaigns and the oldest of them, for accounts sharing these targets."""
    klass = Case(
        When(pinned_active=True, then=Value(ACTIVE)),
        When(status_word__in=PAUSED_STATUSES, then=Value(PAUSED)),
        When(status_word__in=OTHER_STATUSES, then=Value(OTHER)),
        default=Value(ACTIVE), output_field=CharField())
    # The first bin whose bound (a multiple of the class's target) the campaign's age is within.
    bins = [When(Q(klass=name) & Q(since__gte=now - timedelta(seconds=targets.of(name) * bound)), then=Value(index))
            for index, bound in enumerate(AGE_BINS) for name in CLASSES]
    return (Campaign.objects.filter(account_id__in=account_ids).order_by()
            .alias(status_word=Lower("status"), since=Coalesce("last_synced_at", "first_seen_at"))
            .annotate(klass=klass)
            .annotate(age_bin=Case(*bins, default=Value(len(AGE_BINS)), output_field=IntegerField()))
            .values("account_id", "klass", "age_bin")
            .annotate(n=Count("id"), oldest=Min("since")))
