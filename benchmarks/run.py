"""Run the benchmarks: ``python -m benchmarks [--quick] [--only SCENARIO] [--output FILE]``.

Starts the load server in its own process, runs each scenario's clients
interleaved for a warm-up and then ``reps`` repetitions, prints a table of
medians (min-max) with ratios to the floor and to openai computed pair by
pair, and the targets with PASS or MISS. ``--output`` writes the same as
Markdown (text after a ``<!-- notes -->`` line in that file is kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python benchmarks/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import clients, scenarios, server
from benchmarks.scenarios import SCENARIOS, Context, Metric, Scenario, Sizes

NOTES_MARKER = "<!-- notes -->"

# scenario -> client -> metric -> values, one per repetition (warm-ups dropped)
Results = dict[str, dict[str, dict[str, list[float]]]]


@dataclass
class Target:
    scenario: str
    text: str
    check: Callable[[Results], tuple[float | None, bool | None]]
    #: The clients the check compares: it is shown only where they all ran.
    clients: tuple[str, ...] = ()


@dataclass
class Run:
    sizes: Sizes
    results: Results = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: The 1-minute load average before and after each scenario.
    load: dict[str, tuple[float, float]] = field(default_factory=dict)


def pair_ratios(results: Results, scenario: str, metric: str, a: str, b: str) -> list[float]:
    """``a / b`` for each repetition in which both ran."""
    by_client = results.get(scenario, {})
    if a not in by_client or b not in by_client:
        return []
    return [x / y for x, y in zip(by_client[a][metric], by_client[b][metric], strict=False) if y]


def speed_ratios(results: Results, scenario: str, metric: Metric, a: str, b: str) -> list[float]:
    """How many times ``b``'s cost or rate ``a`` achieves, repetition by repetition:
    above 1 is better than ``b`` (for CPU, ``b``'s CPU over ``a``'s)."""
    if metric.higher_is_better:
        return pair_ratios(results, scenario, metric.key, a, b)
    return pair_ratios(results, scenario, metric.key, b, a)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _speed(scenario: str, client: str, ref: str, bound: float) -> Target:
    def check(results: Results) -> tuple[float | None, bool | None]:
        value = _median(pair_ratios(results, scenario, "cpu", ref, client))
        return value, None if value is None else value >= bound

    return Target(scenario, f"{client}: CPU speed ≥ {bound}x {ref}", check, (client, ref))


def _cpu_at_most(scenario: str, client: str, ref: str, bound: float) -> Target:
    def check(results: Results) -> tuple[float | None, bool | None]:
        value = _median(pair_ratios(results, scenario, "cpu", client, ref))
        return value, None if value is None else value <= bound

    return Target(scenario, f"{client}: CPU ≤ {bound}x {ref}", check, (client, ref))


def _rate_at_least(scenario: str, client: str, ref: str, bound: float) -> Target:
    def check(results: Results) -> tuple[float | None, bool | None]:
        value = _median(pair_ratios(results, scenario, "rate", client, ref))
        return value, None if value is None else value >= bound

    return Target(scenario, f"{client}: rate ≥ {bound}x {ref}", check, (client, ref))


def _at_most_ratio(scenario: str, metric: str, ref: str, bound: float) -> Target:
    def check(results: Results) -> tuple[float | None, bool | None]:
        value = _median(pair_ratios(results, scenario, metric, "asyncvideos", ref))
        return value, None if value is None else value <= bound

    return Target(scenario, f"{metric} ≤ {bound}x {ref}", check, ("asyncvideos", ref))


def _at_most(
    scenario: str, metric: str, bound: float, text: str, client: str = "asyncvideos"
) -> Target:
    def check(results: Results) -> tuple[float | None, bool | None]:
        values = results.get(scenario, {}).get(client, {}).get(metric)
        if not values:
            return None, None
        worst = max(values)
        return worst, worst <= bound

    return Target(scenario, f"{client}: {text}", check, (client,))


PLAIN, FAST = "asyncvideos", "asyncvideos+speedups"


def targets(sizes: Sizes) -> list[Target]:
    """The goals of issue 22 (issue 16's, moved): ratios of client CPU, medians of
    pair ratios. retrieve against openai is issue 16's, kept to be read."""
    schedule = float(sizes.wait_jobs * server.DONE_AT)
    return [
        _speed("list_all", PLAIN, "floor", 0.75),
        _speed("list_all", FAST, "floor", 0.95),
        _speed("list_all", PLAIN, "openai", 10.0),
        _speed("list_all", FAST, "openai", 10.0),
        _speed("retrieve", PLAIN, "floor", 0.85),
        _speed("retrieve", FAST, "floor", 0.9),
        _speed("retrieve", PLAIN, "openai", 10.0),
        _speed("retrieve", FAST, "openai", 10.0),
        _cpu_at_most("wait_many", PLAIN, "floor", 1.1),
        _cpu_at_most("wait_many", FAST, "floor", 1.1),
        _at_most("wait_many", "requests", schedule, "requests ≤ what the schedule needs"),
        _at_most("wait_many", "requests", schedule, "requests ≤ what the schedule needs", FAST),
        _rate_at_least("download", PLAIN, "floor", 0.95),
        _at_most("download", "rss", 32.0, "peak RSS growth < 32 MiB (worst rep)"),
        _at_most("memory", "rss", 32.0, "peak RSS growth < 32 MiB (worst rep)"),
        _at_most_ratio("import", "cumulative", "floor", 1.25),
    ]


# -- running ---------------------------------------------------------------------


def rotated(names: Sequence[str], rep: int) -> list[str]:
    """The client order of repetition ``rep``: each client leads in turn."""
    k = rep % len(names) if names else 0
    return [*names[k:], *names[:k]]


def run_scenario(ctx: Context, scenario: Scenario, names: Sequence[str], run: Run) -> None:
    reps, warmup = scenario.reps(ctx.sizes), scenario.warmup(ctx.sizes)
    per_client: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for rep in range(warmup + reps):
        for name in rotated(names, rep):
            metrics = scenario.measure(ctx, name)
            if rep < warmup:
                continue
            for key, value in metrics.items():
                per_client[name].setdefault(key, []).append(value)
        label = "warm-up" if rep < warmup else f"rep {rep - warmup + 1}/{reps}"
        print(f"  {scenario.name}: {label} done", file=sys.stderr, flush=True)
    run.results[scenario.name] = per_client


def all_scenarios() -> dict[str, Scenario]:
    """The scenarios of ``scenarios.py``, and those of any other module in this
    package that defines a ``SCENARIOS`` dict of ``Scenario`` (other
    benchmarks plug in that way)."""
    found = dict(SCENARIOS)
    for module in extra_modules():
        found.update(getattr(module, "SCENARIOS", {}))
    return found


_CORE = {"__main__", "clients", "run", "scenarios", "server"}


def extra_modules() -> list[Any]:
    import importlib
    import pkgutil

    import benchmarks

    modules = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if info.name in _CORE or info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"benchmarks.{info.name}"))
    return modules


