"""An account's alert settings: when it counts as stale or down, and who hears about it."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from syncer.validation import email_list, email_list_problem

MINUTES_IN_A_YEAR = 525_600


def validate_email_list(text: str) -> None:
    problem = email_list_problem(text)
    if problem:
        raise ValidationError(problem)


class AlertSettings(models.Model):
    """Mixed into AdAccount: its own limits for the stale and platform-unavailable alerts, and its addressees."""

    stale_after_minutes = models.PositiveIntegerField(
        default=24 * 60, validators=[MinValueValidator(1), MaxValueValidator(MINUTES_IN_A_YEAR)],
        help_text="Alert when no sync succeeded for this long (minutes; a never-synced account counts "
                  "from its creation).")
    outage_alert_after_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(MINUTES_IN_A_YEAR)],
        help_text="Alert when a running sync has found the platform unavailable for this long (minutes).")
    alert_emails = models.TextField(
        blank=True, validators=[validate_email_list],
        help_text="Who hears about this account's alerts, comma-separated (besides ALERT_EMAILS).")

    class Meta:
        abstract = True

    @property
    def alert_email_list(self) -> list[str]:
        return email_list(self.alert_emails)
