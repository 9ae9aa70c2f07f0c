"""An account's freshness targets: how long a campaign of each class may go unsynced (syncer/freshness.py)."""
from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from syncer.freshness import (
    ACTIVE,
    DEFAULT_TARGETS_SECONDS,
    OTHER,
    PAUSED,
    TARGET_MAX_SECONDS,
    TARGET_MIN_SECONDS,
    Targets,
)


def _target_field(klass: str, campaign: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        default=DEFAULT_TARGETS_SECONDS[klass], verbose_name=f"target age: {klass}",
        validators=[MinValueValidator(TARGET_MIN_SECONDS), MaxValueValidator(TARGET_MAX_SECONDS)],
        help_text=f"How long {campaign} campaign may go unsynced (90s, 30m, 1h, 24h, 7d or seconds).")


class FreshnessSettings(models.Model):
    """Mixed into AdAccount: the target age of its active, paused and other campaigns, in seconds."""

    fresh_active_seconds = _target_field(ACTIVE, "an active (or pinned)")
    fresh_paused_seconds = _target_field(PAUSED, "a paused")
    fresh_other_seconds = _target_field(OTHER, "an archived, completed or deleted")
    keep_fresh = models.BooleanField(
        default=False, help_text="Keep every campaign within its target on the task cluster: runs of the most "
                                 "overdue campaigns, one after another, at the budget's pace.")
    listed_at = models.DateTimeField(null=True, blank=True, editable=False,
                                     help_text="When a listing of every campaign last ended.")

    class Meta:
        abstract = True

    @property
    def freshness_targets(self) -> Targets:
        return Targets(active=self.fresh_active_seconds, paused=self.fresh_paused_seconds,
                       other=self.fresh_other_seconds)
