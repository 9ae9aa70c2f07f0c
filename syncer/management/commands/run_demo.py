"""`manage.py run_demo` (what `make run` starts): the whole product on one machine.

Checks that its ports are free, then starts the bundled fake platform with its
failure modes on, the task cluster and the web server; creates a demo login;
queues a first sync on the cluster and shows its progress; then keeps serving
until Ctrl-C, SIGTERM or SIGHUP. Every way out (those, an error of its own, a
part that dies) stops all it started, the web server first.
"""
from __future__ import annotations

import argparse
import errno
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
DEMO_USER = "admin"
EXIT_OK, EXIT_STOPPED_SHORT, EXIT_CANNOT_START = 0, 1, 2
# A service manager or a CI timeout sends SIGTERM; a closed terminal SIGHUP. Our
# children run in sessions of their own and get neither: we stop them.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
LOCAL_HOSTS = ("localhost", "127.0.0.1")


class Child:
    """A child process in its own session, so Ctrl-C reaches only us and we stop it in order."""

    def __init__(self, name: str, args: list[str], *, log_dir: Path) -> None:
        self.name, self.args = name, args
        self.log_path = log_dir / f"{name.replace(' ', '-')}.log"
        self.process: subprocess.Popen | None = None

    def start(self, env: dict[str, str]) -> None:
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "manage.py", *self.args], cwd=ROOT, env=env,
                                            start_new_session=True, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def last_log_line(self) -> str:
        lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:200] if lines else "no output"

    def stop(self, timeout: float = 20) -> None:
        if self.process is None:
            return
        if self.alive():
            self.process.send_signal(signal.SIGTERM)  # the main process stops its own workers
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left in its session (all of it, when it would not stop)
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()


