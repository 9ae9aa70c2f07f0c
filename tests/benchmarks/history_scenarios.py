"""Issue 14's benchmarks on a long history (tests/benchmarks/history.py): the /metrics scrape, and a prune of
1,000,000 attempts beside a running fleet sync, against the same fleet alone in the same benchmark run."""
from __future__ import annotations

import re
import shutil
import sqlite3
import time
from pathlib import Path

from tests.benchmarks.harness import PYTHON, WORK, BenchError, Proc, Row, base_env, manage
from tests.benchmarks.scenarios import Context, _fmt_s, _last_line, parse_rate, rate_floor, run_fleet

HISTORY = WORK / "history-100x100x100.sqlite3"  # seeded once, reused by later benchmark runs
METRICS_TOKEN = "bench-metrics-token-0123456789abcdef"
PRUNE_TARGET = 1.02  # the fleet with a prune beside it, against the fleet alone


def _history(ctx: Context, accounts: int) -> Path:
    """The seeded history database (seeding it the first time: about a minute)."""
    path = HISTORY.with_name(f"history-{accounts}x100x100.sqlite3")
    logdir = ctx.logdir("history-seed")
    seed = Proc("history-seed", [PYTHON, "-m", "tests.benchmarks.history", "seed", "--accounts", str(accounts)],
                env=base_env(database_url=f"sqlite:///{path}", platform_url="http://127.0.0.1:1"), logdir=logdir)
    if seed.wait(1800) != 0:
        raise BenchError(f"seeding the history failed: {_last_line(seed.log_text())}")
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one file, to copy
    finally:
        connection.close()
    return path


def metrics_scrape(ctx: Context) -> None:
    accounts = 10 if ctx.quick else 100
    database = _history(ctx, accounts)
    env = base_env(database_url=f"sqlite:///{database}", platform_url="http://127.0.0.1:1",
                   METRICS_TOKEN=METRICS_TOKEN)
    proc = Proc("metrics-scrape", [PYTHON, "-m", "tests.benchmarks.history", "scrape"], env=env,
                logdir=ctx.logdir("metrics-scrape"))
    code = proc.wait(600)
    match = re.search(r"^metrics scrape\s+([\d.]+)\s+([\d.]+)\s+(yes|NO)\s*$", proc.log_text(), re.MULTILINE)
    work = f"{accounts} accounts, {accounts * 100:,} runs, {accounts * 10_000:,} attempts"
    if not match:
        ctx.emit(Row("metrics", "Django test client, SQLite", work, "-", "-", "-", "-", "-", "-", "p95 <= 300 ms",
                     "MISS (no result)", [f"exit {code}: {_last_line(proc.log_text())}"]))
        return
    p50, p95 = float(match.group(1)), float(match.group(2))
    ctx.emit(Row("metrics", "Django test client, SQLite, bearer token", work, "-", f"p95 {p95:.0f} ms", "-", "-",
                 "-", "-", "p95 <= 300 ms", "PASS" if code == 0 and match.group(3) == "yes" else "MISS",
                 [f"p50 {p50:.0f} ms", "30 scrapes after 2 to warm up"]))


def prune_beside_fleet(ctx: Context) -> None:
    accounts, campaigns, rate, latency = (10 if ctx.quick else 100), 100, "10/6s", 0.2
    fleet_start = WORK / "prune-fleet-start.sqlite3"
    shutil.copyfile(_history(ctx, accounts), fleet_start)
    connection = sqlite3.connect(fleet_start)
    try:  # the history's one running run would be resumed by the watchdog: an ended run, like the others
        with connection:
            connection.execute("UPDATE campaigns_syncattempt SET status = 'cancelled' WHERE status = 'pending'")
            connection.execute("UPDATE campaigns_syncrun SET status = 'cancelled' WHERE status = 'running'")
    finally:
        connection.close()
    floor = rate_floor(campaigns, *parse_rate(rate), latency)
    fleet = {"accounts": accounts, "campaigns": campaigns, "rate_limit": rate, "latency": latency,
             "backend": "sqlite", "clusters": 1, "deadline": 10 * floor, "database_from": fleet_start}
    alone = run_fleet(ctx, "prune-fleet-alone", **fleet)
    prune: dict = {}

    def start_prune(env: dict[str, str], logdir: Path) -> None:
        prune["started"] = time.time()
        prune["proc"] = Proc("prune_history", manage("prune_history"), env=env, logdir=logdir)

    beside = run_fleet(ctx, "prune-fleet-beside", **fleet, beside=start_prune)
    ended = time.time()
    ratio = beside.wall / alone.wall if beside.wall and alone.wall else None
    pruned = _last_line(prune["proc"].log_path.read_text()) if "proc" in prune else "not started"
    # The prune rests nine tenths of its time (syncer/retention.py), so it may outlast the fleet: the target is
    # the fleet's time, not the prune's.
    ok = (ratio is not None and ratio < PRUNE_TARGET and "proc" in prune
          and beside.synced == alone.synced == accounts * campaigns and beside.run_429s == 0)
    pruned = pruned if pruned.startswith("pruned ") else ""
    ctx.emit(Row("prune beside fleet", "cluster: 1 qcluster, SQLite + ORM broker; manage.py prune_history beside",
                 f"the fleet ({accounts} x {campaigns}, {rate}) on a history of {accounts * 10_000:,} attempts, "
                 "alone then with the prune", f"fleet alone {_fmt_s(alone.wall)}", _fmt_s(beside.wall),
                 "-" if ratio is None else f"{ratio:.3f}", f"{beside.run_429s} (fake {beside.fake_429s})",
                 f"{beside.synced}/{accounts * campaigns}", beside.peak_text(),
                 f"< {PRUNE_TARGET:.2f} x the fleet alone",
                 "PASS" if ok else "MISS",
                 [*([pruned] if pruned else []), *_prune_time(prune, ended), *beside.notes[1:5],
                  f"alone: {'; '.join(alone.notes[1:5])}"]))


def _prune_time(prune: dict, ended: float) -> list[str]:
    """How long the prune took (its log's last write), or that it was still going when the fleet ended."""
    if "proc" not in prune:
        return []
    proc = prune["proc"]
    if proc.process.returncode != 0:
        return [f"the prune was still going when the fleet ended ({ended - prune['started']:.0f} s after it began; "
                "stopped then)"]
    return [f"the prune took {proc.log_path.stat().st_mtime - prune['started']:.0f} s beside the fleet"]


SCENARIOS = {"metrics": metrics_scrape, "prune-beside-fleet": prune_beside_fleet}

