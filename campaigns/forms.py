"""The admin's forms: an ad account with its write-only password, its periodic sync, its alert settings and its
freshness targets."""
from __future__ import annotations

from django import forms

from campaigns.models import AdAccount
from syncer.freshness import parse_target, target_text
from syncer.schedules import cron_checked, schedule_cron

# Left empty, a limit keeps its default (a form posted before these fields existed still saves).
ALERT_LIMIT_DEFAULTS = {name: AdAccount._meta.get_field(name).default
                        for name in ("stale_after_minutes", "outage_alert_after_minutes")}


TARGET_FIELDS = ("fresh_active_seconds", "fresh_paused_seconds", "fresh_other_seconds")


class TargetField(forms.Field):
    """A freshness target typed as "1h", "24h", "7d", "90s" or seconds, kept as seconds, shown in its largest unit."""

    def __init__(self, *, label: str, help_text: str) -> None:
        super().__init__(label=label, help_text=help_text, required=False, widget=forms.TextInput(attrs={"size": 8}))

    def prepare_value(self, value):
        return target_text(value) if isinstance(value, int) else value

    def to_python(self, value) -> int | None:
        if value in (None, ""):
            return None  # left empty: the account keeps its target (AdAccountForm.clean)
        try:
            return parse_target(value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None


class AdAccountForm(forms.ModelForm):
    base_url = forms.URLField(max_length=500, assume_scheme="https")
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False), required=False, strip=False,
        help_text="Write-only: never shown back. Leave blank to keep the current password; changing the base URL, "
                  "email or client id clears it unless you enter it here again.",
    )
    sync_schedule = forms.CharField(
        label="Sync schedule (cron)", required=False, max_length=100,
        help_text="A periodic sync on the task cluster, e.g. */30 * * * * (every 30 minutes); empty for none. "
                  "Changing it needs the trigger_sync permission.",
    )

    fresh_active_seconds = TargetField(
        label="Target age: active", help_text="How long an active (or pinned) campaign may go unsynced, e.g. 1h.")
    fresh_paused_seconds = TargetField(
        label="Target age: paused", help_text="How long a paused campaign may go unsynced, e.g. 24h.")
    fresh_other_seconds = TargetField(
        label="Target age: other", help_text="How long an archived, completed or deleted campaign may go unsynced, "
                                             "e.g. 7d. The status page shows each class against its target.")

    schedule_editable = False  # the admin sets it per request (trigger_sync); a disabled field ignores any POST

    class Meta:
        model = AdAccount
        fields = ["name", "slug", "platform", "base_url", "email", "password", "client_id", "rate_limit",
                  "sync_schedule", "stale_after_minutes", "outage_alert_after_minutes", "alert_emails",
                  *TARGET_FIELDS, "keep_fresh"]
        widgets = {"alert_emails": forms.TextInput(attrs={"size": 80})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A new account cannot sync without its password; an existing one keeps it when left blank.
        self.fields["password"].required = self.instance.pk is None
        self.fields["sync_schedule"].disabled = not self.schedule_editable
        if "keep_fresh" in self.fields:  # it starts syncs too
            self.fields["keep_fresh"].disabled = not self.schedule_editable
        for name in ALERT_LIMIT_DEFAULTS:
            if name in self.fields:  # a view-only page has none of the model's fields
                self.fields[name].required = False
        if self.instance.pk:
            self.fields["sync_schedule"].initial = schedule_cron(account=self.instance)

    def clean(self) -> dict:
        cleaned = super().clean()
        for name, default in ALERT_LIMIT_DEFAULTS.items():
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = default
        for name in TARGET_FIELDS:
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = getattr(self.instance, name)  # its current target, or the default for a new one
        return cleaned

    def clean_sync_schedule(self) -> str:
        cron = self.cleaned_data["sync_schedule"]
        if "sync_schedule" not in self.changed_data or not cron.strip():
            return cron.strip()
        try:
            return cron_checked(cron)  # the service's own rule and words
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None
