"""The machinery under the benchmark scenarios: processes, databases, measurement.

Everything the benchmark starts is a real subprocess in its own session
(`manage.py run_fake_platform`, `manage.py qcluster`, `manage.py
sync_campaigns`), so what is measured is the product as a user runs it and
the fake platform's own cost stays out of the syncer's numbers. Peak memory
is VmHWM from /proc/<pid>/status of every process in each tree, sampled
while it runs; CPU is utime + stime from /proc/<pid>/stat.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
WORK = Path(os.environ.get("BENCH_WORKDIR", "/tmp/campaign-sync-bench"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")


class BenchError(RuntimeError):
    """Something the benchmark itself could not do (a process did not start, ...)."""


# --- processes ---------------------------------------------------------------------------

class Proc:
    """A subprocess in its own session with its output in a log file; stop() ends it and its children."""

    _all: ClassVar[list[Proc]] = []

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], logdir: Path) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.process.pid
        Proc._all.append(self)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the main process (it stops its own workers), then SIGKILL its whole group."""
        if self.alive():
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # whatever is left of its session (orphaned workers too)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        if self in Proc._all:
            Proc._all.remove(self)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    @classmethod
    def stop_all(cls) -> None:
        for proc in reversed(list(cls._all)):
            proc.stop(timeout=5)


def manage(*args: str) -> list[str]:
    return [PYTHON, "manage.py", *args]


# --- /proc sampling ------------------------------------------------------------------------

def _read_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _read_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmd_label(pid: int) -> str:
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [p.decode(errors="replace") for p in parts if p]
    if "manage.py" in " ".join(words):
        sub = words[words.index("manage.py") + 1] if "manage.py" in words[:-1] else "manage.py"
        return sub
    return Path(words[0]).name if words else "?"


@dataclass
class ProcRecord:
    group: str
    label: str
    hwm_kb: int = 0
    cpu_s: float = 0.0


