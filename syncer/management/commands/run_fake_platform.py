"""``manage.py run_fake_platform``: the bundled fake ad platform, in the foreground.

Every knob of ``FakePlatformConfig`` is a flag (``--list-fail-rate 0.2``,
``--has-more-lies`` / ``--no-has-more-lies``, ...). ``--preset demo`` starts
from a named preset; explicit flags win over it. ``--fail-rate X`` is a
shorthand for ``--list-fail-rate X --sync-fail-rate X``. ``--dialect metered``
serves the metered dialect (PLATFORM_API.md's last part) instead of the
reference one.
"""

import argparse
from dataclasses import fields

from django.core.management.base import BaseCommand, CommandError

from syncer.fake_platform import (
    DIALECTS,
    DOWN_MODES,
    KNOB_HELP,
    MALFORMED_LIST_MODES,
    PRESETS,
    RETRY_AFTER_MODES,
    FakePlatform,
    FakePlatformConfig,
)


def _optional_float(text):
    if text.strip().lower() in ("", "none"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def add_knob_arguments(parser):
    """One flag per ``FakePlatformConfig`` field; every default is None (= not given)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    parser.add_argument("--fail-rate", type=float, help="shorthand for --list-fail-rate X --sync-fail-rate X")
    for knob in fields(FakePlatformConfig):
        default = knob.default
        kwargs = {"dest": knob.name, "default": None,
                  "help": f"{KNOB_HELP[knob.name]} (default: {default})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif knob.name == "retry_after_mode":
            kwargs["choices"] = RETRY_AFTER_MODES
        elif knob.name == "malformed_list":
            kwargs["choices"] = ("none", *MALFORMED_LIST_MODES)
        elif knob.name == "down_mode":
            kwargs["choices"] = DOWN_MODES
        elif knob.name == "dialect":
            kwargs["choices"] = DIALECTS
        elif knob.name == "retry_after_override":
            kwargs["type"] = _optional_float
        elif isinstance(default, int) and knob.name != "token_lifetime":
            kwargs["type"] = int
        elif isinstance(default, (int, float)):
            kwargs["type"] = float
        parser.add_argument("--" + knob.name.replace("_", "-"), **kwargs)


def build_config(options):
    """The config from parsed options: preset, then --fail-rate, then explicit knob flags."""
    knobs = dict(PRESETS[options["preset"]]) if options.get("preset") else {}
    if options.get("fail_rate") is not None:
        knobs.update(list_fail_rate=options["fail_rate"], sync_fail_rate=options["fail_rate"])
    for knob in fields(FakePlatformConfig):
        value = options.get(knob.name)
        if value is not None:
            knobs[knob.name] = value
    if knobs.get("malformed_list") == "none":
        knobs["malformed_list"] = None
    return FakePlatformConfig(**knobs)


class Command(BaseCommand):
    help = "Run the bundled fake ad platform in the foreground until Ctrl-C or SIGTERM."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=3001, help="port to listen on (default 3001, 0 = any free)")
        add_knob_arguments(parser)

    def handle(self, *args, **options):
        try:
            config = build_config(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        platform = FakePlatform(config)

        def ready(url):
            self.stdout.write(f"Fake ad platform listening on {url} ({config.describe()})")
            self.stdout.flush()

        try:
            platform.serve_forever(options["host"], options["port"], on_ready=ready)
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc}") from None
        self.stdout.write("Fake ad platform stopped.")
