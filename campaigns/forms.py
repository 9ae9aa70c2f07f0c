"""The admin's forms: an ad account with its write-only password and its periodic sync."""
from __future__ import annotations

from django import forms

from campaigns.models import AdAccount
from syncer.schedules import cron_checked, schedule_cron


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

    schedule_editable = False  # the admin sets it per request (trigger_sync); a disabled field ignores any POST

    class Meta:
        model = AdAccount
        fields = ["name", "slug", "platform", "base_url", "email", "password", "client_id", "rate_limit",
                  "sync_schedule"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A new account cannot sync without its password; an existing one keeps it when left blank.
        self.fields["password"].required = self.instance.pk is None
        self.fields["sync_schedule"].disabled = not self.schedule_editable
        if self.instance.pk:
            self.fields["sync_schedule"].initial = schedule_cron(account=self.instance)

    def clean_sync_schedule(self) -> str:
        cron = self.cleaned_data["sync_schedule"]
        if "sync_schedule" not in self.changed_data or not cron.strip():
            return cron.strip()
        try:
            return cron_checked(cron)  # the service's own rule and words
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None
