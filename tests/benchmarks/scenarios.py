"""The benchmark scenarios of issue 5: each computes its floor, runs, checks and returns rows.

Wall time of a run is measured in the database: from the run's `created_at`
(the moment it is queued) to its `finished_at`; for a fleet, from the first
run's `created_at` to the last run's `finished_at`. So queue pickup, listing
and the last write are all inside it, as the user sees them.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.harness import (
    PYTHON,
    WORK,
    BenchError,
    FakePlatform,
    PostgresDatabase,
    Proc,
    Row,
    Sampler,
    SqliteDatabase,
    base_env,
    manage,
    q_workers,
    redis_flush,
    start_cluster,
)

PAGE_SIZE = 100  # SYNC_PAGE_SIZE's default and the fake's max_page_size
TERMINAL = {"succeeded", "partial", "failed", "cancelled"}


# --- floors -------------------------------------------------------------------------------------

def calls_needed(campaigns: int, page_size: int = PAGE_SIZE) -> int:
    """/api/* calls a run needs at least: one list call per page (at least one) and one sync per campaign."""
    return max(1, math.ceil(campaigns / page_size)) + campaigns


def rate_floor(campaigns: int, calls: int, window: float, latency: float) -> float:
    """N calls per sliding W s: call k (0-based) goes no earlier than floor(k / N) * W after the first."""
    return math.floor((calls_needed(campaigns) - 1) / calls) * window + latency


def latency_floor(campaigns: int, concurrency: int, latency: float) -> float:
    """No budget: at most `concurrency` syncs in flight, each `latency` long (list calls answer at once)."""
    return math.ceil(campaigns / concurrency) * latency


def parse_rate(text: str) -> tuple[int, float]:
    calls, window = re.fullmatch(r"(\d+)/(\d+(?:\.\d+)?)s", text).groups()
    return int(calls), float(window)


# --- context --------------------------------------------------------------------------------------

@dataclass
class Context:
    quick: bool
    foreground: bool
    emit: callable  # Row -> None: print it and append it to the results file
    cache: dict = field(default_factory=dict)
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    def logdir(self, name: str) -> Path:
        path = WORK / self.stamp / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Outcome:
    """What one scenario run measured."""

    runs: list[dict]
    stats: dict
    sampler: Sampler
    timed_out: bool
    wall: float | None
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)
    logdir: Path | None = None

    @property
    def listed(self) -> int:
        return sum(r["campaigns_listed"] for r in self.runs)

    @property
    def synced(self) -> int:
        return sum(r["campaigns_synced"] for r in self.runs)

    @property
    def run_429s(self) -> int:
        return sum(r["rate_limited"] for r in self.runs)

    @property
    def fake_429s(self) -> int:
        return int(self.stats.get("rate_limited", 0))

    @property
    def max_window(self) -> int:
        return max(self.stats.get("max_calls_in_any_window", {}).values(), default=0)

    def peak(self) -> tuple[float, str]:
        return self.sampler.peak("syncer")

    def peak_text(self) -> str:
        mb, label = self.peak()
        return f"{mb:.0f} MB ({label})"

    def cpu_note(self) -> str:
        return (f"CPU: syncer {self.sampler.cpu('syncer'):.0f} s in {self.sampler.processes('syncer')} processes, "
                f"fake {self.sampler.cpu('fake'):.0f} s")


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


# --- running one account or a fleet ---------------------------------------------------------------

def _fake_platform(logdir: Path, sampler: Sampler, *, campaigns: int, rate_limit: str,
                   latency: float, **knobs) -> FakePlatform:
    """The bundled fake in its own process (it needs no database of its own), watched by the sampler."""
    fake = FakePlatform(logdir=logdir, env=base_env(database_url=f"sqlite:///{logdir}/unused.sqlite3",
                                                    platform_url="http://127.0.0.1:1"),
                        campaigns=campaigns, rate_limit=rate_limit, sync_latency=latency, max_page_size=PAGE_SIZE,
                        **knobs)
    sampler.watch(fake.proc, "fake")
    return fake


def run_single(ctx: Context, name: str, *, campaigns: int, rate_limit: str, latency: float,
               concurrency: int | None, deadline: float, env_overrides: dict | None = None,
               configured: str | None = None, dialect: str = "reference") -> Outcome:
    """One account, through `sync_campaigns --async --wait` and a running qcluster (or in the foreground).

    `rate_limit` is the fake platform's real budget; the account is configured with `configured` (the same
    unless given), and speaks `dialect`.
    """
    logdir = ctx.logdir(name)
    sampler = Sampler().start()
    fake = db = None
    try:
        knobs = {"dialect": dialect} if dialect != "reference" else {}
        fake = _fake_platform(logdir, sampler, campaigns=campaigns, rate_limit=rate_limit, latency=latency, **knobs)
        env = base_env(database_url="sqlite:///" + str(logdir / "db.sqlite3"), platform_url=fake.url,
                       AD_PLATFORM_RATE_LIMIT=configured or rate_limit, AD_PLATFORM_CLIENT_ID=f"bench-{name}",
                       AD_PLATFORM_KIND=dialect, **(env_overrides or {}))
        db = SqliteDatabase(logdir / "db.sqlite3", env, logdir)
        args = ["sync_campaigns"] + (["--concurrency", str(concurrency)] if concurrency else [])
        if not ctx.foreground:
            start_cluster("qcluster", env=env, logdir=logdir, sampler=sampler)
            args += ["--async", "--wait"]
        fake.reset()
        command = Proc("sync_campaigns", manage(*args), env=env, logdir=logdir)
        sampler.watch(command, "syncer")
        code = command.wait(deadline)
        timed_out = code is None
        runs, stats = db.runs(), fake.stats()
        wall = _wall(runs)
        notes = []
        if runs and runs[0]["started_at"] and runs[0]["created_at"]:
            notes.append(f"queue->start {(runs[0]['started_at'] - runs[0]['created_at']).total_seconds():.2f} s")
        if code not in (0, None):
            notes.append(f"sync_campaigns exit {code}: {_last_line(command.log_text())}")
        errors = _log_errors(logdir)
        if errors:
            notes.append(errors)
        return Outcome(runs, stats, sampler, timed_out, wall, code, notes, logdir)
    finally:
        Proc.stop_all()
        sampler.stop()
        if db is not None:
            db.drop()


def run_fleet(ctx: Context, name: str, *, accounts: int, campaigns: int, rate_limit: str, latency: float,
              backend: str, clusters: int, deadline: float, env_overrides: dict | None = None,
              database_from: Path | None = None, beside=None) -> Outcome:
    """`accounts` accounts with a budget each, queued at once on `clusters` qcluster processes.

    `database_from`: a SQLite file (migrated, with a history) to start from instead of an empty one;
    `beside(env, logdir)`: called once the runs are queued, to start something beside the fleet.
    """
    logdir = ctx.logdir(name)
    sampler = Sampler().start()
    db = None
    try:
        fake = _fake_platform(logdir, sampler, campaigns=campaigns, rate_limit=rate_limit, latency=latency)
        postgres = backend == "postgres"
        probe = base_env(database_url="sqlite:///" + str(logdir / "db.sqlite3"), platform_url=fake.url,
                         redis=postgres, **(env_overrides or {}))
        db = PostgresDatabase(probe, logdir) if postgres else SqliteDatabase(logdir / "db.sqlite3", probe, logdir)
        seeded = 0  # the last run of the history it starts from
        if database_from is not None:
            shutil.copyfile(database_from, db.path)
            seeded = max((r["id"] for r in db.runs()), default=0)
        env = {**probe, "DATABASE_URL": db.url}
        if postgres:
            redis_flush()
        for index in range(clusters):
            start_cluster(f"qcluster-{index}", env=env, logdir=logdir, sampler=sampler)
        fake.reset()
        setup = Proc("fleet-setup", [PYTHON, "-m", "tests.benchmarks.fleet_setup", "--accounts", str(accounts),
                                     "--url", fake.url, "--rate-limit", rate_limit], env=env, logdir=logdir)
        sampler.watch(setup, "syncer")
        if setup.wait(900) != 0:
            raise BenchError(f"fleet setup failed: {setup.log_text()[-2000:]}")
        enqueue_seconds = json.loads(setup.log_text().strip().splitlines()[-1])["enqueue_seconds"]
        if beside is not None:
            beside(env, logdir)
        started = time.monotonic()
        timed_out, read_errors = True, []
        most_connections = 0
        while time.monotonic() - started < deadline:
            try:
                runs = db.runs(seeded)
                if postgres:
                    most_connections = max(most_connections, db.connections())
            except Exception as error:
                read_errors.append(f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:120]}")
                time.sleep(1.0)
                continue
            if runs and all(r["status"] in TERMINAL for r in runs):
                timed_out = False
                break
            time.sleep(1.0)
        runs, stats = db.runs(seeded), fake.stats()
        db.attempts_save(logdir / "attempts.csv", seeded)
        finished = sum(1 for r in runs if r["status"] in TERMINAL)
        notes = [f"{finished}/{len(runs)} runs finished", *_fleet_timeline(runs), *_platform_timeline(stats),
                 f"enqueue took {enqueue_seconds:.1f} s", f"{clusters} qcluster x {q_workers(env)} workers"]
        if postgres:
            notes.append(f"PostgreSQL {db.version}, at most {most_connections} connections to it "
                         f"(max_connections {db.max_connections})")
        if read_errors:
            notes.append(f"{len(read_errors)} failed reads by the benchmark, e.g. {read_errors[0]}")
        errors = _log_errors(logdir)
        if errors:
            notes.append(errors)
        wall = _wall(runs) if not timed_out else None
        return Outcome(runs, stats, sampler, timed_out, wall, None, notes, logdir)
    finally:
        Proc.stop_all()
        sampler.stop()
        if db is not None:
            db.drop()


def _fleet_timeline(runs: list[dict]) -> list[str]:
    """When the runs were picked up, when their listings were stored and when they ended, from the first enqueue.

    A run's last call goes ten windows after its listing, so the last
    listing decides the fleet's time.
    """
    if not runs:
        return []
    t0 = min(r["created_at"] for r in runs)

    def spread(column: str) -> list[float]:
        return sorted((r[column] - t0).total_seconds() for r in runs if r[column])

    notes = []
    for column, label in (("started_at", "picked up"), ("prepared_at", "listing stored")):
        times = spread(column)
        if times:
            notes.append(f"{label}: median {times[len(times) // 2]:.1f} s, last {times[-1]:.1f} s")
    ends = spread("finished_at")
    if ends:
        notes.append(f"runs ended between {ends[0]:.1f} s and {ends[-1]:.1f} s (median {ends[len(ends) // 2]:.1f} s)")
    ran = sorted((r["finished_at"] - r["prepared_at"]).total_seconds() for r in runs
                 if r["finished_at"] and r["prepared_at"])
    if ran:
        notes.append(f"listing stored -> run ended: median {ran[len(ran) // 2]:.1f} s, most {ran[-1]:.1f} s")
    return notes


def _platform_timeline(stats: dict) -> list[str]:
    """What the platform saw of each account: its first call (the listing), its first window, its slots' reuse.

    A slot's calls chain: each goes a window (and what the pacing adds)
    after the last. An account's last call is ten reuses after its listing
    call, or nine after its first window's last call when that window took
    longer than a window, whichever is later.
    """
    firsts = sorted(stats.get("first_call_by_client", {}).values())
    first_windows = sorted(stats.get("first_window_by_client", {}).values())
    gaps = sorted(gap for gap in stats.get("reuse_gap_by_client", {}).values() if gap is not None)
    notes = []
    if firsts:
        after = [moment - firsts[0] for moment in firsts]
        notes.append(f"listing calls at the platform: median {after[len(after) // 2]:.1f} s, "
                     f"last {after[-1]:.1f} s after the first")
    if first_windows:
        notes.append(f"listing call to the first window's last call: median "
                     f"{first_windows[len(first_windows) // 2]:.1f} s, most {first_windows[-1]:.1f} s")
    if gaps:
        notes.append(f"a slot used again after: median {gaps[len(gaps) // 2]:.2f} s, most {gaps[-1]:.2f} s "
                     f"(window {stats.get('window_seconds', 0):g} s)")
    return notes


def _log_errors(logdir: Path) -> str:
    """How many WARNING/ERROR lines the product logged, and the commonest kind."""
    counts: dict[str, int] = {}
    for log in logdir.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            match = re.match(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+) (?:run=\S+ )?(.{0,60})", line)
            if match:
                key = f"{match.group(1)} {match.group(2)}: {re.sub(r'[0-9]+', 'N', match.group(3))}"
                counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ""
    top = max(counts, key=counts.get)
    return f"{sum(counts.values())} warning/error log lines, most: {counts[top]} x '{top}'"


def _wall(runs: list[dict]) -> float | None:
    if not runs or any(r["finished_at"] is None for r in runs):
        return None
    return (max(r["finished_at"] for r in runs) - min(r["created_at"] for r in runs)).total_seconds()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _path(ctx: Context, *, db: str = "SQLite + ORM broker", clusters: int = 1, fleet: bool = False) -> str:
    if fleet:
        return f"cluster: {clusters} qcluster, {db}"
    if ctx.foreground:
        return f"foreground sync_campaigns, {db.split(' +')[0]}"
    return f"cluster: sync_campaigns --async --wait, {clusters} qcluster, {db}"


def _verdict(ok: bool, outcome: Outcome) -> str:
    if outcome.timed_out:
        return "MISS (timed out)"
    return "PASS" if ok else "MISS"


def _synced_text(outcome: Outcome, total: int) -> str:
    fake = outcome.stats.get("synced_total", 0)
    return f"{outcome.synced}/{total}" + ("" if fake == outcome.synced else f" (fake saw {fake})")


def _r429_text(outcome: Outcome) -> str:
    return f"{outcome.run_429s} (fake {outcome.fake_429s})"


# --- the scenarios ------------------------------------------------------------------------------

def rate_bound(ctx: Context) -> None:
    """Time-scaled (10/6s): a regression guard that runs in a minute."""
    _rate_bound(ctx, "rate-bound", rate="10/6s", latency=0.2, target=1.03)


def rate_bound_real(ctx: Context) -> None:
    """The platform's real budget, 10/60s, and its 2 s calls: what a user waits, about ten minutes."""
    _rate_bound(ctx, "rate-bound-real", rate="10/60s", latency=2.0, target=1.005)


def _rate_bound(ctx: Context, name: str, *, rate: str, latency: float, target: float) -> None:
    campaigns = 100
    calls, window = parse_rate(rate)
    floor = rate_floor(campaigns, calls, window, latency)
    outcome = run_single(ctx, name, campaigns=campaigns, rate_limit=rate, latency=latency,
                         concurrency=None, deadline=2 * floor + 60)
    ratio = outcome.wall / floor if outcome.wall else None
    ok = (ratio is not None and ratio <= target and outcome.run_429s == 0 and outcome.fake_429s == 0
          and outcome.synced == campaigns and outcome.max_window <= calls)
    ctx.emit(Row(name, _path(ctx), f"{campaigns} campaigns, {rate}, {latency:g} s latency",
                 f"{floor:.1f} s", _fmt_s(outcome.wall), _ratio(ratio), _r429_text(outcome),
                 _synced_text(outcome, campaigns), outcome.peak_text(), f"<= {target:g} x floor, 0 429s, all synced",
                 _verdict(ok, outcome),
                 [f"{calls_needed(campaigns)} calls needed", f"max {outcome.max_window} calls in any {window:g} s",
                  *outcome.notes, outcome.cpu_note()]))


def latency_bound(ctx: Context) -> None:
    campaigns, latency, concurrency = (200 if ctx.quick else 1000), 2.0, 50
    floor = latency_floor(campaigns, concurrency, latency)
    outcome = run_single(ctx, "latency-bound", campaigns=campaigns, rate_limit="none", latency=latency,
                         concurrency=concurrency, deadline=10 * floor)
    ratio = outcome.wall / floor if outcome.wall else None
    ok = ratio is not None and ratio <= 1.10 and outcome.synced == campaigns
    concurrent = outcome.stats.get("concurrent_max", 0)
    ctx.emit(Row("latency-bound", _path(ctx), f"{campaigns:,} campaigns, no budget, {latency:g} s latency, "
                 f"concurrency {concurrency}", f"{floor:.1f} s", _fmt_s(outcome.wall), _ratio(ratio),
                 _r429_text(outcome), _synced_text(outcome, campaigns), outcome.peak_text(), "<= 1.10 x floor",
                 _verdict(ok, outcome),
                 [f"most syncs in flight at the fake: {concurrent}", *outcome.notes, outcome.cpu_note()]))


def _overhead_outcome(ctx: Context, campaigns: int) -> Outcome:
    if campaigns not in ctx.cache:
        ctx.cache[campaigns] = run_single(ctx, f"overhead-{campaigns}", campaigns=campaigns, rate_limit="none",
                                          latency=0.0, concurrency=None, deadline=60 + campaigns / 500 * 6)
    return ctx.cache[campaigns]


def overhead(ctx: Context) -> None:
    campaigns = 2000 if ctx.quick else 10_000
    outcome = _overhead_outcome(ctx, campaigns)
    rate = campaigns / outcome.wall if outcome.wall else None
    peak_mb, _ = outcome.peak()
    ok = rate is not None and rate >= 500 and peak_mb <= 200 and outcome.synced == campaigns
    ctx.emit(Row("overhead", _path(ctx), f"{campaigns:,} campaigns, no budget, no latency", "(none)",
                 f"{_fmt_s(outcome.wall)} = {rate:.0f} campaigns/s" if rate else _fmt_s(outcome.wall), "-",
                 _r429_text(outcome), _synced_text(outcome, campaigns), outcome.peak_text(),
                 ">= 500 campaigns/s, peak RSS <= 200 MB", _verdict(ok, outcome),
                 [*outcome.notes, outcome.cpu_note()]))


def growth(ctx: Context) -> None:
    sizes = (1000, 10_000) if ctx.quick else (1000, 10_000, 100_000)
    base_cost = None
    for campaigns in sizes:
        outcome = _overhead_outcome(ctx, campaigns)
        cost = outcome.wall / campaigns if outcome.wall else None
        if campaigns == sizes[0]:
            base_cost = cost
        last = campaigns == sizes[-1]
        ratio = cost / base_cost if cost and base_cost else None
        ok = ratio is not None and ratio <= 1.2 and outcome.synced == campaigns
        ctx.emit(Row(f"growth {campaigns:,}", _path(ctx), f"overhead at {campaigns:,} campaigns", "(none)",
                     f"{_fmt_s(outcome.wall)} = {cost * 1000:.2f} ms/campaign" if cost else _fmt_s(outcome.wall),
                     f"{_ratio(ratio)} x cost at {sizes[0]:,}", _r429_text(outcome),
                     _synced_text(outcome, campaigns), outcome.peak_text(),
                     f"cost/campaign at {sizes[-1]:,} <= 1.2 x at {sizes[0]:,}" if last else "-",
                     _verdict(ok, outcome) if last else ("-" if not outcome.timed_out else "MISS (timed out)"),
                     [*outcome.notes, outcome.cpu_note()]))


def _fleet(ctx: Context, name: str, *, backend: str, clusters: int, target: float, accounts: int = 100,
           rate: str = "10/6s", latency: float = 0.2) -> None:
    accounts, campaigns = (10 if ctx.quick else accounts), 100
    calls, window = parse_rate(rate)
    floor = rate_floor(campaigns, calls, window, latency)
    outcome = run_fleet(ctx, name, accounts=accounts, campaigns=campaigns, rate_limit=rate, latency=latency,
                        backend=backend, clusters=clusters, deadline=2 * floor + 300)
    ratio = outcome.wall / floor if outcome.wall else None
    total = accounts * campaigns
    ok = (ratio is not None and ratio <= target and outcome.run_429s == 0 and outcome.fake_429s == 0
          and outcome.synced == total and outcome.max_window <= calls)
    db = "PostgreSQL + Redis broker" if backend == "postgres" else "SQLite + ORM broker"
    measured = _fmt_s(outcome.wall) if outcome.wall else f"> {10 * floor:.0f} s"
    ctx.emit(Row(name, _path(ctx, db=db, clusters=clusters, fleet=True),
                 f"{accounts} accounts x {campaigns} campaigns, {rate} each, {latency:g} s latency",
                 f"{floor:.1f} s (one account)", measured, _ratio(ratio), _r429_text(outcome),
                 _synced_text(outcome, total), outcome.peak_text(), f"<= {target:.2f} x floor, 0 429s, all synced",
                 _verdict(ok, outcome),
                 [*outcome.notes, f"max {outcome.max_window} calls of one client in any {window:g} s",
                  outcome.cpu_note()]))


def fleet(ctx: Context) -> None:
    """Time-scaled (10/6s each): a regression guard."""
    _fleet(ctx, "fleet", backend="sqlite", clusters=1, target=1.08)


def scale_out(ctx: Context) -> None:
    """Time-scaled (10/6s each): a regression guard."""
    _fleet(ctx, "scale-out", backend="postgres", clusters=2, target=1.08)


def fleet_real(ctx: Context) -> None:
    """1,000 accounts at the real budget (10/60s each, 2 s calls) on PostgreSQL + Redis, two clusters."""
    _fleet(ctx, "fleet-real", backend="postgres", clusters=2, target=1.02, accounts=1000, rate="10/60s",
           latency=2.0)


def status_page(ctx: Context) -> None:
    runs, per_run = (100, 100) if ctx.quick else (1000, 1000)
    logdir = ctx.logdir("status-page")
    database = WORK / f"status-page-{runs}x{per_run}.sqlite3"  # seeded once, reused by later benchmark runs
    env = base_env(database_url=f"sqlite:///{database}", platform_url="http://127.0.0.1:1")
    sampler = Sampler().start()
    try:
        proc = Proc("status_page", [PYTHON, "-m", "tests.benchmarks.status_page", "--runs", str(runs),
                                    "--campaigns", str(per_run)], env=env, logdir=logdir)
        sampler.watch(proc, "syncer")
        code = proc.wait(3600)
        text = proc.log_text()
    finally:
        Proc.stop_all()
        sampler.stop()
    timings = re.findall(r"^(.+?)\s+([\d.]+)\s+([\d.]+)\s+(yes|NO)\s*$", text, re.MULTILINE)
    mb, label = sampler.peak("syncer")
    if not timings:
        ctx.emit(Row("status page", "Django test client", f"{runs:,} runs, {runs * per_run:,} attempts", "-",
                     "-", "-", "-", "-", f"{mb:.0f} MB", "p95 < 300 ms", "MISS (no result)",
                     [f"exit {code}: {_last_line(text)}"]))
        return
    worst = max(timings, key=lambda t: float(t[2]))
    ok = code == 0 and all(t[3] == "yes" for t in timings)
    slow = [f"{t[0].strip()} p95 {float(t[2]):.0f} ms" for t in timings if t[3] != "yes"]
    ctx.emit(Row("status page", "Django test client, SQLite", f"{runs:,} runs, {runs * per_run:,} attempts, "
                 f"{len(timings)} pages", "-", f"worst p95 {float(worst[2]):.0f} ms ({worst[0].strip()})", "-", "-",
                 "-", f"{mb:.0f} MB ({label})", "p95 < 300 ms on every page", "PASS" if ok else "MISS",
                 slow or ["p95s: " + ", ".join(f"{t[0].strip()} {float(t[2]):.0f}" for t in timings)]))


def metered(ctx: Context) -> None:
    """The metered dialect configured 10/6s on a platform that allows 6/6s: paced to what its headers say."""
    campaigns, configured, real, latency = 100, "10/6s", "6/6s", 0.2
    calls, window = parse_rate(real)
    floor = rate_floor(campaigns, calls, window, latency)
    outcome = run_single(ctx, "metered", campaigns=campaigns, rate_limit=real, configured=configured,
                         dialect="metered", latency=latency, concurrency=None, deadline=10 * floor)
    ratio = outcome.wall / floor if outcome.wall else None
    throttles = int(outcome.stats.get("throttled", 0))
    ok = (ratio is not None and ratio <= 1.05 and throttles <= 3 and outcome.synced == campaigns)
    ctx.emit(Row("metered", _path(ctx), f"{campaigns} campaigns, metered dialect, configured {configured}, "
                 f"real {real}, {latency:g} s latency", f"{floor:.1f} s (real budget)", _fmt_s(outcome.wall),
                 _ratio(ratio), f"{throttles} throttles", _synced_text(outcome, campaigns), outcome.peak_text(),
                 "<= 1.05 x the real floor, <= 3 throttles, all synced", _verdict(ok, outcome),
                 [f"max {outcome.max_window} calls in any {window:g} s", *outcome.notes, outcome.cpu_note()]))


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


SCENARIOS = {
    "rate-bound": rate_bound,
    "rate-bound-real": rate_bound_real,
    "latency-bound": latency_bound,
    "overhead": overhead,
    "growth": growth,
    "fleet": fleet,
    "scale-out": scale_out,
    "fleet-real": fleet_real,
    "status-page": status_page,
    "metered": metered,
}


def check_postgres() -> str | None:
    """None when PostgreSQL and Redis answer, else why not (the scale-out row says so)."""
    try:
        import psycopg
        import redis

        from tests.benchmarks.harness import PG_URL, REDIS_URL

        with psycopg.connect(f"{PG_URL}/postgres", connect_timeout=5):
            pass
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def run_quietly(args: list[str]) -> str:
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=30).stdout.strip()
