"""The status page's freshness strings, shared with /status.json: each class against its target, the age
histogram and the budget load (campaigns/freshness_selectors.py)."""
from __future__ import annotations

from datetime import datetime

from django import template

from campaigns.freshness_selectors import AccountFreshness, ClassFreshness
from syncer.freshness import AGE_BIN_LABELS, CLASSES, about, target_text

register = template.Library()


def class_text(one: ClassFreshness, now: datetime) -> str:
    """"98 % of 100 within 1h · oldest 52 min", or "none" for a class without campaigns."""
    if not one.campaigns:
        return "none"
    share = one.within_target / one.campaigns * 100
    shown = f"{share:.0f}" if share == 100 or share < 99 else f"{share:.1f}"  # 99.6 % is not 100 %
    return (f"{shown} % of {one.campaigns} within {target_text(one.target_seconds)} · "
            f"oldest {about(one.oldest_seconds(now) or 0)}")


def histogram_shares(freshness: AccountFreshness) -> list[float]:
    total = sum(freshness.histogram)
    return [100.0 * count / total if total else 0.0 for count in freshness.histogram]


@register.filter
def freshness_display(freshness: AccountFreshness | None, now: datetime) -> dict[str, str]:
    """The strings the page shows, under the names its `data-display` elements carry."""
    if freshness is None:
        return {}
    display = {f"fresh_{klass}": class_text(freshness.classes[klass], now) for klass in CLASSES}
    display.update({f"fresh_bin_{index}": str(count) for index, count in enumerate(freshness.histogram)})
    display["budget_load"] = freshness.plan.load_text()
    display["fresh_shortfall"] = freshness.plan.shortfall_text() or ""
    return display


@register.simple_tag
def age_bins(freshness: AccountFreshness) -> list[dict]:
    """The histogram's bins: label, count and share of the account's campaigns (for the bars' widths)."""
    return [{"index": index, "label": label, "count": count, "percent": share}
            for index, (label, count, share) in enumerate(
                zip(AGE_BIN_LABELS, freshness.histogram, histogram_shares(freshness), strict=True))]
