"""The data: ad accounts, their campaigns, and the record of every sync."""
from __future__ import annotations

import operator
from datetime import timedelta
from functools import reduce

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.views.decorators.debug import sensitive_variables

from campaigns.alert_models import Alert, AlertCondition, AlertDelivery  # noqa: F401 (models of this app)
from campaigns.alert_settings import AlertSettings
from campaigns.budget_models import ApiClient, RateSlot  # noqa: F401 (models of this app)
from campaigns.crypto import decrypt, encrypt, is_under_current_key, reencrypt
from campaigns.freshness_settings import FreshnessSettings
from syncer.budget import RateBudget, parse_budget
from syncer.validation import CLIENT_ID_EXPECTS, CLIENT_ID_MAX_LENGTH, is_valid_client_id


def validate_budget(value: str) -> None:
    try:
        parse_budget(value)
    except ValueError as error:
        raise ValidationError(str(error)) from error


def validate_client_id(value: str) -> None:
    if not is_valid_client_id(value):
        raise ValidationError(f"the client id must be {CLIENT_ID_EXPECTS}")


# A password belongs to the login it was given for: kept for another server,
# email or client id, it would go to whoever runs that server at the next sync.
CREDENTIAL_FIELDS = {"base_url": "base URL", "email": "email", "client_id": "client id"}


class AdAccountQuerySet(models.QuerySet):
    def update(self, **fields):
        """Rows whose base URL, email or client id this changes lose their password, unless one is given."""
        changing = [name for name in CREDENTIAL_FIELDS if name in fields]
        if changing and "encrypted_password" not in fields:
            changed = reduce(operator.or_, (~Q(**{name: fields[name]}) for name in changing))
            fields["encrypted_password"] = Case(When(changed, then=Value("")), default=F("encrypted_password"),
                                                output_field=models.TextField())
        return super().update(**fields)


class PlatformKind(models.TextChoices):
    """The dialects the syncer speaks (syncer/platforms/: one adapter each, under the same names)."""

    REFERENCE = "reference", "Reference (offset pages, 429s)"
    METERED = "metered", "Metered (cursor pages, usage headers, throttles in the body)"


