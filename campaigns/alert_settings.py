"""An account's alert settings: when it counts as stale or down, and who hears about it."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models

MINUTES_IN_A_YEAR = 525_600


def email_list(text: str) -> list[str]:
    """The addresses of a comma-, space- or line-separated list, in order, each once."""
    return list(dict.fromkeys(part for part in text.replace(",", " ").split() if part))


def validate_email_list(text: str) -> None:
    for address in email_list(text):
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address!r} is not an email address; separate addresses with commas") from None


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
