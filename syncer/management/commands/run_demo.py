"""`manage.py run_demo` (what `make run` starts): the whole product on one machine.

Starts the bundled fake platform with its failure modes on, the task
cluster and the web server; creates a demo login; queues a first sync on
the cluster and shows its progress; then keeps serving until Ctrl-C, which
stops all three cleanly.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from campaigns.models import Trigger
from syncer.accounts import account_default_get
from syncer.logs import console_for_command
from syncer.progress import follow, summary_lines
from syncer.services import SyncRefused, sync_run_start

ROOT = Path(settings.BASE_DIR)
LOGS = ROOT / ".run"
DEMO_USER = "admin"


class Child:
    """A child process in its own session, so Ctrl-C reaches only us and we stop it in order."""

    def __init__(self, name: str, args: list[str]) -> None:
        LOGS.mkdir(exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self.process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, start_new_session=True,
                                        stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)  # the main process stops its own workers
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Command(BaseCommand):
    help = "Run the demo: fake platform, task cluster and web server, with a first sync. Ctrl-C stops it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--web-port", type=int, default=8000)
        parser.add_argument("--platform-port", type=int, default=3001)
        parser.add_argument("--exit-after-sync", action="store_true",
                            help="stop everything once the first sync ends (exit 0 only if it synced all)")

    def handle(self, *args, **options) -> None:
        console_for_command(options["verbosity"])
        children: list[Child] = []
        try:
            children += self._start_children(options)
            password = self._demo_login()
            run = self._first_sync()
            web = f"http://127.0.0.1:{options['web_port']}"
            self.stdout.write(self.style.SUCCESS(
                f"\nRunning. Admin: {web}/admin/  Status page: {web}/status/\n"
                f"Login: {DEMO_USER} / {password}   (generated now, shown once)\n"
                f"Logs: {LOGS}/   Ctrl-C stops everything.\n"))
            run = follow(run.pk, self.stdout, is_tty=self.stdout.isatty(), keep_going=lambda: True)
            for line in summary_lines(run):
                self.stdout.write(line)
            if options["exit_after_sync"]:
                if run.campaigns_failed or run.status != "succeeded":
                    raise CommandError(f"the first sync ended {run.status}", returncode=1)
                return
            self._serve_until_interrupted(children)
        except KeyboardInterrupt:
            pass
        finally:
            self.stdout.write("Stopping the web server, the cluster and the fake platform...")
            for child in reversed(children):
                child.stop()

    def _start_children(self, options) -> list[Child]:
        platform_url = settings.AD_PLATFORM["URL"]
        children = []
        if platform_url.startswith(("http://localhost", "http://127.0.0.1")):
            children.append(Child("fake-platform", ["run_fake_platform", "--port", str(options["platform_port"]),
                                                    "--preset", "demo", "--bad-row-rate", "0"]))
            _wait_for(f"{platform_url}/health", "the fake platform", children[-1])
        else:
            self.stdout.write(f"Using the platform at {platform_url}")
        children.append(Child("cluster", ["qcluster"]))
        web = Child("web", ["runserver", f"127.0.0.1:{options['web_port']}", "--noreload", "--insecure"])
        children.append(web)
        _wait_for(f"http://127.0.0.1:{options['web_port']}/healthz", "the web server", web, any_status=True)
        return children

    def _demo_login(self) -> str:
        """A superuser with a fresh random password: never a fixed default."""
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=DEMO_USER, defaults={"email": "admin@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def _first_sync(self):
        account = account_default_get()
        try:
            run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="make run", enqueue=True)
        except SyncRefused as refused:
            if refused.active_run is None:
                raise CommandError(str(refused)) from None
            run = refused.active_run  # a run left by an earlier demo: follow it
        self.stdout.write(f"First sync queued on the cluster: run #{run.pk} ({account.rate_limit} budget)")
        return run

    def _serve_until_interrupted(self, children: list[Child]) -> None:
        while True:
            for child in children:
                if not child.alive():
                    raise CommandError(f"the {child.name} stopped; see {child.log_path}")
            time.sleep(1)


def _wait_for(url: str, what: str, child: Child, *, any_status: bool = False, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise CommandError(f"{what} did not start; see {child.log_path}")
        try:
            response = requests.get(url, timeout=1)
            if any_status or response.ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise CommandError(f"{what} did not answer at {url} within {timeout:g} s; see {child.log_path}")
