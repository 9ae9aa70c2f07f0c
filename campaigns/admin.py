"""The admin, the main UI: accounts (write-only secret), and runs and attempts as read-only records; campaigns
are in campaign_admin.py, alerts in alert_admin.py.

Every action goes through `syncer.services`, enqueues on the task cluster and
answers with a message linking to the run. Starting, retrying and cancelling
need the `campaigns.trigger_sync` permission.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.debug import sensitive_post_parameters
from django_q.admin import ScheduleAdmin
from django_q.models import Schedule

from campaigns import alert_admin, campaign_admin, selectors  # noqa: F401 (they register the alert and campaign pages)
from campaigns.admin_actions import TriggerSyncMixin
from campaigns.admin_records import ReadOnlyRecordMixin
from campaigns.forms import AdAccountForm
from campaigns.models import AdAccount, SyncAttempt, SyncRun, Trigger
from campaigns.templatetags.sync_display import duration, percentage, short_name, status_badge
from campaigns.views import run_link
from syncer import services
from syncer.keep_fresh import keep_fresh_cycle_start
from syncer.schedules import schedule_clear, schedule_set

# --- ad accounts --------------------------------------------------------------------

# The password travels in these POSTs: an error report shows it as stars.
@method_decorator(sensitive_post_parameters("password"), name="changeform_view")
@admin.register(AdAccount)
class AdAccountAdmin(TriggerSyncMixin, admin.ModelAdmin):
    form = AdAccountForm
    list_display = ["name", "slug", "platform", "base_url", "client_id", "rate_limit", "has_password"]
    search_fields = ["name", "slug", "client_id"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["has_password", "created_at", "updated_at"]
    actions = ["sync_now", "test_connection"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        # A periodic sync starts syncs, so changing it needs trigger_sync. Decided per request on a
        # subclass: the form class and its fields are shared by every request of the process.
        return type(form.__name__, (form,), {"schedule_editable": self.has_trigger_sync_permission(request)})

    def save_model(self, request, obj: AdAccount, form, change: bool) -> None:
        if form.cleaned_data.get("password"):
            obj.set_password(form.cleaned_data["password"])
        super().save_model(request, obj, form, change)
        if obj.password_cleared_by:
            self.message_user(request, f"The password of {obj.name} was cleared because its "
                                       f"{' and '.join(obj.password_cleared_by)} changed: enter it again before "
                                       f"the next sync.", messages.WARNING)
        if "sync_schedule" in form.changed_data:  # never for a disabled field (see get_form)
            self._save_schedule(obj, form.cleaned_data["sync_schedule"])
        if "keep_fresh" in form.changed_data and obj.keep_fresh:
            self._start_keeping_fresh(request, obj)

    def _start_keeping_fresh(self, request, account: AdAccount) -> None:
        try:
            cycle = keep_fresh_cycle_start(account=account, enqueue=True)
        except services.SyncRefused as refused:
            self.message_user(request, f"Keep fresh is on for {account.name}; its first run starts when the "
                                       f"current one ends ({refused}).", messages.INFO)
            return
        started = format_html(" {} started.", run_link(cycle.run)) if cycle.run else ""
        self.message_user(request, format_html("Keep fresh is on for {}: {}.{}", account.name,
                                               cycle.plan.shortfall_text() or cycle.plan.load_text(), started),
                          messages.SUCCESS)

    @staticmethod
    def _save_schedule(account: AdAccount, cron: str) -> None:
        if cron:
            schedule_set(account=account, cron=cron)
        else:
            schedule_clear(account=account)

    @admin.display(boolean=True, description="password set")
    def has_password(self, obj: AdAccount) -> bool:
        return bool(obj.encrypted_password)

    @admin.action(permissions=["trigger_sync"], description="Sync now")
    def sync_now(self, request, queryset) -> None:
        """Start a full sync of each selected account on the task cluster."""
        accounts = list(queryset)
        started = services.sync_runs_start(accounts=accounts, trigger=Trigger.ADMIN,
                                           triggered_by=request.user.get_username(), enqueue=True)
        for account, run in zip(accounts, started, strict=True):
            if isinstance(run, services.SyncRefused):
                self.message_refused(request, run)
            else:
                self.message_user(request, format_html("{} started for {}.", run_link(run), account.name),
                                  messages.SUCCESS)

    @admin.action(permissions=["trigger_sync"], description="Test connection")
    def test_connection(self, request, queryset) -> None:
        """Get a token and the first page; report success or the reason, never the secret."""
        for account in queryset:
            ok, message = services.account_test_connection(account=account)
            self.message_user(request, message, messages.SUCCESS if ok else messages.ERROR)


# --- django-q2's schedules ------------------------------------------------------------

admin.site.unregister(Schedule)


@admin.register(Schedule)
class SuperuserScheduleAdmin(ScheduleAdmin):
    """django-q2's schedule admin, writable by superusers only: its `func` may name any function the workers import.

    Staff with the view permission still see the schedules; an account's periodic
    sync is set on the account's own form.
    """

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


# --- campaigns ----------------------------------------------------------------------

# --- runs -----------------------------------------------------------------------------

@admin.register(SyncRun)
class SyncRunAdmin(TriggerSyncMixin, ReadOnlyRecordMixin, admin.ModelAdmin):
    list_display = ["run_id", "account", "status_badge", "trigger_and_who", "started_at", "run_duration",
                    "synced_failed", "success", "rate_limited"]
    list_display_links = ["run_id"]
    list_filter = ["status", "trigger", "account"]
    list_select_related = ["account"]
    show_full_result_count = False
    actions = ["retry_failed", "cancel_run"]
    fieldsets = [
        (None, {"fields": ["account", "status_badge", "trigger_and_who", "retry_of", "campaign_filter_summary",
                           "error_message", "warning_lines"]}),
        ("Timing", {"fields": ["created_at", "started_at", "prepared_at", "finished_at", "run_duration"]}),
        ("Campaigns", {"fields": ["campaigns_listed", "campaigns_synced", "campaigns_failed", "campaigns_unlisted",
                                  "success", "attempts_breakdown"]}),
        ("Calls", {"fields": ["requests", "pages", "retries", "rate_limited", "server_errors", "timeouts",
                              "concurrency"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [name for _, options in self.fieldsets for name in options["fields"]]

    @admin.display(description="run", ordering="id")
    def run_id(self, obj: SyncRun) -> str:
        return f"#{obj.pk}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: SyncRun) -> str:
        return status_badge(obj.status)

    @admin.display(description="trigger", ordering="trigger")
    def trigger_and_who(self, obj: SyncRun) -> str:
        who = f" · {obj.triggered_by}" if obj.triggered_by else ""
        return f"{obj.get_trigger_display()}{who}"

    @admin.display(description="duration")
    def run_duration(self, obj: SyncRun) -> str:
        return duration(obj.duration)

    @admin.display(description="synced / failed")
    def synced_failed(self, obj: SyncRun) -> str:
        return f"{obj.campaigns_synced} / {obj.campaigns_failed}"

    @admin.display(description="success rate")
    def success(self, obj: SyncRun) -> str:
        return percentage(obj.success_rate)

    @admin.display(description="warnings")
    def warning_lines(self, obj: SyncRun) -> str:
        """One line each (an incomplete listing, campaigns with bad fields), escaped."""
        if not obj.warnings:
            return "none"
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in obj.warnings))

    @admin.display(description="campaigns asked for")
    def campaign_filter_summary(self, obj: SyncRun) -> str:
        ids = obj.campaign_filter or []
        if not ids:
            return "all"
        shown = ", ".join(short_name(str(platform_id), 40) for platform_id in ids[:20])
        return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")

    @admin.display(description="attempts")
    def attempts_breakdown(self, obj: SyncRun) -> str:
        """Counts by status and error category, each a link to those attempts (the run page stays light)."""
        base = reverse("admin:campaigns_syncattempt_changelist") + f"?run__exact={obj.pk}"
        rows = selectors.run_attempt_breakdown(run=obj)
        if not rows:
            return "none yet"
        links = format_html_join(
            ", ", '<a href="{}&amp;status__exact={}{}">{} {}{}</a>',
            ((base, row["status"], f"&error_category__exact={row['error_category']}" if row["error_category"] else "",
              row["count"], row["status"], f" ({row['error_category']})" if row["error_category"] else "")
             for row in rows),
        )
        return format_html('<a href="{}">all</a>: {}', base, links)

    @admin.action(permissions=["trigger_sync"], description="Retry failed campaigns")
    def retry_failed(self, request, queryset) -> None:
        """A new run for exactly the campaigns that failed in each selected run."""
        for run in queryset.select_related("account"):
            try:
                retry = services.run_retry_failed(run=run, trigger=Trigger.ADMIN,
                                                  triggered_by=request.user.get_username(), enqueue=True)
            except services.SyncRefused as refused:
                self.message_refused(request, refused)
            else:
                self.message_user(request, format_html("{} started to retry the failures of {}.", run_link(retry),
                                                       run_link(run)), messages.SUCCESS)

    @admin.action(permissions=["trigger_sync"], description="Cancel run")
    def cancel_run(self, request, queryset) -> None:
        """Stop queued or running runs: no new work starts, finished attempts are kept."""
        for run in queryset.select_related("account"):
            if services.run_cancel(run_id=run.pk, who=request.user.get_username()):
                self.message_user(request, format_html("{} cancelled.", run_link(run)), messages.SUCCESS)
            else:
                self.message_user(request, format_html("{} had already ended ({}).", run_link(run), run.status),
                                  messages.WARNING)


# --- attempts ---------------------------------------------------------------------------

class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: an exact COUNT(*) over a million attempts costs more than the page itself."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.CAP


class HasWarningsFilter(admin.SimpleListFilter):
    """Attempts whose campaign came with bad fields (stored empty), or not."""

    title, parameter_name = "warnings", "has_warnings"

    def lookups(self, request, model_admin):
        return [("yes", "with warnings"), ("no", "without")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(warnings="")
        if self.value() == "no":
            return queryset.filter(warnings="")
        return queryset


@admin.register(SyncAttempt)
class SyncAttemptAdmin(ReadOnlyRecordMixin, admin.ModelAdmin):
    list_display = ["id", "run_link", "platform_id_short", "status_badge", "error_category", "http_status", "tries",
                    "latency_ms", "finished_at", "message_short", "warnings_short"]
    list_filter = ["status", "error_category", HasWarningsFilter]
    # Only columns of the attempt row itself: no join, whatever the filter.
    list_select_related = False
    ordering = ["-id"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    fields = ["run_link", "campaign_link", "platform_id", "status_badge", "error_category", "http_status", "message",
              "warnings", "tries", "latency_ms", "created_at", "started_at", "finished_at", "claimed_by",
              "lease_expires_at"]
    readonly_fields = fields

    @admin.display(description="run", ordering="run_id")
    def run_link(self, obj: SyncAttempt) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("admin:campaigns_syncrun_change", args=[obj.run_id]),
                           obj.run_id)

    @admin.display(description="campaign")
    def campaign_link(self, obj: SyncAttempt) -> str:
        if not obj.campaign_id:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:campaigns_campaign_change", args=[obj.campaign_id]),
                           short_name(obj.campaign.name))

    @admin.display(description="platform id", ordering="platform_id")
    def platform_id_short(self, obj: SyncAttempt) -> str:
        return short_name(obj.platform_id, 40)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: SyncAttempt) -> str:
        return status_badge(obj.status)

    @admin.display(description="message")
    def message_short(self, obj: SyncAttempt) -> str:
        return short_name(obj.message, 80)

    @admin.display(description="warnings")
    def warnings_short(self, obj: SyncAttempt) -> str:
        return short_name(obj.warnings, 80)
