"""The status page, its JSON twin for monitors, its two buttons, and the health check.

Reads come from `campaigns.selectors`, writes go through `syncer.services`:
the same path as the admin and the command.
"""
from __future__ import annotations

import logging
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from campaigns import selectors
from campaigns.models import AdAccount, SyncRun, Trigger
from campaigns.templatetags.freshness_display import age_bins, freshness_display
from campaigns.templatetags.sync_display import (
    ago,
    duration,
    eta_text,
    milliseconds,
    percent_text,
    platform_unavailable,
    run_progress,
    short_name,
    status_colour,
    status_label,
)
from syncer import services

log = logging.getLogger(__name__)

TRIGGER_PERMISSION = "campaigns.trigger_sync"
POLL_MILLISECONDS = 1500


def staff_required(view):
    """Viewing needs staff; a logged-in user without it gets 403 (anonymous users never get here)."""
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)
    return wrapped


def run_admin_url(run: SyncRun) -> str:
    return reverse("admin:campaigns_syncrun_change", args=[run.pk])


def run_link(run: SyncRun) -> str:
    """"Run #12", linking to the run's admin page: every message about a run carries one."""
    return format_html('<a href="{}">Run #{}</a>', run_admin_url(run), run.pk)


def refusal_message(refused: services.SyncRefused) -> str:
    """The service's one-line reason, plus a link to the run in the way (or the run that failed) when there is one."""
    run = refused.active_run or refused.failed_run
    if run is None:
        return str(refused)
    return format_html("{}: see {}.", str(refused), run_link(run))


# --- pages ------------------------------------------------------------------------

@require_safe
@never_cache
@login_required
@staff_required
def status_page(request: HttpRequest) -> HttpResponse:
    overview = selectors.status_overview()
    return render(request, "status/page.html", {"overview": overview, "poll_ms": POLL_MILLISECONDS})


@require_safe
@never_cache
@login_required
def status_json(request: HttpRequest) -> JsonResponse:
    if not request.user.is_staff:
        return JsonResponse({"error": "staff only"}, status=403)
    return JsonResponse(overview_json(selectors.status_overview()))


def trigger_view(view):
    """A status-page button: a POST by staff allowed to start syncs, answered with a message and the page."""
    return require_POST(login_required(staff_required(
        permission_required(TRIGGER_PERMISSION, raise_exception=True)(view))))


def start_and_say(request: HttpRequest, start, success: str, details) -> HttpResponse:
    """Run `start()`; say what started (a link to the run, then `details(run)`) or why it was refused."""
    try:
        run = start()
    except services.SyncRefused as refused:  # a run that failed at once (its task was not queued) is an error
        (messages.error if refused.failed_run else messages.warning)(request, refusal_message(refused))
    else:
        messages.success(request, format_html(success, run_link(run), *details(run)))
    return redirect("campaigns:status")


