"""The record of alerts: what condition an account is in, since when, and every message sent about it."""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class AlertCondition(models.TextChoices):
    RUN_FAILED = "run_failed", "Sync failed"
    STALE = "stale", "Not synced for too long"
    PLATFORM_UNAVAILABLE = "platform_unavailable", "Platform unavailable"
    CREDENTIALS_REFUSED = "credentials_refused", "Credentials refused"


class Alert(models.Model):
    """One stretch of one condition of one account: opened once, resolved once; at most one open at a time."""

    account = models.ForeignKey("campaigns.AdAccount", on_delete=models.CASCADE, related_name="alerts")
    condition = models.CharField(max_length=30, choices=AlertCondition.choices)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    message = models.CharField(max_length=500, help_text="One line of our own words (never a platform's answer).")
    run = models.ForeignKey("campaigns.SyncRun", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="alerts")

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "condition"], condition=Q(resolved_at__isnull=True),
                                    name="one_open_alert_per_account_and_condition"),
        ]
        indexes = [models.Index(fields=["resolved_at", "-opened_at"], name="alert_open_idx")]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else "open"
        return f"{self.get_condition_display()} on {self.account_id} ({state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class DeliveryKind(models.TextChoices):
    OPENED = "opened", "Opened"
    RESOLVED = "resolved", "Resolved"
    DIGEST = "digest", "Digest"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class AlertDelivery(models.Model):
    """One message on one channel about one alert (opened or resolved) or several (a digest); every try counted."""

    channel = models.CharField(max_length=10, choices=DeliveryChannel.choices)
    kind = models.CharField(max_length=10, choices=DeliveryKind.choices)
    alerts = models.ManyToManyField(Alert, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    tries = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, help_text="One line, never a secret.")
    created_at = models.DateTimeField(default=timezone.now)  # the evaluation's moment: the digest counts by it
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a sender took it.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "alert deliveries"
        indexes = [models.Index(fields=["status", "created_at"], name="delivery_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} by {self.channel} ({self.status})"