class AdAccount(AlertSettings, FreshnessSettings, models.Model):
    """One login on the ad platform, with its own client id and rate budget.

    The password is encrypted at rest with a key derived from SECRET_KEY and
    is never shown back; `set_password` and `get_password` are its only doors.
    Changing the base URL, email or client id clears it unless a new one is
    given in the same save (`password_cleared_by` then names what changed).
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    platform = models.CharField(max_length=20, choices=PlatformKind.choices, default=PlatformKind.REFERENCE,
                                help_text="The platform's dialect: how it lists, throttles and reports its budget.")
    base_url = models.URLField(max_length=500)
    email = models.CharField(max_length=254)
    encrypted_password = models.TextField(blank=True, editable=False)
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, validators=[validate_client_id],
                                 help_text="Sent as X-Client-ID; the rate budget belongs to it.")
    rate_limit = models.CharField(
        max_length=32, default="10/60s", validators=[validate_budget],
        help_text="N calls per W seconds, e.g. 10/60s (at most 10,000 calls; a window of 0.1 s to a day); "
                  "'none' for no limit. Accounts with the same base URL and client id share one budget.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AdAccountQuerySet.as_manager()
    password_cleared_by: list[str] = []  # set by save(): the credential fields whose change cleared the password

    class Meta:
        ordering = ["name"]
        permissions = [("trigger_sync", "Can start, retry and cancel syncs")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        self.password_cleared_by = self._clear_password_if_login_changed(update_fields)
        if self.password_cleared_by and update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "encrypted_password"}
        super().save(*args, **kwargs)

    def _clear_password_if_login_changed(self, update_fields) -> list[str]:
        """Clear the stored password when this save changes the login it belongs to; say which fields did."""
        def saved(name: str) -> bool:
            return update_fields is None or name in update_fields

        stored = None if self.pk is None else AdAccount.objects.filter(pk=self.pk).values(
            *CREDENTIAL_FIELDS, "encrypted_password").first()
        if not stored or not stored["encrypted_password"]:
            return []  # a new row, or nothing to clear
        if saved("encrypted_password") and self.encrypted_password != stored["encrypted_password"]:
            return []  # a new password given in this save
        changed = [label for name, label in CREDENTIAL_FIELDS.items()
                   if saved(name) and getattr(self, name) != stored[name]]
        if changed:
            self.encrypted_password = ""
        return changed

    @sensitive_variables("raw_password")
    def set_password(self, raw_password: str) -> None:
        self.encrypted_password = encrypt(raw_password) if raw_password else ""

    def get_password(self) -> str:
        return decrypt(self.encrypted_password) if self.encrypted_password else ""

    def rotate_password(self) -> bool:
        """Re-encrypt the stored password under the current SECRET_KEY; False when it already was, or none is set.

        A password no key reads raises the one-line ImproperlyConfigured of `decrypt`.
        """
        old = self.encrypted_password
        if not old or is_under_current_key(old):
            return False
        self.encrypted_password = reencrypt(old)
        # Compare-and-set: a password entered meanwhile is newer, and under the current key already.
        return AdAccount.objects.filter(pk=self.pk, encrypted_password=old).update(
            encrypted_password=self.encrypted_password) == 1

    @property
    def budget(self) -> RateBudget | None:
        return parse_budget(self.rate_limit)


class SyncStatus(models.TextChoices):
    NEVER = "never", "Never synced"
    SUCCEEDED = "succeeded", "Synced"
    FAILED = "failed", "Failed"


class Campaign(models.Model):
    """A campaign as the platform last listed it; one row per account and platform id."""

    account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="campaigns")
    platform_id = models.CharField(max_length=255)
    name = models.TextField()
    status = models.CharField(max_length=50, blank=True)
    budget = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    impressions = models.BigIntegerField(null=True, blank=True)
    clicks = models.BigIntegerField(null=True, blank=True)
    conversions = models.BigIntegerField(null=True, blank=True)
    platform_created_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_sync_status = models.CharField(max_length=20, choices=SyncStatus.choices, default=SyncStatus.NEVER)
    pinned_active = models.BooleanField(default=False, db_default=False, verbose_name="pinned to active",
                                        help_text="Keep it as fresh as an active campaign, whatever its status.")

    class Meta:
        ordering = ["account", "platform_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "platform_id"], name="campaign_unique_per_account"),
        ]
        indexes = [models.Index(fields=["account", "last_sync_status"], name="campaign_sync_status_idx")]

    def __str__(self) -> str:
        return f"{self.name[:80]} ({self.platform_id})"


class Trigger(models.TextChoices):
    COMMAND = "command", "Command"
    ADMIN = "admin", "Admin"
    STATUS_PAGE = "status_page", "Status page"
    SCHEDULE = "schedule", "Schedule"
    KEEP_FRESH = "keep_fresh", "Keep fresh"


class ListingMode(models.TextChoices):
    """What a run's first step reads from the platform (keep-fresh runs list only when a listing is due)."""

    FULL = "full", "List, then sync every campaign or those asked for"
    SKIP = "skip", "No listing: sync the campaigns asked for, as stored"
    REFRESH = "refresh", "List and store every campaign; sync those asked for and the new ones"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class SyncRun(models.Model):
    """One sync of one account, whoever started it; its counters equal its attempts until they are pruned."""

    account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    triggered_by = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    campaign_filter = models.JSONField(null=True, blank=True, help_text="Platform ids to sync; empty means all.")
    listing = models.CharField(max_length=10, choices=ListingMode.choices, default=ListingMode.FULL)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retry_runs")
    concurrency = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    prepared_at = models.DateTimeField(null=True, blank=True, help_text="When the listing ended and work was queued.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from a worker.")
    queued_at = models.DateTimeField(null=True, blank=True,
                                     help_text="When its next step was last put on the task queue.")
    finished_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True,
                                help_text="Run-level warnings, one line each (e.g. an incomplete listing).")
    resumes = models.PositiveIntegerField(default=0, help_text="How often the watchdog resumed it after its "
                                                               "workers fell silent.")
    platform_unavailable_since = models.DateTimeField(
        null=True, blank=True, help_text="Set while the platform answers nothing but outages (5xx, timeouts).")
    queued_key = models.CharField(max_length=16, blank=True,
                                  help_text="Fingerprint of the SECRET_KEY that signed its last queued task.")
    attempts_pruned_at = models.DateTimeField(null=True, blank=True, help_text="When old attempts of it were pruned: "
                                              "its counters keep what they were, its attempts are fewer.")

    campaigns_listed = models.PositiveIntegerField(default=0)
    campaigns_synced = models.PositiveIntegerField(default=0)
    campaigns_failed = models.PositiveIntegerField(default=0)
    campaigns_unlisted = models.PositiveIntegerField(
        default=0, help_text="Campaigns the platform's total counts that no listing returned.")

    requests = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    rate_limited = models.PositiveIntegerField(default=0, verbose_name="429s")
    server_errors = models.PositiveIntegerField(default=0, verbose_name="5xx")
    timeouts = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One queued or running run per account, enforced by the database.
            models.UniqueConstraint(
                fields=["account"], condition=Q(status__in=["queued", "running"]), name="one_active_run_per_account",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="run_account_created_idx"),
            models.Index(fields=["status"], name="run_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} ({self.account}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def holds_account(self) -> bool:
        """Active, and not a keep-fresh cycle: a cycle gives way to any other run started (services._run_create)."""
        return self.is_active and self.trigger != Trigger.KEEP_FRESH

    @property
    def campaigns_done(self) -> int:
        return self.campaigns_synced + self.campaigns_failed

    @property
    def success_rate(self) -> float | None:
        """Share of finished campaigns that synced, or None before any finished."""
        done = self.campaigns_done
        return self.campaigns_synced / done if done else None

    @property
    def duration(self) -> timedelta | None:
        """How long it ran; never negative, even when the clock of a host that dated it stepped back."""
        if not self.started_at:
            return None
        from django.utils import timezone

        return max((self.finished_at or timezone.now()) - self.started_at, timedelta(0))


class AttemptStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_ATTEMPT_STATUSES = (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.CANCELLED)


class ErrorCategory(models.TextChoices):
    TIMEOUT = "timeout", "Timeout"
    RATE_LIMITED = "rate_limited", "Rate limited"
    SERVER_ERROR = "server_error", "Server error"
    AUTH = "auth", "Authentication"
    CLIENT_ERROR = "client_error", "Client error"
    NETWORK = "network", "Network"
    BAD_RESPONSE = "bad_response", "Bad response"
    INTERNAL = "internal", "Internal error"


class SyncAttempt(models.Model):
    """One campaign in one run: written before its call, completed after it.

    Pending attempts are the durable work queue: a worker claims one by
    setting `claimed_by` and a lease; another worker may take it over once
    the lease has run out.
    """

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="attempts")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="attempts")
    platform_id = models.CharField(max_length=255, help_text="The platform id, or where the bad row stood.")
    status = models.CharField(max_length=20, choices=AttemptStatus.choices, default=AttemptStatus.PENDING)
    tries = models.PositiveIntegerField(default=0)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_category = models.CharField(max_length=20, choices=ErrorCategory.choices, blank=True)
    message = models.CharField(max_length=500, blank=True)
    warnings = models.TextField(blank=True, help_text="Fields stored empty because the platform sent them bad.")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "platform_id"], name="attempt_unique_per_run"),
        ]
        indexes = [
            models.Index(fields=["run", "status"], name="attempt_run_status_idx"),
            models.Index(fields=["campaign", "-id"], name="attempt_campaign_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.platform_id} in run #{self.run_id}: {self.status}"
