"""`manage.py rotate_passwords`: re-encrypt every stored account password under the current SECRET_KEY."""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from campaigns.models import AdAccount

EXIT_UNREADABLE = 2


class Command(BaseCommand):
    help = (
        "After a SECRET_KEY rotation (the new key in SECRET_KEY, the old one in SECRET_KEY_FALLBACKS), "
        "re-encrypt every account password under the new key, so the old key can leave SECRET_KEY_FALLBACKS. "
        "Running it again changes nothing. Exit status: 0 every password is under the current key, "
        "2 some password no key reads (each named on stderr: enter it again in the admin)."
    )

    def handle(self, *args, **options) -> None:
        accounts = list(AdAccount.objects.exclude(encrypted_password="").order_by("slug"))
        rotated = unreadable = 0
        for account in accounts:
            try:
                rotated += account.rotate_password()
            except ImproperlyConfigured as error:  # the one-line error of a password no key reads
                unreadable += 1
                self.stderr.write(f"account {account.slug!r}: {error}")
        self.stdout.write(f"{rotated} of {len(accounts)} account passwords re-encrypted under the current "
                          f"SECRET_KEY; {len(accounts) - rotated - unreadable} already were")
        if unreadable:
            raise CommandError(f"{unreadable} of {len(accounts)} account passwords could not be re-encrypted "
                               "(named above)", returncode=EXIT_UNREADABLE)
