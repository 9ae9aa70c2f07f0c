"""`manage.py prune_history`: delete old attempts, runs and failed-task records now (a daily schedule does too)."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncer.retention import history_prune
from syncer.validation import parse_duration

EXIT_BAD_INPUT = 2


def _limit(option: str, value: str | None, default):
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as error:
        raise CommandError(f"{option}: {error}", returncode=EXIT_BAD_INPUT) from error


class Command(BaseCommand):
    help = (
        "Delete history older than the limits, in short chunks while syncs go on: attempts (never a campaign's "
        "latest, never one of an active run), runs none of whose attempts must stay, and django-q2's records of "
        "failed tasks. Prints one line saying how many of each went. Exit status: 0 done, 2 bad input."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", metavar="DURATION",
                            help="attempts and failed-task records older than this go, e.g. 90d, 12h or 3600s "
                                 "(default SYNC_PRUNE_ATTEMPTS_AFTER)")
        parser.add_argument("--runs-older-than", metavar="DURATION",
                            help="runs older than this go, when none of their attempts must stay "
                                 "(default SYNC_PRUNE_RUNS_AFTER; at least --older-than)")
        parser.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")

    def handle(self, *args, **options) -> None:
        attempts_older_than = _limit("--older-than", options["older_than"], settings.SYNC["PRUNE_ATTEMPTS_AFTER"])
        runs_older_than = _limit("--runs-older-than", options["runs_older_than"], settings.SYNC["PRUNE_RUNS_AFTER"])
        try:
            result = history_prune(attempts_older_than=attempts_older_than, runs_older_than=runs_older_than,
                                   dry_run=options["dry_run"])
        except ValueError as error:
            raise CommandError(f"--runs-older-than: {error}", returncode=EXIT_BAD_INPUT) from error
        self.stdout.write(result.summary())
