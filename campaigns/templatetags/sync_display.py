"""Display filters shared by the status page, /status.json and the admin: durations, rates, badges, names."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

register = template.Library()

DASH = "—"
NAME_LENGTH = 80
_SPACES = re.compile(r"\s+")

# One colour per status, readable with white text; the admin and the status page share them.
STATUS_COLOURS = {
    "succeeded": "#1a7f37", "partial": "#9a6700", "failed": "#cf222e", "cancelled": "#6e7781",
    "queued": "#8250df", "running": "#0969da", "pending": "#6e7781", "never": "#6e7781",
}
STATUS_LABELS = {"succeeded": "Succeeded", "partial": "Partial", "failed": "Failed", "cancelled": "Cancelled",
                 "queued": "Queued", "running": "Running", "pending": "Pending", "never": "Never synced"}


@register.filter
def duration(value: timedelta | float | int | None) -> str:
    """`timedelta` or seconds as "850 ms", "42 s", "3 min 05 s", "2 h 04 min"."""
    if value is None or value == "":
        return DASH
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def percentage(value: float | None, digits: int = 0) -> str:
    """A share (0.953) as "95%"; None as a dash."""
    if value is None or value == "":
        return DASH
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def percent_text(value: float | None) -> str:
    """A percentage already scaled (36.7) as "37%"."""
    return DASH if value is None or value == "" else f"{float(value):.0f}%"


@register.filter
def run_progress(run) -> str:
    """Where an active or ended run stands, in words."""
    if run is None:
        return ""
    if run.is_active and not run.prepared_at:
        return "waiting for a worker" if run.status == "queued" else f"listing campaigns ({run.pages} pages so far)"
    return (f"{run.campaigns_done} / {run.campaigns_listed} done · {run.campaigns_synced} synced · "
            f"{run.campaigns_failed} failed")


@register.filter
def platform_unavailable(run) -> str:
    """"platform unavailable since 14:03:12" while an active run's platform is in an outage, else empty."""
    since = getattr(run, "platform_unavailable_since", None)
    if since is None or not run.is_active:
        return ""
    return f"platform unavailable since {timezone.localtime(since):%H:%M:%S}"


@register.filter
def eta_text(account_status) -> str:
    """The ETA of an account's current run: "about 1 min 20 s", "estimating…" or "done"."""
    run = account_status.run
    if run is None or not run.is_active:
        return "done"
    eta = account_status.eta_seconds
    return "estimating…" if eta is None else f"about {duration(eta)}"


@register.filter
def ago(value: datetime | None, now: datetime | None = None) -> str:
    """"3 minutes ago", "just now" or "never"."""
    if not value:
        return "never"
    now = now or timezone.now()
    if now - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value, now, depth=1)} ago"


@register.filter
def short_name(value: str | None, length: int = NAME_LENGTH) -> str:
    """A campaign name on one line and at most `length` characters: names come from the platform, any size."""
    text = _SPACES.sub(" ", value or "").strip()
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


@register.filter
def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, "#6e7781")


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


@register.filter
def status_badge(status: str) -> SafeString:
    """A coloured badge; the colour sits inline so the admin needs no stylesheet of ours."""
    return format_html(
        '<span class="badge" data-status="{}" style="background:{};color:#fff;padding:1px 7px;'
        'border-radius:9px;font-size:0.85em;white-space:nowrap">{}</span>',
        status, status_colour(status), status_label(status),
    )


@register.filter
def milliseconds(value: int | None) -> str:
    return DASH if value is None else f"{value} ms"


@register.inclusion_tag("status/_runs_chart.html")
def runs_chart(runs, slots: int = 20, height: int = 80, bar_width: int = 14, gap: int = 4) -> dict:
    """Synced (bottom) and failed (top) campaigns of each run as stacked bars, the newest on the right.

    The chart always has room for `slots` bars, so that a short history
    draws thin bars rather than one bar stretched across the page.
    """
    ordered = list(reversed(runs))
    slots = max(slots, len(ordered))
    tallest = max((run.campaigns_synced + run.campaigns_failed for run in ordered), default=0) or 1
    first_slot = slots - len(ordered)
    bars = []
    for index, run in enumerate(ordered):
        synced_height = height * run.campaigns_synced / tallest
        failed_height = height * run.campaigns_failed / tallest
        bars.append({
            "run": run, "x": (first_slot + index) * (bar_width + gap),
            "synced_y": height - synced_height, "synced_height": synced_height,
            "failed_y": height - synced_height - failed_height, "failed_height": failed_height,
        })
    return {"bars": bars, "height": height, "bar_width": bar_width, "width": slots * (bar_width + gap) - gap,
            "tallest": tallest}