def run_all(
    sizes: Sizes, only: Sequence[str] = (), client_names: Sequence[str] | None = None
) -> Run:
    names = list(client_names or clients.available_clients())
    every = all_scenarios()
    chosen = [every[name] for name in (only or SCENARIOS)]
    run = Run(sizes)
    start = time.perf_counter()
    # Files go to memory (tmpfs) where the machine has it: the download scenario
    # measures the client, and a disk's writeback of one client's gigabyte would
    # be billed to whichever client writes next.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with (
        tempfile.TemporaryDirectory(prefix="asyncvideos-bench-", dir=shm) as tmp,
        server.start() as srv,
    ):
        ctx = Context(srv, sizes, Path(tmp))
        for scenario in chosen:
            print(f"{scenario.name}: {scenarios.title(scenario, sizes)}", file=sys.stderr)
            allowed = scenario.clients
            these = [n for n in names if allowed is None or n in allowed]
            for variant in scenario.variants:
                if variant == "asyncvideos+prefetch" and not clients.prefetch_supported():
                    continue
                if variant.split("+")[0] in these:
                    these.insert(these.index(variant.split("+")[0]) + 1, variant)
            began = time.perf_counter()
            load_before = os.getloadavg()[0]
            run_scenario(ctx, scenario, these, run)
            run.load[scenario.name] = (load_before, os.getloadavg()[0])
            print(f"  {scenario.name}: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    run.seconds = time.perf_counter() - start
    return run


# -- reporting -------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": _version("aiohttp"),
        "openai": _version("openai"),
        "msgspec": _version("msgspec"),
        "asyncvideos": _version("asyncvideos"),
        "date": datetime.date.today().isoformat(),
    }


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _ratio_cell(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def scenario_table(run: Run, scenario: Scenario) -> list[str]:
    results = run.results[scenario.name]
    primary = scenario.metrics[0]
    # CPU speed: the reference's CPU time over this client's (above 1: faster).
    what = "CPU speed" if primary.key == "cpu" else primary.label
    header = [
        "client",
        *(m.label for m in scenario.metrics),
        f"{what} vs floor",
        f"{what} vs openai",
    ]
    lines = [
        f"### {scenario.name}: {scenarios.title(scenario, run.sizes)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, metrics in results.items():
        cells = [name]
        cells += [_cell(metrics.get(m.key, []), m.fmt) for m in scenario.metrics]
        for ref in ("floor", "openai"):
            if name == ref:
                cells.append("1.00x")
            elif primary.key == "cpu":
                ratios = speed_ratios(run.results, scenario.name, primary, name, ref)
                cells.append(_ratio_cell(ratios))
            else:
                cells.append(
                    _ratio_cell(pair_ratios(run.results, scenario.name, primary.key, name, ref))
                )
        lines.append("| " + " | ".join(cells) + " |")
    load = run.load.get(scenario.name)
    if load is not None:
        lines += ["", f"Load average (1 min) before / after: {load[0]:.1f} / {load[1]:.1f}."]
    lines.append("")
    return lines


def target_table(run: Run) -> list[str]:
    lines = ["| scenario | target | median | result |", "|---|---|---|---|"]
    for target in targets(run.sizes):
        ran = run.results.get(target.scenario)
        if ran is None or not all(client in ran for client in target.clients):
            continue
        value, passed = target.check(run.results)
        shown = "-" if value is None else f"{value:,.2f}"
        verdict = "n/a" if passed is None else ("PASS" if passed else "MISS")
        lines.append(f"| {target.scenario} | {target.text} | {shown} | {verdict} |")
    lines.append("")
    return lines


def report(run: Run, command: str) -> str:
    info = machine()
    loads = [value for pair in run.load.values() for value in pair]
    busy = (
        f"- load average (1 min) seen between scenarios: {min(loads):.1f}-{max(loads):.1f} "
        f"on {info['cores']} cores"
        if loads
        else "- load average: not recorded"
    )
    every = all_scenarios()
    lines = [
        "# Benchmark results",
        "",
        f"- date: {info['date']}; whole run: {run.seconds:.0f} s",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['os']}",
        busy,
        f"- Python {info['python']}, aiohttp {info['aiohttp']}, openai {info['openai']}, "
        f"msgspec {info['msgspec']}, asyncvideos {info['asyncvideos']}",
        f"- command: `{command}`",
        f"- repetitions: {run.sizes.reps} after {run.sizes.warmup} warm-up "
        f"(download {run.sizes.download_reps}, memory {run.sizes.memory_reps}, "
        f"import {run.sizes.import_reps}), the client order rotated every repetition; "
        "each measured run is its own process (warmed up, then `gc.collect(); gc.freeze()`). "
        "Cells are median (min-max). The primary figure is client CPU time "
        "(`process_time`); *CPU speed vs X* is X's CPU time over the client's, "
        "computed pair by pair within a repetition, then the median taken "
        "(above 1: less CPU than X).",
        "",
        "## Targets",
        "",
        *target_table(run),
        "## Scenarios",
        "",
    ]
    for name in run.results:
        lines += scenario_table(run, every[name])
    return "\n".join(lines)


def write_report(text: str, output: Path) -> None:
    kept = ""
    if output.exists():
        old = output.read_text()
        if NOTES_MARKER in old:
            kept = old[old.index(NOTES_MARKER) :]
    output.write_text(text + "\n" + (kept or NOTES_MARKER + "\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="asyncvideos benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, fewer repetitions")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="run this scenario (repeatable; --list shows them)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SIZE=N",
        help="override one size, e.g. --set reps=3 --set list_jobs=20000",
    )
    parser.add_argument(
        "--clients", help="comma-separated subset of " + ",".join(clients.ALL_CLIENTS)
    )
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(scenarios.run_child(json.loads(args.child))))
        return 0
    every = all_scenarios()
    if args.list:
        for name, scenario in every.items():
            default = "" if name in SCENARIOS else "  (only with --only)"
            print(f"{name}: {scenarios.title(scenario, scenarios.FULL)}{default}")
        for module in extra_modules():
            if not hasattr(module, "SCENARIOS"):
                short = module.__name__.rsplit(".", 1)[-1]
                print(f"{short}: standalone, python -m {module.__name__}")
        return 0
    unknown = [name for name in args.only if name not in every]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; --list shows them")
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in sizes.__dataclass_fields__ or not value:
            parser.error(f"--set {item}: expected SIZE=N with SIZE one of {sorted(sizes.__dict__)}")
        sizes = dataclasses.replace(sizes, **{key: type(getattr(sizes, key))(value)})
    names = args.clients.split(",") if args.clients else None
    run = run_all(sizes, args.only, names)
    command = "python -m benchmarks" + " ".join(["", *(argv if argv is not None else sys.argv[1:])])
    text = report(run, command)
    print(text)
    if args.output:
        write_report(text, args.output)
    if args.json:
        numbers = {"machine": machine(), "results": run.results, "load": run.load}
        args.json.write_text(json.dumps(numbers, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
