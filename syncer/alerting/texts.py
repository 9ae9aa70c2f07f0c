"""Every word an alert says, from our own templates: names, conditions, run ids, counts; never a platform's answer.

An account's name is the only text a person typed; it is put on one line here.
"""
from __future__ import annotations

from datetime import datetime

from campaigns.alert_models import Alert, AlertCondition
from campaigns.models import AdAccount, SyncRun

MESSAGE_MAX = 500


def one_line(text: str, limit: int = MESSAGE_MAX) -> str:
    return " ".join(text.split())[:limit]


def _ago(since: datetime, now: datetime) -> str:
    minutes = max(int((now - since).total_seconds() // 60), 0)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 48 * 60 else f"{minutes // (24 * 60)} days"


def run_failed(account: AdAccount, run: SyncRun) -> str:
    if not run.campaigns_listed:
        return one_line(f"{account.name}: sync run #{run.pk} ended {run.status} before any campaign was listed; "
                        "see the run's error in the admin")
    return one_line(f"{account.name}: sync run #{run.pk} ended {run.status} ({run.campaigns_synced} synced, "
                    f"{run.campaigns_failed} failed); see the run in the admin, then retry its failed campaigns")


def credentials_refused(account: AdAccount, run: SyncRun) -> str:
    return one_line(f"{account.name}: the platform refused the account's credentials (run #{run.pk}); "
                    "enter the current email and password on the account in the admin")


def stale(account: AdAccount, *, since: datetime, now: datetime) -> str:
    what = "no successful sync for" if account.last_success_at else "never synced; added"
    return one_line(f"{account.name}: {what} {_ago(since, now)}{'' if account.last_success_at else ' ago'} "
                    f"(its limit is {account.stale_after_minutes} min)")


def platform_unavailable(account: AdAccount, *, since: datetime, now: datetime, run_id: int | None) -> str:
    return one_line(f"{account.name}: the platform has been unavailable for {_ago(since, now)} "
                    f"(run #{run_id}, since {since:%Y-%m-%d %H:%M} UTC)")


def state_of(alert: Alert, *, at: datetime) -> str:
    """"resolved" when the alert had cleared by `at` (when the message about it was queued), else "opened"."""
    return "resolved" if alert.resolved_at and alert.resolved_at <= at else "opened"


def headline(alert: Alert, state: str) -> str:
    label = AlertCondition(alert.condition).label
    return one_line(f"{'Resolved' if state == 'resolved' else 'Alert'}: {alert.account.name}: {label}", 200)


def line_of(alert: Alert, state: str) -> str:
    return alert.message if state == "opened" else one_line(f"Resolved: {alert.message}")


def digest_headline(count: int) -> str:
    return f"{count} alerts opened or resolved"


def with_status_link(lines: list[str], status_url: str) -> str:
    return "\n".join([*lines, *([f"Status page: {status_url}"] if status_url else [])])