@trigger_view
def account_sync_now(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(AdAccount, pk=account_id)
    return start_and_say(request, lambda: services.sync_run_start(
        account=account, trigger=Trigger.STATUS_PAGE, triggered_by=request.user.get_username(), enqueue=True,
    ), "{} started for {}.", lambda run: (account.name,))


@trigger_view
def account_retry_failed(request: HttpRequest, account_id: int) -> HttpResponse:
    """Re-drive the account's dead-letter list: every campaign whose last sync failed."""
    account = get_object_or_404(AdAccount, pk=account_id)
    return start_and_say(request, lambda: services.account_retry_dead_letter(
        account=account, trigger=Trigger.STATUS_PAGE, triggered_by=request.user.get_username(), enqueue=True,
    ), "{} started to retry the {} failed campaigns of {}.",
        lambda run: (len(run.campaign_filter or []), account.name))


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and a cluster heartbeat was seen; 503 otherwise. No details leak."""
    database = "ok" if _database_answers() else "error"
    seen = selectors.cluster_seen()
    cluster = {True: "ok", False: "down", None: "error"}[seen]
    healthy = database == "ok" and cluster == "ok"
    return JsonResponse({"database": database, "cluster": cluster}, status=200 if healthy else 503)


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        log.warning("health check: the database did not answer", exc_info=True)
        return False


# --- JSON -------------------------------------------------------------------------
# Raw values for monitors; "display" holds the same strings the page shows,
# so the page's script copies text and never formats anything itself.

def overview_json(overview: selectors.StatusOverview) -> dict:
    return {
        "generated_at": overview.generated_at.isoformat(),
        "accounts": [account_json(status) for status in overview.accounts],
        "runs": [run_json(run) for run in overview.runs],
        "dead_letter": {"count": overview.dead_letter_count,
                        "campaigns": [dead_letter_json(campaign) for campaign in overview.dead_letter]},
        "cluster": {"state": overview.cluster.state, "clusters": overview.cluster.clusters,
                    "workers": overview.cluster.workers, "queued": overview.cluster.queued},
        "alerts": {"open": overview.alerts_open_count, "newest": [alert_json(alert) for alert in overview.alerts]},
    }


def alert_json(alert) -> dict:
    return {"id": alert.pk, "account": alert.account.slug, "condition": alert.condition,
            "message": alert.message, "opened_at": _iso(alert.opened_at), "run_id": alert.run_id}


def account_json(status: selectors.AccountStatus) -> dict:
    run = status.run
    return {
        "id": status.account.pk, "slug": status.account.slug, "name": status.account.name,
        "last_success_at": _iso(status.last_success_at), "freshness_seconds": status.freshness_seconds,
        "campaigns": status.campaigns, "failed_campaigns": status.failed_campaigns,
        "platform": status.account.platform, "budget": status.account.rate_limit, "budget_note": status.budget_note,
        "run": current_run_json(status) if run else None,
        "freshness": freshness_json(status),
        "display": account_display(status),
    }


def freshness_json(status: selectors.AccountStatus) -> dict | None:
    """Each class against its target, the age histogram and what the targets ask of the budget."""
    freshness = status.freshness
    if freshness is None:
        return None
    plan = freshness.plan
    return {
        "keep_fresh": status.account.keep_fresh,
        "classes": {klass: {"target_seconds": one.target_seconds, "campaigns": one.campaigns,
                            "within_target": one.within_target, "share_within_target": one.share,
                            "oldest_seconds": one.oldest_seconds(status.now)}
                    for klass, one in freshness.classes.items()},
        "histogram": [{"label": age_bin["label"], "campaigns": age_bin["count"], "percent": age_bin["percent"]}
                      for age_bin in age_bins(freshness)],
        "budget": {"needed_per_minute": plan.needed_per_minute, "budget_per_minute": plan.budget_per_minute,
                   "load": plan.load, "coverage": plan.coverage, "shortfall": plan.shortfall_text(),
                   "planned_interval_seconds": dict(plan.intervals), "listing_every_seconds": plan.listing_every},
    }


def current_run_json(status: selectors.AccountStatus) -> dict:
    run, health = status.run, status.health
    return {
        **run_json(run), "percent": status.progress_percent, "eta_seconds": status.eta_seconds,
        "platform_unavailable_since": _iso(run.platform_unavailable_since) if run.is_active else None,
        "health": {"p50_ms": health.p50_ms, "p95_ms": health.p95_ms, "samples": health.samples,
                   "requests": run.requests, "rate_limited": run.rate_limited, "server_errors": run.server_errors,
                   "timeouts": run.timeouts, "retries": run.retries},
    }


def account_display(status: selectors.AccountStatus) -> dict:
    run, health = status.run, status.health
    display = {"freshness": ago(status.last_success_at, status.now), "campaigns": str(status.campaigns),
               "failed_campaigns": str(status.failed_campaigns), "budget_note": status.budget_note or "",
               **freshness_display(status.freshness, status.now)}
    if run is None:
        return display
    return {
        **display,
        "run_id": f"#{run.pk}", "run_status": status_label(run.status), "run_colour": status_colour(run.status),
        "progress": run_progress(run), "percent": percent_text(status.progress_percent),
        "platform_unavailable": platform_unavailable(run),
        "eta": eta_text(status), "duration": duration(run.duration),
        "p50": milliseconds(health.p50_ms), "p95": milliseconds(health.p95_ms),
        "rate_limited": str(run.rate_limited), "server_errors": str(run.server_errors),
        "timeouts": str(run.timeouts), "retries": str(run.retries), "requests": str(run.requests),
        "warnings": "\n".join(run.warnings),
    }


def run_json(run: SyncRun) -> dict:
    seconds = run.duration.total_seconds() if run.duration else None
    return {
        "id": run.pk, "account": run.account.slug, "status": run.status, "active": run.is_active,
        "holds_account": run.holds_account,
        "trigger": run.trigger, "triggered_by": run.triggered_by,
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at),
        "duration_seconds": seconds, "listed": run.campaigns_listed, "synced": run.campaigns_synced,
        "failed": run.campaigns_failed, "done": run.campaigns_done, "success_rate": run.success_rate,
        "unlisted": run.campaigns_unlisted, "warnings": run.warnings, "url": run_admin_url(run),
    }


def dead_letter_json(campaign) -> dict:
    return {"account": campaign.account.slug, "platform_id": campaign.platform_id, "name": short_name(campaign.name),
            "category": campaign.failure_category or "", "message": campaign.failure_message or "",
            "run_id": campaign.failure_run_id}


def _iso(value) -> str | None:
    return value.isoformat() if value else None
