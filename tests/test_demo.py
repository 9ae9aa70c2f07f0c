"""`manage.py run_demo` and `make run` as people use them: real processes, stopped as a service manager would.

Each demo runs as a real subprocess on free ports, with its own SQLite database
and log folder, against a small fast bundled fake platform. Every process it
starts inherits a marker in its environment (its queue name), so the test finds
them all in /proc, grandchildren included, and can prove they are gone.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import uuid
from pathlib import Path

import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
# 20 campaigns at 0.4 s each, two at a time: a few seconds of progress, no faults, so the sync ends succeeded.
FAKE_ARGS = ("--campaigns 20 --rate-limit none --sync-latency 0.4 --sync-latency-jitter 0 --list-fail-rate 0 "
             "--sync-fail-rate 0 --hang-rate 0 --token-lifetime 3600")
FAST_ENV = {
    "AD_PLATFORM_RATE_LIMIT": "none", "SYNC_CONCURRENCY": "2", "Q_WORKERS": "1", "SYNC_REQUEST_TIMEOUT": "5",
    "SYNC_CONNECT_TIMEOUT": "2", "SYNC_BACKOFF_BASE": "0.05", "SYNC_BACKOFF_CAP": "0.5",
}
# What the demo must not inherit from the developer's shell: it runs on its own database, broker and platform.
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "AD_PLATFORM_URL", "AD_PLATFORM_EMAIL", "AD_PLATFORM_PASSWORD",
                 "AD_PLATFORM_CLIENT_ID", "LOG_LEVEL", "Q_CLUSTER_NAME")
PROGRESS = re.compile(r"run #\d+ (queued|running|succeeded|partial|failed)")
START_TIMEOUT = 120  # the demo's three parts start on a busy two-core machine


# --- helpers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_socket(port: int = 0) -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def marked_processes(marker: str) -> dict[int, str]:
    """Every live process whose environment holds the marker, with its command line (zombies have no environment)."""
    needle = f"Q_CLUSTER_NAME={marker}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])  # after "(command)": state, then the parent's pid


def command_lines(marker: str) -> list[str]:
    return sorted(marked_processes(marker).values())


def platform_urls_seen(marker: str) -> dict[str, str]:
    """The AD_PLATFORM_URL each of the demo's parts was given, by the part's command."""
    seen = {}
    for pid, command in marked_processes(marker).items():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        part = command.split("manage.py ")[-1].split(" ")[0]
        urls = [item.partition(b"=")[2].decode() for item in environ if item.startswith(b"AD_PLATFORM_URL=")]
        seen[part] = urls[0] if urls else "(not set)"
    return seen


class Demo:
    """One demo (`manage.py run_demo` or `make run`): its ports, database, logs, output and processes."""

    def __init__(self, directory: Path, template_db: Path) -> None:
        self.directory = directory
        self.web_port = free_port()
        self.platform_port = free_port()
        while self.platform_port == self.web_port:
            self.platform_port = free_port()
        self.marker = f"cs-demo-{uuid.uuid4().hex[:10]}"
        self.db = directory / "demo.sqlite3"
        shutil.copy(template_db, self.db)
        self.log_dir = directory / "logs"
        self.stdout_path, self.stderr_path = directory / "stdout.txt", directory / "stderr.txt"
        self.env = {**{key: value for key, value in os.environ.items() if key not in NOT_INHERITED}, **FAST_ENV,
                    "DATABASE_URL": f"sqlite:///{self.db}", "Q_CLUSTER_NAME": self.marker}
        self.process: subprocess.Popen | None = None

    def args(self, *extra: str) -> list[str]:
        return ["--web-port", str(self.web_port), "--platform-port", str(self.platform_port),
                "--log-dir", str(self.log_dir), "--platform-args", FAKE_ARGS, *extra]

    def start(self, *extra: str, stdout=None) -> subprocess.Popen:
        return self.start_command([sys.executable, "manage.py", "run_demo", *self.args(*extra)], stdout=stdout)

    def start_command(self, command: list[str], *, stdout=None) -> subprocess.Popen:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=out if stdout is None else stdout, stderr=err)
        return self.process

    def run(self, *extra: str, timeout: float = START_TIMEOUT) -> int:
        self.start(*extra)
        return self.wait_exit(timeout=timeout)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_running(self) -> None:
        wait_until(lambda: "Running." in self.stdout() or self.process.poll() is not None, timeout=START_TIMEOUT,
                   message="the demo says it is running")
        assert self.process.poll() is None, f"the demo stopped: {self.stdout()}{self.stderr()}"

    def wait_exit(self, *, timeout: float) -> int:
        wait_until(lambda: self.process.poll() is not None, timeout=timeout, message="the demo process exits")
        return self.process.returncode

    def wait_all_gone(self) -> None:
        wait_until(lambda: not marked_processes(self.marker), timeout=60,
                   message=f"every process the demo started is gone (left: {command_lines(self.marker)})")

    def one_error_line(self) -> str:
        lines = [line for line in self.stderr().splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got: {self.stderr()}"
        assert "Traceback" not in self.stderr()
        return lines[0]

    def default_account_url(self) -> str:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT base_url FROM campaigns_adaccount WHERE slug = 'default'").fetchone()[0]

    def kill_leftovers(self) -> None:
        """A failing test must not leave the demo's processes on the machine: SIGKILL each, by its pid."""
        for pid in marked_processes(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None and self.process.poll() is None:
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """A migrated SQLite database, copied for each demo (migrating once saves seconds per test)."""
    path = tmp_path_factory.mktemp("demo-template") / "template.sqlite3"
    env = {**{key: value for key, value in os.environ.items() if key not in NOT_INHERITED},
           "DATABASE_URL": f"sqlite:///{path}"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=300, capture_output=True)
    return path


@pytest.fixture
def demo(tmp_path, template_db):
    demo = Demo(tmp_path, template_db)
    yield demo
    demo.kill_leftovers()


# --- stopping -------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_stops_the_web_server_the_cluster_and_the_fake_platform(demo, stop_signal):
    demo.start()
    demo.wait_running()
    started = " | ".join(command_lines(demo.marker))
    for part in ("run_fake_platform", "qcluster", "runserver"):
        assert part in started, f"{part} is not running: {started}"
    assert port_open(demo.web_port) and port_open(demo.platform_port)

    demo.process.send_signal(stop_signal)

    returncode = demo.wait_exit(timeout=90)
    demo.wait_all_gone()
    assert returncode == 0, f"the demo exited {returncode}: {demo.stderr()}"
    assert not port_open(demo.web_port) and not port_open(demo.platform_port)
    assert "Stopping the web server, the cluster and the fake platform" in demo.stdout()


def test_make_run_passes_sigterm_on_to_the_demo_and_everything_stops(demo):
    demo.start_command(["make", "-s", "run", f"ARGS={shlex.join(demo.args())}"])
    demo.wait_running()
    assert "runserver" in " ".join(command_lines(demo.marker))

    demo.process.send_signal(signal.SIGTERM)  # to make alone, as a service manager or a CI timeout does

    demo.wait_exit(timeout=90)
    demo.wait_all_gone()
    assert not port_open(demo.web_port) and not port_open(demo.platform_port)
    assert "Stopping the web server, the cluster and the fake platform" in demo.stdout()


# --- ports and start-up errors ------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--web-port", "--platform-port"])
def test_a_taken_port_is_named_in_one_line_with_how_to_pick_another_and_nothing_starts(demo, flag):
    holder = listening_socket()
    taken = holder.getsockname()[1]
    other_port = demo.platform_port if flag == "--web-port" else demo.web_port
    if flag == "--web-port":
        demo.web_port = taken
    else:
        demo.platform_port = taken
    try:
        returncode = demo.run(timeout=60)
    finally:
        holder.close()

    assert returncode == 2, demo.stdout() + demo.stderr()
    line = demo.one_error_line()
    suggestion = re.fullmatch(rf"CommandError: port {taken} is taken; pick another with make run ARGS='{flag} (\d+)'",
                              line)
    assert suggestion, line
    assert int(suggestion.group(1)) not in (taken, other_port)
    assert not marked_processes(demo.marker), command_lines(demo.marker)
    assert not demo.log_dir.exists() or not any(demo.log_dir.iterdir()), "a part was started"
    assert not port_open(other_port)


def test_a_web_server_that_cannot_start_leaves_no_cluster_or_fake_platform_behind(demo):
    demo.start()
    # The demo checks its ports before it starts anything; once the fake platform's log appears the check is
    # past, and the web server starts only after the fake answers: take its port now, as another program could.
    wait_until(lambda: (demo.log_dir / "fake-platform.log").exists() or demo.process.poll() is not None,
               timeout=START_TIMEOUT, poll=0.005, message="the demo starts its fake platform")
    try:
        holder = listening_socket(demo.web_port)
    except OSError as error:
        pytest.fail(f"the web server took port {demo.web_port} before the test could ({error})", pytrace=False)
    try:
        returncode = demo.wait_exit(timeout=START_TIMEOUT)
    finally:
        holder.close()

    assert returncode == 2, demo.stdout() + demo.stderr()
    line = demo.one_error_line()
    assert line.startswith("CommandError: the web server did not start: Error: That port is already in use."), line
    demo.wait_all_gone()
    assert not port_open(demo.platform_port)
    assert "Stopping the web server, the cluster and the fake platform" in demo.stdout()


def test_the_web_server_and_the_fake_platform_on_one_port_is_refused_in_one_line_before_anything_starts(demo):
    demo.platform_port = demo.web_port

    assert demo.run(timeout=60) == 2, demo.stdout() + demo.stderr()
    line = demo.one_error_line()
    assert re.fullmatch(rf"CommandError: the web server and the fake platform cannot share port {demo.web_port}; "
                        r"pick another with make run ARGS='--platform-port \d+'", line), line
    assert not marked_processes(demo.marker) and not demo.log_dir.exists()


def test_a_part_that_dies_during_the_first_sync_ends_the_demo_in_one_line_and_stops_the_rest(demo):
    demo.start("--exit-after-sync")
    demo.wait_running()
    cluster = next(pid for pid, command in marked_processes(demo.marker).items()
                   if "qcluster" in command and parent_pid(pid) == demo.process.pid)

    os.killpg(cluster, signal.SIGKILL)  # the cluster and its workers (a session of their own), as a crash would

    assert demo.wait_exit(timeout=START_TIMEOUT) == 1, demo.stdout() + demo.stderr()
    assert demo.one_error_line().startswith("CommandError: the cluster stopped"), demo.stderr()
    demo.wait_all_gone()
    assert not port_open(demo.web_port) and not port_open(demo.platform_port)


# --- progress -----------------------------------------------------------------------------


def read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            return
        if not chunk:
            return
        into.extend(chunk)


def test_in_a_terminal_the_progress_bar_redraws_in_place(demo):
    terminal, demo_side = pty.openpty()
    fcntl.ioctl(demo_side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    output = bytearray()
    reader = threading.Thread(target=read_all, args=(terminal, output), daemon=True)
    reader.start()
    try:
        demo.start("--exit-after-sync", stdout=demo_side)
        os.close(demo_side)
        returncode = demo.wait_exit(timeout=START_TIMEOUT)
        reader.join(timeout=30)
    finally:
        os.close(terminal)
    text = output.decode(errors="replace").replace("\r\n", "\n")  # the terminal turns each new line into \r\n

    assert returncode == 0, text + demo.stderr()
    drawings = [part for part in text.split("\r") if PROGRESS.search(part)]
    assert len(drawings) >= 3, f"expected the bar drawn several times: {text!r}"
    lines_with_progress = [line for line in text.split("\n") if PROGRESS.search(line)]
    assert len(lines_with_progress) == 1, f"every update took a new line: {lines_with_progress}"
    assert "20/20" in drawings[-1] and "succeeded" in drawings[-1], drawings[-1]


@pytest.fixture(scope="module")
def synced_once(tmp_path_factory, template_db):
    """One demo with stdout to a file (no terminal) that stops after its first sync."""
    demo = Demo(tmp_path_factory.mktemp("demo-synced"), template_db)
    try:
        demo.start("--exit-after-sync")
        demo.wait_running()  # the first sync takes seconds: its parts are all up now
        demo.platform_urls = platform_urls_seen(demo.marker)
        returncode = demo.wait_exit(timeout=START_TIMEOUT)
    finally:
        demo.kill_leftovers()
    return demo, returncode


def test_without_a_terminal_the_progress_is_plain_lines(synced_once):
    demo, returncode = synced_once
    assert returncode == 0, demo.stdout() + demo.stderr()
    assert "\r" not in demo.stdout()
    progress = [line for line in demo.stdout().splitlines() if re.match(r"run #\d+ \w+: ", line)]
    assert progress and progress[-1].endswith("20/20 done, 20 synced, 0 failed, 0 retries, 0 429s"), progress


def test_the_default_account_and_the_cluster_point_at_the_bundled_fake_on_the_port_it_was_given(synced_once):
    demo, returncode = synced_once
    url = f"http://localhost:{demo.platform_port}"
    assert returncode == 0, demo.stdout() + demo.stderr()
    assert demo.default_account_url() == url
    assert demo.platform_urls.get("qcluster") == url and demo.platform_urls.get("runserver") == url, \
        demo.platform_urls
    assert f"listening on http://127.0.0.1:{demo.platform_port}" in (demo.log_dir / "fake-platform.log").read_text()
    assert "campaigns: 20 listed, 20 synced, 0 failed" in demo.stdout()


# --- make test's chromium -------------------------------------------------------------------
# The install step runs apt-get, which a test must not run for real (it changes the machine, and
# the clean-clone check does it for real): these give the Makefile a stand-in apt-get and a
# chromium path of their own, and check what the step does with them.


MAKE_ERROR = re.compile(r"make(\[\d+\])?: \*\*\* ")  # make's own line about a failed recipe


def make_chromium(tmp_path: Path, apt_get: Path) -> subprocess.CompletedProcess:
    chromium = tmp_path / "chromium"
    # A make of its own (not a sub-make of `make test`), and DEBIAN_FRONTEND as the step sets it, not as inherited.
    env = {key: value for key, value in os.environ.items()
           if key not in ("DEBIAN_FRONTEND", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "-s", "-C", str(ROOT), str(chromium), f"CHROMIUM={chromium}", f"APT_GET={apt_get}",
                           f"CHROMIUM_LOG={tmp_path / 'install.log'}"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_make_test_installs_a_missing_chromium_with_apt_get_once_when_the_machine_allows_it(tmp_path):
    calls = tmp_path / "apt-get-calls"
    apt_get = tmp_path / "apt-get"
    apt_get.write_text(f"#!/bin/sh\necho \"${{DEBIAN_FRONTEND:-}} $*\" >> {calls}\n"
                       f"[ \"$1\" = install ] && touch {tmp_path / 'chromium'}\nexit 0\n")
    apt_get.chmod(0o755)

    first, second = make_chromium(tmp_path, apt_get), make_chromium(tmp_path, apt_get)

    if os.geteuid() != 0:  # the machine does not allow it: one line says what to do
        assert first.returncode != 0 and "needs root" in first.stderr, first.stderr
        return
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == ("Installing Debian's chromium for the browser test "
                                    f"(once; log in {tmp_path}/install.log)")
    assert second.returncode == 0 and second.stdout == "", second.stdout + second.stderr
    assert calls.read_text().splitlines() == [" update -qq", "noninteractive install -y -qq chromium"]


def test_make_test_without_chromium_and_no_apt_get_says_what_to_do_in_one_line(tmp_path):
    result = make_chromium(tmp_path, tmp_path / "no-apt-get")

    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.strip() and not MAKE_ERROR.match(line)]
    assert len(ours) == 1, result.stderr
    assert "apt-get install chromium" in ours[0] and "make test again" in ours[0], ours[0]
