"""The admin's rule for actions that start syncs: only holders of `campaigns.trigger_sync` see and run them."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied

from campaigns.views import TRIGGER_PERMISSION, refusal_message
from syncer import services


class TriggerSyncMixin:
    """Actions declared with `permissions=["trigger_sync"]` are shown to, and run for, holders of it only.

    Django hides such actions from other users but answers a forged POST
    with a mild "no action selected"; a plain 403 says what happened.
    """

    def has_trigger_sync_permission(self, request) -> bool:
        return request.user.has_perm(TRIGGER_PERMISSION)

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST" and self._posts_trigger_action(request) \
                and not self.has_trigger_sync_permission(request):
            raise PermissionDenied("starting, retrying or cancelling syncs needs the trigger_sync permission")
        return super().changelist_view(request, extra_context)

    def _posts_trigger_action(self, request) -> bool:
        names = request.POST.getlist("action")
        try:
            name = names[int(request.POST.get("index", 0))]
        except (ValueError, IndexError):
            return False
        action = getattr(self, name, None) if name in self.actions else None
        return "trigger_sync" in getattr(action, "allowed_permissions", ())

    def message_refused(self, request, refused: services.SyncRefused) -> None:
        level = messages.ERROR if refused.failed_run else messages.WARNING  # a run that failed at once
        self.message_user(request, refusal_message(refused), level)