class Children:
    """What the demo started, each registered the moment it starts, so every way out stops it."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.started: list[Child] = []

    def start(self, name: str, args: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(name, args, log_dir=self.log_dir)
        self.started.append(child)  # before it starts: an interrupt right after Popen must still stop it
        child.start(self.env)
        return child

    def all_alive(self) -> bool:
        return all(child.alive() for child in self.started)

    def check_alive(self) -> None:
        for child in self.started:
            if not child.alive():
                raise CommandError(f"the {child.name} stopped: {child.last_log_line()} (see {child.log_path})",
                                   returncode=EXIT_STOPPED_SHORT)

    def stop_all(self) -> None:
        for stop_signal in (signal.SIGINT, *STOP_SIGNALS):  # a second Ctrl-C must not cut the stopping short
            signal.signal(stop_signal, signal.SIG_IGN)
        for child in reversed(self.started):
            child.stop()


class Command(BaseCommand):
    help = ("Run the demo: fake platform, task cluster and web server, with a first sync. Ctrl-C or SIGTERM "
            "stops it. Exit status: 0 stopped as asked (with --exit-after-sync: every campaign synced), "
            "1 the first sync did not sync all or a part stopped, 2 it could not start (a port taken, a part "
            "that did not start).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--web-port", type=_port, default=8000)
        parser.add_argument("--platform-port", type=_port,
                            help="port of the bundled fake platform (default: AD_PLATFORM_URL's, 3001)")
        parser.add_argument("--platform-args", default="", metavar="FLAGS",
                            help="more flags for the bundled fake platform, e.g. '--campaigns 20 --hang-rate 0.1' "
                                 "(see manage.py run_fake_platform --help)")
        parser.add_argument("--log-dir", type=Path, default=ROOT / ".run", help="where each part writes its log")
        parser.add_argument("--exit-after-sync", action="store_true",
                            help="stop everything once the first sync ends (exit 0 only if it synced all)")

    def handle(self, *args, **options) -> None:
        console_for_command(options["verbosity"])
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.default_int_handler)  # stop as on Ctrl-C
        platform_url = _point_at_bundled_platform(options["platform_port"])
        children = Children(options["log_dir"], _children_env(platform_url))
        try:
            _check_ports(web_port=options["web_port"], platform_url=platform_url)
            self._start_children(children, options, platform_url)
            run = self._show_first_sync(children, options)
            if options["exit_after_sync"]:
                if run.campaigns_failed or run.status != "succeeded":
                    raise CommandError(f"the first sync ended {run.status}", returncode=EXIT_STOPPED_SHORT)
                return
            _serve_until_interrupted(children)
        except KeyboardInterrupt:
            if options["exit_after_sync"]:
                raise CommandError("stopped before the first sync ended", returncode=EXIT_STOPPED_SHORT) from None
        finally:
            if children.started:
                self._say("Stopping the web server, the cluster and the fake platform...")
            children.stop_all()

    def _start_children(self, children: Children, options, platform_url: str | None) -> None:
        if platform_url:
            port = str(urlsplit(platform_url).port)
            extra = shlex.split(options["platform_args"])
            fake = children.start("fake-platform", ["run_fake_platform", "--port", port, "--preset", "demo",
                                                    "--bad-row-rate", "0", *extra])
            _wait_for(f"{platform_url}/health", "fake platform", fake)
        else:
            self.stdout.write(f"Using the platform at {settings.AD_PLATFORM['URL']}")
        children.start("cluster", ["qcluster"])
        web = children.start("web server", ["runserver", f"127.0.0.1:{options['web_port']}", "--noreload",
                                            "--insecure"])
        _wait_for(f"http://127.0.0.1:{options['web_port']}/healthz", "web server", web, any_status=True)

    def _show_first_sync(self, children: Children, options):
        password = self._demo_login()
        run = self._first_sync()
        web = f"http://127.0.0.1:{options['web_port']}"
        self.stdout.write(self.style.SUCCESS(
            f"\nRunning. Admin: {web}/admin/  Status page: {web}/status/\n"
            f"Login: {DEMO_USER} / {password}   (generated now, shown once)\n"
            f"Logs: {options['log_dir']}/   Ctrl-C stops everything.\n"))
        run = follow(run.pk, self.stdout, is_tty=self.stdout.isatty(), keep_going=children.all_alive)
        children.check_alive()
        for line in summary_lines(run):
            self.stdout.write(line)
        return run

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

    def _say(self, line: str) -> None:
        try:
            self.stdout.write(line)
        except OSError:  # the terminal is gone (SIGHUP): stopping matters more than saying so
            pass


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return int(text)


def _point_at_bundled_platform(platform_port: int | None) -> str | None:
    """The URL of the fake platform we start (with --platform-port in it), or None for another platform.

    The default account (in this process) and the children (through their
    environment) must point at the port the fake really listens on.
    """
    url = urlsplit(settings.AD_PLATFORM["URL"])
    if url.scheme != "http" or url.hostname not in LOCAL_HOSTS:
        return None
    bundled = urlunsplit(url._replace(netloc=f"{url.hostname}:{platform_port or url.port or 80}"))
    settings.AD_PLATFORM = {**settings.AD_PLATFORM, "URL": bundled}
    return bundled


def _children_env(platform_url: str | None) -> dict[str, str]:
    return {**os.environ, **({"AD_PLATFORM_URL": platform_url} if platform_url else {})}


def _check_ports(*, web_port: int, platform_url: str | None) -> None:
    """Before anything starts: every port we will listen on is free, or one line says which is taken."""
    wanted = {"--web-port": (web_port, "127.0.0.1")}
    if platform_url:
        url = urlsplit(platform_url)
        wanted["--platform-port"] = (url.port, url.hostname)
        if url.port == web_port:
            raise CommandError(f"the web server and the fake platform cannot share port {web_port}; pick another "
                               f"with make run ARGS='--platform-port {_free_port_after(web_port)}'",
                               returncode=EXIT_CANNOT_START)
    taken = {flag: port for flag, (port, host) in wanted.items() if _port_taken(port, host)}
    if not taken:
        return
    avoid = {port for port, _ in wanted.values()}
    instead = " ".join(f"{flag} {_free_port_after(port, avoid)}" for flag, port in taken.items())
    ports = " and ".join(str(port) for port in taken.values())
    said = f"port {ports} is taken; pick another" if len(taken) == 1 else f"ports {ports} are taken; pick others"
    raise CommandError(f"{said} with make run ARGS='{instead}'", returncode=EXIT_CANNOT_START)


def _port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether another program holds the port: we could not listen on it, or something answers at host:port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as our servers do: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise CommandError(f"cannot listen on 127.0.0.1:{port}: {error.strerror}",
                               returncode=EXIT_CANNOT_START) from None
    if host == "127.0.0.1":
        return False
    try:  # "localhost" may reach another program on [::1] before our 127.0.0.1
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def _free_port_after(port: int, avoid: set[int] = frozenset()) -> int:
    for candidate in range(port + 1, min(port + 100, 65535) + 1):
        if candidate not in avoid and not _port_taken(candidate):
            return candidate
    with socket.socket() as probe:  # none near it: any free one
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str, what: str, child: Child, *, any_status: bool = False, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise CommandError(f"the {what} did not start: {child.last_log_line()} (see {child.log_path})",
                               returncode=EXIT_CANNOT_START)
        try:
            response = requests.get(url, timeout=1)
            if any_status or response.ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise CommandError(f"the {what} did not answer at {url} within {timeout:g} s; see {child.log_path}",
                       returncode=EXIT_CANNOT_START)


def _serve_until_interrupted(children: Children) -> None:
    while True:
        children.check_alive()
        time.sleep(1)
