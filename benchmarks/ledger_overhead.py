"""Benchmark ``ledger_overhead``: what a job ledger costs ``create_and_wait``.

1,000 ``create_and_wait`` calls, 64 at a time, against the load server
(``benchmarks/server.py``, a process of its own, far cheaper than any client)
whose created jobs are found completed at their 6th poll, with a poll hint of
50 ms: 7 requests per job whatever the machine's load, as OpenAI's 1 s hint
over a 6 s job. By a client:

- without a ledger;
- with an ``SQLiteLedger`` (``synchronous=FULL``, the default: each commit fsynced);
- with an ``SQLiteLedger`` with ``synchronous=NORMAL``;
- with a ``PostgresLedger`` on a throwaway PostgreSQL server (``tests/postgres_server.py``,
  fsync on: a commit's real cost is measured), a fresh database per run; left out,
  with the reason, where PostgreSQL or the ``postgres`` extra is not installed;
- the same with ``pacing=False``: the ledger without the fleet's shared rate
  budget, whose exchanges are the rest of the PostgreSQL figure.

Each measured run is a fresh client process that does a small warm-up of the
same work first; its CPU time (``time.process_time()``: every thread, the
ledger's included) is the figure, with the ratio to the run without a ledger
in the same repetition. Also reported: the ledger's row writes per job (a
write per state change: the intent, the id, each status). Goal: the ledger
adds under 10 % of the client's CPU.

    python -m benchmarks.ledger_overhead                                 # the table
    python -m benchmarks.ledger_overhead --output benchmarks/RESULTS.md  # and keep it
    python -m benchmarks.ledger_overhead --jobs 50 --reps 1              # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

JOBS = 1000
CONCURRENCY = 64
WARM_UP = 20
GOAL = 0.10
VARIANTS = {
    "no ledger": None,
    "SQLite ledger (synchronous=full)": "full",
    "SQLite ledger (synchronous=normal)": "normal",
    "PostgreSQL ledger": "postgresql",
    "PostgreSQL ledger, pacing=False": "postgresql, unpaced",
}
#: The variants the goal is checked on: the default settings of each backend.
CHECKED = ("full", "postgresql")
TESTS = Path(__file__).resolve().parent.parent / "tests"
BEGIN = "<!-- ledger_overhead -->"
END = "<!-- /ledger_overhead -->"


POLLS = 6  # the poll at which a created job is completed
KEY = "sk-bench-0123456789"


# -- one measured client run (a process of its own) ---------------------------------------


async def _jobs(
    base_url: str, key: str, jobs: int, ledger: Any, prefix: str, pacing: bool = True
) -> int:
    from asyncvideos import AsyncVideos

    options: dict[str, Any] = {} if ledger is None else {"ledger": ledger}
    if not pacing:
        options["pacing"] = False
    gate = asyncio.Semaphore(CONCURRENCY)
    failed = 0

    async def one(n: int) -> None:
        nonlocal failed
        async with gate:
            video = await videos.create_and_wait(
                f"a paper boat, take {n}", idempotency_key=f"{prefix}-{n}"
            )
            failed += not video.is_completed

    async with AsyncVideos(api_key=key, base_url=base_url, **options) as videos:
        await asyncio.gather(*(one(n) for n in range(jobs)))
    return failed


def _client(
    base_url: str, key: str, jobs: int, ledger: str | None, pacing: bool = True
) -> dict[str, float]:
    """Warm up, then measure one run; the figures as a dict. ``ledger``: None, a
    SQLite ``synchronous`` setting, or a ``postgresql://`` URL (its database fresh)."""
    from asyncvideos.ledger import LedgerStore, SQLiteLedger, open_ledger

    folder = Path(tempfile.mkdtemp(prefix="ledger-bench-"))

    def made(name: str) -> LedgerStore | None:
        if ledger is None:
            return None
        if ledger.startswith("postgresql://"):
            return open_ledger(ledger)  # the warm-up's keys and the run's differ
        return SQLiteLedger(folder / f"{name}.db", synchronous=ledger)  # type: ignore[arg-type]

    asyncio.run(_jobs(base_url, key, WARM_UP, made("warm"), "warm", pacing))
    measured = made("measured")
    gc.collect()
    gc.freeze()
    cpu, loop, wall = time.process_time(), time.thread_time(), time.perf_counter()
    failed = asyncio.run(_jobs(base_url, key, jobs, measured, "measured", pacing))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    loop = time.thread_time() - loop  # this thread ran the event loop
    figures = {"cpu": cpu, "loop thread": loop, "wall": wall, "failed": failed}
    grouped = getattr(measured, "grouped_writes", None)
    if grouped is not None:  # the PostgreSQL ledger's statements of record/note
        figures["grouped statements"] = grouped.statements / jobs
        figures["grouped writes"] = grouped.writes / jobs
        figures["grouped begins"] = grouped.begins / jobs
    budgets = getattr(measured, "rate_budgets", None)
    if budgets is not None:  # the fleet's rate budget's exchanges
        figures["budget exchanges"] = budgets.exchanges / jobs
    return figures


