"""The admin's forms: an ad account with its write-only password."""
from __future__ import annotations

from django import forms

from campaigns.models import AdAccount


class AdAccountForm(forms.ModelForm):
    base_url = forms.URLField(max_length=500, assume_scheme="https")
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False), required=False, strip=False,
        help_text="Write-only: never shown back. Leave blank to keep the current password; changing the base URL, "
                  "email or client id clears it unless you enter it here again.",
    )

    class Meta:
        model = AdAccount
        fields = ["name", "slug", "base_url", "email", "password", "client_id", "rate_limit"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A new account cannot sync without its password; an existing one keeps it when left blank.
        self.fields["password"].required = self.instance.pk is None
