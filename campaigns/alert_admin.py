"""The admin's alert pages: alerts and their deliveries are records, read-only, filterable."""
from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html_join

from campaigns.admin_records import ReadOnlyRecordMixin
from campaigns.alert_models import Alert, AlertDelivery
from campaigns.templatetags.sync_display import short_name
from campaigns.views import run_link


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() in ("open", "resolved"):
            return queryset.filter(resolved_at__isnull=self.value() == "open")
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyRecordMixin, admin.ModelAdmin):
    list_display = ["condition", "account", "opened_at", "resolved_at", "message_short", "run_admin_link"]
    list_filter = [OpenFilter, "condition", "account"]
    list_select_related = ["account", "run"]
    search_fields = ["message", "account__name", "account__slug"]
    date_hierarchy = "opened_at"
    fields = ["account", "condition", "opened_at", "resolved_at", "message", "run_admin_link", "sent"]
    readonly_fields = fields

    @admin.display(description="message")
    def message_short(self, obj: Alert) -> str:
        return short_name(obj.message, 100)

    @admin.display(description="run")
    def run_admin_link(self, obj: Alert) -> str:
        return run_link(obj.run) if obj.run else "-"

    @admin.display(description="messages sent about it")
    def sent(self, obj: Alert) -> str:
        deliveries = obj.deliveries.order_by("id")
        return format_html_join(", ", "{} {} ({}, {} tries)", ((d.kind, d.channel, d.status, d.tries)
                                                              for d in deliveries)) or "-"


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyRecordMixin, admin.ModelAdmin):
    list_display = ["created_at", "channel", "kind", "status", "tries", "last_error", "finished_at"]
    list_filter = ["status", "channel", "kind"]
    fields = ["channel", "kind", "status", "tries", "last_error", "created_at", "claimed_at", "finished_at",
              "alert_list"]
    readonly_fields = fields

    @admin.display(description="alerts")
    def alert_list(self, obj: AlertDelivery) -> str:
        return format_html_join("", "<div>{}</div>", ((alert.message,) for alert in
                                                       obj.alerts.select_related("account").order_by("id")))
