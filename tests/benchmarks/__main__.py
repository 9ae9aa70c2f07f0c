"""`python -m tests.benchmarks [--only rate-bound,overhead,...] [--quick] [--foreground]` (or `make bench`).

Runs each scenario against the bundled fake platform in its own process,
prints one row per scenario and appends it to tests/benchmarks/results.md.
Exit status 1 when a row misses its target.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

from tests.benchmarks import freshness, history_scenarios, scenarios
from tests.benchmarks.harness import WORK, BenchError, Proc, Row, cleanup, commit_line, machine_line
from tests.benchmarks.scenarios import Context, check_postgres, run_quietly

RESULTS = Path(__file__).resolve().parent / "results.md"
SCENARIOS = {**scenarios.SCENARIOS, **history_scenarios.SCENARIOS, **freshness.SCENARIOS}

PREAMBLE = """# Benchmark results

Appended by `python -m tests.benchmarks` (`make bench`); newest at the bottom. See tests/benchmarks/README.md.

- **Wall time** is read from the database: a run's `created_at` (when it was queued) to its
  `finished_at`; for a fleet, the first run's `created_at` to the last run's `finished_at`.
- **Rate-bound floor** (rate-bound, fleet, scale-out): a run needs C = ceil(n / 100) list calls
  (limit=100) + n sync calls. With N calls per sliding window of W s, call k (0-based) can leave
  no earlier than floor(k / N) * W after the first, so floor = floor((C - 1) / N) * W + L, with L
  the sync latency of the last call. 100 campaigns at 10/6s, 0.2 s: floor(100 / 10) * 6 + 0.2 = 60.2 s.
  A fleet's accounts have their own budgets and run side by side: its floor is one account's.
- **Latency-bound floor**: ceil(n / c) * L with c the concurrency (list calls have no latency):
  1,000 at 50 x 2 s = 40 s.
- **Overhead** has no floor: campaigns / wall. **Growth**: cost per campaign = wall / n, compared
  with the cost at 1,000.
- **429s**: the run's counter (the fake platform's count in brackets). **Peak RSS**: the highest
  VmHWM of any syncer process (command, qcluster and its workers), sampled from /proc every 0.5 s;
  the fake platform is not counted. CPU seconds come from /proc/<pid>/stat.
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated scenarios out of: {', '.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes for a smoke run (latency-bound 200, overhead 2,000, growth to 10,000, "
                             "fleets of 10 accounts, status page 100 x 100)")
    parser.add_argument("--foreground", action="store_true",
                        help="single-account scenarios run `sync_campaigns` in the foreground, without a cluster")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"file to append to (default {RESULTS})")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.names = names
    return args


def _line(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _one_run_at_a_time():
    """Two benchmark runs on one machine would measure each other: wait for the other to end."""
    lock = (WORK / ".lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(f"waiting for another benchmark run to end ({lock.read().strip() or 'unknown'})...",
              file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}: {' '.join(sys.argv[1:])}")
    lock.flush()
    return lock  # held until this process exits


def _on_term(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    WORK.mkdir(parents=True, exist_ok=True)
    lock = _one_run_at_a_time()  # noqa: F841 - held (open) until this process exits
    backends = "SQLite + django-q2 ORM broker"
    if "scale-out" in args.names:
        pg = run_quietly(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"]) or "?"
        redis = run_quietly(["redis-cli", "-h", "127.0.0.1", "INFO", "server"])
        redis_version = next((ln.split(":", 1)[1] for ln in redis.splitlines() if ln.startswith("redis_version")), "?")
        backends += f"; scale-out on PostgreSQL {pg.split()[0]} + Redis {redis_version.strip()} broker"
    header = [
        f"\n## {time.strftime('%Y-%m-%d %H:%M %Z')} · commit {commit_line()}",
        "",
        f"Machine: {machine_line()}. Storage/broker: {backends}.",
        f"Command: `python -m tests.benchmarks {' '.join(shlex.quote(a) for a in sys.argv[1:])}`".rstrip() + "  ",
        f"Logs: {WORK}/",
        "",
        _line(Row.HEADER),
        _line(["---"] * len(Row.HEADER)),
    ]
    if not args.results.exists():
        args.results.write_text(PREAMBLE)
    with args.results.open("a") as out:
        out.write("\n".join(header) + "\n")
    written = args.results.stat().st_size  # another run appending meanwhile gets our header again
    print("\n".join(header[:4]))
    print(_line(Row.HEADER))

    misses = 0

    def emit(row: Row) -> None:
        nonlocal misses, written
        misses += row.result.startswith("MISS")
        print(_line(row.cells()), flush=True)
        with args.results.open("a") as out:
            if out.tell() != written:
                out.write(f"\n{header[0].strip()} (continued)\n\n" + "\n".join(header[-2:]) + "\n")
            out.write(_line(row.cells()) + "\n")
            written = out.tell()

    ctx = Context(quick=args.quick, foreground=args.foreground, emit=emit)
    try:
        for name in args.names:
            print(f"# {name}: running...", file=sys.stderr, flush=True)
            started = time.monotonic()
            if name == "scale-out" and (why := check_postgres()):
                emit(Row(name, "-", "-", "-", "-", "-", "-", "-", "-", "-", "MISS (not run)",
                         [f"PostgreSQL/Redis unavailable: {why}"]))
                continue
            try:
                SCENARIOS[name](ctx)
            except Exception as error:
                traceback.print_exc()
                kind = "" if isinstance(error, BenchError) else f"{type(error).__name__}: "
                emit(Row(name, "-", "-", "-", "-", "-", "-", "-", "-", "-", "MISS (benchmark error)",
                         [(kind + str(error))[:300].replace("\n", " ")]))
            print(f"# {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: stopping every process started", file=sys.stderr)
        with args.results.open("a") as out:
            out.write("\n(interrupted)\n")
        return 130
    finally:
        Proc.stop_all()
        cleanup()
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
