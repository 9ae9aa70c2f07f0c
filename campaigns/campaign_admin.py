"""The admin's campaign pages: campaigns as the platform listed them (read-only), synced or pinned from here."""
from __future__ import annotations

from collections import defaultdict

from django.contrib import admin, messages
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html

from campaigns.admin_actions import TriggerSyncMixin
from campaigns.models import AdAccount, Campaign, Trigger
from campaigns.templatetags.sync_display import ago, short_name, status_badge
from campaigns.views import run_link
from syncer import services


@admin.register(Campaign)
class CampaignAdmin(TriggerSyncMixin, admin.ModelAdmin):
    list_display = ["display_name", "platform_id", "account", "status", "pinned_active", "budget", "last_synced",
                    "last_sync_badge"]
    list_filter = ["account", "status", "last_sync_status", "pinned_active"]
    search_fields = ["name", "platform_id"]
    list_select_related = ["account"]
    show_full_result_count = False
    actions = ["sync_selected", "pin_active", "unpin"]
    readonly_fields = ["account", "platform_id", "name", "status", "pinned_active", "budget", "impressions", "clicks",
                       "conversions", "platform_created_at", "first_seen_at", "updated_at", "last_synced_at",
                       "last_sync_status", "attempts_link"]

    # Campaigns come from the platform and the next sync would overwrite any edit: view them, never write.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="name", ordering="name")
    def display_name(self, obj: Campaign) -> str:
        return short_name(obj.name)

    @admin.display(description="last synced", ordering="last_synced_at")
    def last_synced(self, obj: Campaign) -> str:
        return ago(obj.last_synced_at)

    @admin.display(description="last sync", ordering="last_sync_status")
    def last_sync_badge(self, obj: Campaign) -> str:
        return status_badge(obj.last_sync_status)

    @admin.display(description="attempts")
    def attempts_link(self, obj: Campaign) -> str:
        url = reverse("admin:campaigns_syncattempt_changelist") + f"?campaign__exact={obj.pk}"
        return format_html('<a href="{}">Every sync attempt of this campaign</a>', url)

    @admin.action(permissions=["trigger_sync"], description="Pin to active: keep as fresh as an active campaign")
    def pin_active(self, request, queryset) -> None:
        self._pin(request, queryset, pinned=True)

    @admin.action(permissions=["trigger_sync"], description="Unpin: freshness by status again")
    def unpin(self, request, queryset) -> None:
        self._pin(request, queryset, pinned=False)

    def _pin(self, request, queryset, *, pinned: bool) -> None:
        # A column of ours the listing never writes, so the next sync keeps it.
        count = queryset.update(pinned_active=pinned)
        verb = "pinned to active" if pinned else "unpinned"
        self.message_user(request, f"{count} campaign{pluralize(count)} {verb}.", messages.SUCCESS)

    @admin.action(permissions=["trigger_sync"], description="Sync selected campaigns")
    def sync_selected(self, request, queryset) -> None:
        """One run per account, limited to the selected campaigns."""
        by_account: dict[int, list[str]] = defaultdict(list)
        for account_id, platform_id in queryset.order_by().values_list("account_id", "platform_id"):
            by_account[account_id].append(platform_id)
        for account in AdAccount.objects.filter(pk__in=by_account):
            try:
                run = services.sync_run_start(account=account, trigger=Trigger.ADMIN,
                                              triggered_by=request.user.get_username(),
                                              campaign_ids=by_account[account.pk], enqueue=True)
            except services.SyncRefused as refused:
                self.message_refused(request, refused)
            else:
                count = len(by_account[account.pk])
                self.message_user(request, format_html("{} started for {} campaign{} of {}.", run_link(run), count,
                                                       pluralize(count), account.name), messages.SUCCESS)