# -- the driver ------------------------------------------------------------------------------


def _measure(
    server: dict[str, str], jobs: int, ledger: str | None, pacing: bool = True
) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.ledger_overhead",
        "--client",
        json.dumps({**server, "jobs": jobs, "ledger": ledger, "pacing": pacing}),
    ]
    # One hash seed for every run: the layout of dicts and sets then stays the same from
    # run to run, which narrows the spread of a variant's runs (the no-ledger runs of
    # one session: 2.44-2.80 s with it, 2.11-2.89 s without).
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _writes_per_job(server: dict[str, str], jobs: int) -> float:
    """The ledger's writes per job, counted by a wrapper in a run of its own (not timed)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.ledger_overhead",
            "--count-writes",
            json.dumps({**server, "jobs": jobs}),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _count_writes(base_url: str, key: str, jobs: int) -> float:
    from collections.abc import Collection

    from asyncvideos.ledger import Change, Entry, Intent, SQLiteLedger, State

    class Counted(SQLiteLedger):
        writes = 0

        async def begin(self, intent: Intent, *, owner: str) -> tuple[Entry, bool]:
            Counted.writes += 1
            return await super().begin(intent, owner=owner)

        async def claim(self, key: str, **options: Any) -> Entry | None:
            Counted.writes += 1
            return await super().claim(key, **options)

        async def update(
            self, key: str, change: Change, *, states: Collection[State], owner: str | None = None
        ) -> Entry | None:
            Counted.writes += 1
            return await super().update(key, change, states=states, owner=owner)

        async def record(
            self, key: str, change: Change, *, states: Collection[State], owner: str | None = None
        ) -> bool:
            Counted.writes += 1
            return await super().record(key, change, states=states, owner=owner)

        async def note(self, key: str, change: Change, *, states: Collection[State]) -> None:
            Counted.writes += 1
            await super().note(key, change, states=states)

    folder = Path(tempfile.mkdtemp(prefix="ledger-count-"))
    asyncio.run(_jobs(base_url, key, jobs, Counted(folder / "count.db"), "count"))
    return Counted.writes / jobs


def _postgres(stack: contextlib.ExitStack) -> Callable[[], str] | str:
    """A throwaway PostgreSQL server (fsync on), and a maker of fresh databases on
    it; or why there is none."""
    sys.path.insert(0, str(TESTS))
    from postgres_server import PostgresServer, unavailable

    reason = unavailable()
    if reason is None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            reason = "the postgres extra is not installed (pip install 'asyncvideos[postgres]')"
    if reason is not None:
        return reason
    server = stack.enter_context(PostgresServer(fsync=True))
    return server.create_database


def _run(reps: int, jobs: int) -> tuple[dict[str, list[dict[str, float]]], float, str | None]:
    from . import server as load_server

    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    with contextlib.ExitStack() as stack:
        process = stack.enter_context(load_server.start())
        server = {"base_url": process.base_url(POLLS), "key": KEY}
        postgres = _postgres(stack)
        skipped = postgres if isinstance(postgres, str) else None
        names = [
            name
            for name in VARIANTS
            if skipped is None or not str(VARIANTS[name]).startswith("postgresql")
        ]
        for name in [name for name in VARIANTS if name not in names]:
            del results[name]
        for rep in range(reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]  # rotated
            for name in order:
                ledger = VARIANTS[name]
                pacing = ledger != "postgresql, unpaced"
                if ledger is not None and ledger.startswith("postgresql"):
                    assert not isinstance(postgres, str)
                    ledger = postgres()
                figures = _measure(server, jobs, ledger, pacing)
                results[name].append(figures)
                print(
                    f"rep {rep + 1}/{reps} {name}: {figures['cpu']:.2f} s CPU, "
                    f"{figures['wall']:.2f} s wall, {int(figures['failed'])} failed"
                    + "".join(
                        f", {label} {value:.2f}/job"
                        for label, value in figures.items()
                        if label not in ("cpu", "loop thread", "wall", "failed")
                    ),
                    file=sys.stderr,
                    flush=True,
                )
        writes = _writes_per_job(server, min(jobs, 200))
    return results, writes, skipped


# -- the report --------------------------------------------------------------------------


def _cell(values: list[float], fmt: str) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return format(middle, fmt)
    return f"{format(middle, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def report(
    results: dict[str, list[dict[str, float]]],
    writes: float,
    jobs: int,
    seconds: float,
    *,
    load: tuple[str, str],
    skipped: str | None = None,
) -> str:
    import aiohttp

    from asyncvideos import __version__

    reps = len(results["no ledger"])
    base = [run["cpu"] for run in results["no ledger"]]
    lines = [
        BEGIN,
        f"## ledger_overhead: create_and_wait for {jobs:,} jobs, with and without a ledger",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}; whole run: {seconds:.0f} s; {reps} "
        "repetition(s), cells are median (min-max); ratios pair runs of one repetition",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, aiohttp {aiohttp.__version__}, asyncvideos {__version__}",
        f"- load average (/proc/loadavg) before / after: {load[0]} / {load[1]}",
        f"- command: `python -m benchmarks.ledger_overhead --reps {reps} --jobs {jobs} "
        "--output benchmarks/RESULTS.md`",
        f"- {CONCURRENCY} calls at a time against the load server in its own process (a job "
        f"completed at its {POLLS}th poll, poll hint 50 ms: {POLLS + 1} requests per job); each "
        f"run a fresh client process after a warm-up of {WARM_UP} jobs; CPU is the client "
        "process's, every thread (the event loop's, and the SQLite ledger's own), each run "
        "with PYTHONHASHSEED=0; PostgreSQL is a throwaway server on "
        "loopback, fsync on, a fresh database per run (its own CPU is not the client's)",
        "- the ledger's writes per job (begin, claims, updates, records, notes; counted in a "
        f"run of its own, SQLite): {writes:.2f}",
    ]
    if skipped is not None:
        lines.append(f"- PostgreSQL left out: {skipped}")
    lines += [
        "",
        "| client | CPU s | of which the event loop's thread | of which other threads "
        "| CPU vs no ledger | wall s | jobs failed |",
        "|---|---|---|---|---|---|---|",
    ]
    goals: list[str] = []
    for name, runs in results.items():
        ratios = [run["cpu"] / plain for run, plain in zip(runs, base, strict=True)]
        if VARIANTS[name] in CHECKED:
            middle = statistics.median(ratios) - 1
            verdict = "PASS" if middle < GOAL else "MISS"
            goals.append(
                f"| {name}: CPU overhead < {GOAL:.0%} | {middle:+.1%} "
                f"({min(ratios) - 1:+.1%} to {max(ratios) - 1:+.1%}) | {verdict} |"
            )
        loop = [r.get("loop thread", r["cpu"]) for r in runs]
        others = [max(r["cpu"] - in_loop, 0.0) for r, in_loop in zip(runs, loop, strict=True)]
        lines.append(
            f"| {name} | {_cell([r['cpu'] for r in runs], '.2f')} | {_cell(loop, '.2f')} "
            f"| {_cell(others, '.2f')} | {_cell(ratios, '.3f')}x "
            f"| {_cell([r['wall'] for r in runs], '.2f')} "
            f"| {_cell([r['failed'] for r in runs], '.0f')} |"
        )
    labels = ("grouped begins", "grouped writes", "grouped statements", "budget exchanges")
    counts = [
        f"{name}: "
        + ", ".join(
            f"{label} per job {_cell([run[label] for run in runs], '.2f')}"
            for label in labels
            if label in runs[0]
        )
        for name, runs in results.items()
        if runs and labels[0] in runs[0]
    ]
    if counts:
        lines += [
            "",
            "What the PostgreSQL ledger sent (`begin`, `record` and `note` grouped into "
            "statements; the fleet budget's exchanges): " + "; ".join(counts) + ".",
        ]
    lines += [
        "",
        "| goal (default settings; median of the repetitions, min to max) | value | result |",
        "|---|---|---|",
        *goals,
        f"| at most one write per state change | {writes:.2f} writes per job | "
        f"{'PASS' if writes <= 4.0 else 'MISS'} |",
        END,
    ]
    return "\n".join(lines) + "\n"


def _load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists()
        else "n/a"
    )


def _write(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path``, or append it."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger_overhead")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (5)")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"jobs per run ({JOBS})")
    parser.add_argument("--output", type=Path, help="write the section into this Markdown file")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--count-writes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        given = json.loads(args.client)
        figures = _client(
            given["base_url"], given["key"], given["jobs"], given["ledger"], given["pacing"]
        )
        print(json.dumps(figures))
        return 0
    if args.count_writes:
        given = json.loads(args.count_writes)
        print(_count_writes(given["base_url"], given["key"], given["jobs"]))
        return 0
    began, before = time.perf_counter(), _load()
    results, writes, skipped = _run(args.reps, args.jobs)
    section = report(
        results,
        writes,
        args.jobs,
        time.perf_counter() - began,
        load=(before, _load()),
        skipped=skipped,
    )
    print(section)
    if args.output:
        _write(args.output, section)
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "writes_per_job": writes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