class Sampler:
    """Samples VmHWM and CPU time of every process in the trees of the watched roots."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.roots: dict[int, str] = {}  # root pid -> group ("syncer" or "fake")
        self.records: dict[int, ProcRecord] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def watch(self, proc: Proc, group: str) -> None:
        with self._lock:
            self.roots[proc.pid] = group
        self.sample()

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            roots = dict(self.roots)
        if not roots:
            return
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _read_stat(int(entry))
                if stat:
                    parents[int(entry)], cpu[int(entry)] = stat
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        with self._lock:
            for root, group in roots.items():
                stack = [root] if root in parents else []
                while stack:
                    pid = stack.pop()
                    stack += children.get(pid, [])
                    record = self.records.get(pid)
                    if record is None:
                        record = self.records[pid] = ProcRecord(group, _cmd_label(pid))
                    record.hwm_kb = max(record.hwm_kb, _read_hwm_kb(pid))
                    record.cpu_s = max(record.cpu_s, cpu.get(pid, 0.0))

    def peak(self, group: str) -> tuple[float, str]:
        """(MB, label) of the process with the highest VmHWM in the group."""
        with self._lock:
            candidates = [r for r in self.records.values() if r.group == group]
        if not candidates:
            return 0.0, "-"
        top = max(candidates, key=lambda r: r.hwm_kb)
        return top.hwm_kb / 1024, top.label

    def cpu(self, group: str) -> float:
        with self._lock:
            return sum(r.cpu_s for r in self.records.values() if r.group == group)

    def processes(self, group: str) -> int:
        with self._lock:
            return sum(1 for r in self.records.values() if r.group == group)


# --- the fake platform ------------------------------------------------------------------------

class FakePlatform:
    """`manage.py run_fake_platform` on a free port, controlled over /_fake/*."""

    def __init__(self, *, logdir: Path, env: dict[str, str], **knobs) -> None:
        args = manage("run_fake_platform", "--port", "0")
        for name, value in knobs.items():
            flag = "--" + name.replace("_", "-")
            args += [flag] if value is True else [f"--no-{name.replace('_', '-')}"] if value is False \
                else [flag, str(value)]
        self.proc = Proc("fake-platform", args, env=env, logdir=logdir)
        self.url = self._wait_url()

    def _wait_url(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        marker = "listening on "
        while time.monotonic() < deadline:
            text = self.proc.log_text()
            if marker in text:
                return text.split(marker, 1)[1].split()[0]
            if not self.proc.alive():
                raise BenchError(f"the fake platform did not start: {text[-2000:]}")
            time.sleep(0.1)
        raise BenchError("the fake platform did not say where it listens within 30 s")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("GET", "/_fake/stats")

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {"rate_limits": True, "tokens": False})

    def stop(self) -> None:
        self.proc.stop()


# --- databases -----------------------------------------------------------------------------

_SQLITE_TEMPLATE: Path | None = None


def parse_dt(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value
    text = str(value).replace("T", " ")
    for suffix in ("+00:00", "Z"):
        text = text.removesuffix(suffix)
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


RUN_COLUMNS = ("id", "status", "created_at", "started_at", "prepared_at", "finished_at", "campaigns_listed",
               "campaigns_synced", "campaigns_failed", "rate_limited", "requests", "retries", "error_message")


class Database:
    """A fresh, migrated database for one scenario; runs() reads SyncRun rows with raw SQL."""

    kind = "?"
    url = ""

    def runs(self, after_id: int = 0) -> list[dict]:
        """The runs past `after_id` (a seeded history's runs are not the scenario's)."""
        rows = self._query(f"SELECT {', '.join(RUN_COLUMNS)} FROM campaigns_syncrun WHERE id > {int(after_id)} "
                           "ORDER BY id")
        runs = []
        for row in rows:
            run = dict(zip(RUN_COLUMNS, row, strict=False))
            for key in ("created_at", "started_at", "prepared_at", "finished_at"):
                run[key] = parse_dt(run[key])
            runs.append(run)
        return runs

    def attempts_save(self, path: Path, after_run_id: int = 0) -> None:
        """Every attempt's run, status, tries, times and latency as CSV, for a look after the database is gone."""
        columns = ("run_id", "platform_id", "status", "tries", "http_status", "started_at", "finished_at",
                   "latency_ms")
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(columns)
            writer.writerows(self._query(f"SELECT {', '.join(columns)} FROM campaigns_syncattempt "
                                         f"WHERE run_id > {int(after_run_id)} ORDER BY id"))

    def scalar(self, sql: str):
        rows = self._query(sql)
        return rows[0][0] if rows else None

    def rows(self, sql: str) -> list[tuple]:
        return self._query(sql)

    def _query(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def drop(self) -> None:
        pass


class SqliteDatabase(Database):
    kind = "SQLite"

    def __init__(self, path: Path, env: dict[str, str], logdir: Path) -> None:
        global _SQLITE_TEMPLATE
        self.path = path
        self.url = f"sqlite:///{path}"
        if _SQLITE_TEMPLATE is None or not _SQLITE_TEMPLATE.exists():
            template = WORK / f"template-{os.getpid()}.sqlite3"
            template.unlink(missing_ok=True)
            _migrate({**env, "DATABASE_URL": f"sqlite:///{template}"}, logdir)
            _checkpoint(template)
            _SQLITE_TEMPLATE = template
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_SQLITE_TEMPLATE, path)

    def _query(self, sql: str) -> list[tuple]:
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return connection.execute(sql).fetchall()
        finally:
            connection.close()

    def drop(self) -> None:
        pass  # kept beside the logs for a look afterwards


def cleanup() -> None:
    """Remove this process's migrated template database and the writer-lock file beside it."""
    if _SQLITE_TEMPLATE is not None:
        _SQLITE_TEMPLATE.unlink(missing_ok=True)
        _SQLITE_TEMPLATE.with_name(_SQLITE_TEMPLATE.name + ".writer-lock").unlink(missing_ok=True)


def _checkpoint(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresDatabase(Database):
    kind = "PostgreSQL"

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        import psycopg

        self._psycopg = psycopg
        self.name = f"cs_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.url = f"{PG_URL}/{self.name}"
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        self.version = self.scalar("SHOW server_version")
        self.max_connections = self.scalar("SHOW max_connections")
        _migrate({**env, "DATABASE_URL": self.url}, logdir)

    def _query(self, sql: str) -> list[tuple]:
        with self._psycopg.connect(self.url, autocommit=True) as connection:
            return connection.execute(sql).fetchall()

    def connections(self) -> int:
        return self.scalar(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def drop(self) -> None:
        """Drop it, waiting for the killed processes' server connections to go (their slots may be all taken)."""
        for attempt in range(30):
            try:
                with self._psycopg.connect(f"{PG_URL}/postgres", autocommit=True, connect_timeout=5) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                return
            except self._psycopg.OperationalError as error:
                if attempt == 29:
                    print(f"could not drop database {self.name}: {error}", file=sys.stderr)
                time.sleep(1)


def _migrate(env: dict[str, str], logdir: Path) -> None:
    proc = Proc("migrate", manage("migrate", "--noinput", "-v", "0"), env=env, logdir=logdir)
    code = proc.wait(300)
    text = proc.log_text()
    proc.stop()
    if code != 0:
        raise BenchError(f"migrate failed ({code}): {text[-2000:]}")


def redis_flush() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


# --- environment and the cluster -------------------------------------------------------------

def base_env(*, database_url: str, platform_url: str, redis: bool = False, **overrides: str) -> dict[str, str]:
    """The environment of every product process of a scenario: the defaults a user gets, pointed at our fake."""
    keep = {key: value for key, value in os.environ.items()
            if not key.startswith(("AD_PLATFORM_", "SYNC_", "Q_", "DATABASE_URL", "REDIS_URL", "LOG_"))}
    env = {
        **keep,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL if redis else "",
        "AD_PLATFORM_URL": platform_url,
        "AD_PLATFORM_EMAIL": "demo@adplatform.test",
        "AD_PLATFORM_PASSWORD": "demo-password",
        "AD_PLATFORM_CLIENT_ID": "bench-default",
        "AD_PLATFORM_RATE_LIMIT": "none",
        "Q_CLUSTER_NAME": f"cs-bench-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "info",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def q_workers(env: dict[str, str]) -> int:
    return int(env.get("Q_WORKERS") or 4)


def start_cluster(name: str, *, env: dict[str, str], logdir: Path, sampler: Sampler, timeout: float = 60) -> Proc:
    """`manage.py qcluster`; returns once its worker processes are up."""
    proc = Proc(name, manage("qcluster"), env=env, logdir=logdir)
    sampler.watch(proc, "syncer")
    want = q_workers(env) + 1  # the workers, plus at least the monitor/pusher
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{name} exited at start: {proc.log_text()[-2000:]}")
        if _descendants(proc.pid) >= want:
            time.sleep(1.0)  # let the workers finish importing
            return proc
        time.sleep(0.2)
    raise BenchError(f"{name} did not start its workers within {timeout:g} s")


def _descendants(root: int) -> int:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat:
                parents[int(entry)] = stat[0]
    count, frontier = 0, {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier}
        count += len(frontier)
    return count


# --- the machine and the commit ---------------------------------------------------------------

def machine_line() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return (f"{platform.machine()}, {os.cpu_count()} cores{f' ({model})' if model else ''}, {mem_gb:.0f} GB RAM, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def commit_line() -> str:
    def git(*args: str) -> str:
        try:
            result = subprocess.run(["git", *args], cwd=ROOT, check=False, capture_output=True, text=True, timeout=30)
            return result.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" (dirty)" if git("status", "--porcelain") else "")


@dataclass
class Row:
    scenario: str
    path: str
    work: str
    floor: str
    measured: str
    ratio: str
    r429: str
    synced: str
    peak_rss: str
    target: str
    result: str
    notes: list[str] = field(default_factory=list)

    HEADER = ("scenario", "path", "work", "floor", "measured", "ratio", "429s", "synced/total", "peak RSS",
              "target", "result", "notes")

    def cells(self) -> tuple[str, ...]:
        return (self.scenario, self.path, self.work, self.floor, self.measured, self.ratio, self.r429, self.synced,
                self.peak_rss, self.target, self.result, "; ".join(self.notes))
