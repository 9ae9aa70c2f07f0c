"""The admin's rule for records of what happened (runs, attempts, alerts, deliveries): read-only for everyone."""
from __future__ import annotations


class ReadOnlyRecordMixin:
    """Records of what happened: nobody adds, edits or deletes them by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
