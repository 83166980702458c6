"""Run the benchmarks: ``python -m benchmarks [--quick] [--only SCENARIO] [--output FILE]``.

Starts the load server in its own process, runs each scenario's clients
interleaved for a warm-up and then ``reps`` repetitions, prints a table of
medians (min-max) with ratios to the floor and to openai computed pair by
pair, and the targets with PASS or MISS. ``--output`` writes the same as
Markdown (text after a ``<!-- notes -->`` line in that file is kept).
"""

from __future__ import annotations

import argparse
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

if __package__ in (None, ""):  # run as ``python benchmarks/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import clients, scenarios, server
from benchmarks.scenarios import SCENARIOS, Context, Scenario, Sizes

NOTES_MARKER = "<!-- notes -->"

# scenario -> client -> metric -> values, one per repetition (warm-ups dropped)
Results = dict[str, dict[str, dict[str, list[float]]]]


@dataclass
class Target:
    scenario: str
    text: str
    check: Callable[[Results], tuple[float | None, bool | None]]


@dataclass
class Run:
    sizes: Sizes
    results: Results = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def pair_ratios(results: Results, scenario: str, metric: str, a: str, b: str) -> list[float]:
    """``a / b`` for each repetition in which both ran."""
    by_client = results.get(scenario, {})
    if a not in by_client or b not in by_client:
        return []
    return [x / y for x, y in zip(by_client[a][metric], by_client[b][metric], strict=False) if y]


def _median_ratio(results: Results, scenario: str, metric: str, a: str, b: str) -> float | None:
    ratios = pair_ratios(results, scenario, metric, a, b)
    return statistics.median(ratios) if ratios else None


def _at_least(scenario: str, metric: str, ref: str, bound: float) -> Target:
    def check(results: Results) -> tuple[float | None, bool | None]:
        value = _median_ratio(results, scenario, metric, "asyncvideos", ref)
        return value, None if value is None else value >= bound

    return Target(scenario, f"{metric} ≥ {bound}x {ref}", check)


def _at_most_ratio(scenario: str, metric: str, ref: str, bound: float) -> Target:
    def check(results: Results) -> tuple[float | None, bool | None]:
        value = _median_ratio(results, scenario, metric, "asyncvideos", ref)
        return value, None if value is None else value <= bound

    return Target(scenario, f"{metric} ≤ {bound}x {ref}", check)


def _at_most(scenario: str, metric: str, bound: Callable[[Sizes], float], text: str) -> Target:
    sizes_box: list[Sizes] = []

    def check(results: Results) -> tuple[float | None, bool | None]:
        values = results.get(scenario, {}).get("asyncvideos", {}).get(metric)
        if not values:
            return None, None
        worst = max(values)
        return worst, worst <= bound(sizes_box[0])

    target = Target(scenario, text, check)
    target.sizes_box = sizes_box  # type: ignore[attr-defined]
    return target


def targets(sizes: Sizes) -> list[Target]:
    found = [
        _at_least("list_all", "rate", "floor", 0.85),
        _at_least("list_all", "rate", "openai", 2.0),
        _at_least("retrieve", "rate", "floor", 0.85),
        _at_least("retrieve", "rate", "openai", 2.0),
        _at_most(
            "wait_many",
            "requests",
            lambda s: s.wait_jobs * server.DONE_AT,
            "requests ≤ jobs x polls the schedule needs (worst rep)",
        ),
        _at_most_ratio("wait_many", "cpu", "floor", 1.25),
        _at_least("download", "rate", "floor", 0.9),
        _at_most("download", "rss", lambda s: 32.0, "peak RSS growth < 32 MiB (worst rep)"),
        _at_most("memory", "rss", lambda s: 32.0, "peak RSS growth < 32 MiB (worst rep)"),
        _at_most_ratio("import", "wall", "floor", 1.25),
    ]
    for target in found:
        box = getattr(target, "sizes_box", None)
        if box is not None:
            box.append(sizes)
    return found


# -- running ---------------------------------------------------------------------


def run_scenario(ctx: Context, scenario: Scenario, names: Sequence[str], run: Run) -> None:
    reps, warmup = scenario.reps(ctx.sizes), scenario.warmup(ctx.sizes)
    per_client: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for rep in range(warmup + reps):
        for name in names:
            metrics = scenario.measure(ctx, name)
            if rep < warmup:
                continue
            for key, value in metrics.items():
                per_client[name].setdefault(key, []).append(value)
        label = "warm-up" if rep < warmup else f"rep {rep - warmup + 1}/{reps}"
        print(f"  {scenario.name}: {label} done", file=sys.stderr, flush=True)
    run.results[scenario.name] = per_client


def run_all(
    sizes: Sizes, only: Sequence[str] = (), client_names: Sequence[str] | None = None
) -> Run:
    names = list(client_names or clients.available_clients())
    chosen = [SCENARIOS[name] for name in (only or SCENARIOS)]
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
            these = list(names)
            for variant in scenario.variants:
                if variant == "asyncvideos+prefetch" and not clients.prefetch_supported():
                    continue
                if variant.split("+")[0] in names:
                    these.insert(these.index(variant.split("+")[0]) + 1, variant)
            began = time.perf_counter()
            run_scenario(ctx, scenario, these, run)
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
    header = [
        "client",
        *(m.label for m in scenario.metrics),
        f"{primary.label} ÷ floor",
        f"{primary.label} ÷ openai",
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
            else:
                cells.append(
                    _ratio_cell(pair_ratios(run.results, scenario.name, primary.key, name, ref))
                )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def target_table(run: Run) -> list[str]:
    lines = ["| scenario | target | asyncvideos | result |", "|---|---|---|---|"]
    for target in targets(run.sizes):
        if target.scenario not in run.results:
            continue
        value, passed = target.check(run.results)
        shown = "-" if value is None else f"{value:,.2f}"
        verdict = "n/a" if passed is None else ("PASS" if passed else "MISS")
        lines.append(f"| {target.scenario} | {target.text} | {shown} | {verdict} |")
    lines.append("")
    return lines


def report(run: Run, command: str) -> str:
    info = machine()
    lines = [
        "# Benchmark results",
        "",
        f"- date: {info['date']}; whole run: {run.seconds:.0f} s",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['os']}",
        f"- Python {info['python']}, aiohttp {info['aiohttp']}, openai {info['openai']}, "
        f"asyncvideos {info['asyncvideos']}",
        f"- command: `{command}`",
        f"- repetitions: {run.sizes.reps} after {run.sizes.warmup} warm-up "
        f"(download {run.sizes.download_reps}, memory {run.sizes.memory_reps}, "
        f"import {run.sizes.import_reps}); cells are median (min-max); ratios are "
        "computed pair by pair within a repetition, then the median taken.",
        "",
        "## Targets",
        "",
        *target_table(run),
        "## Scenarios",
        "",
    ]
    for name in run.results:
        lines += scenario_table(run, SCENARIOS[name])
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
        "--only", action="append", default=[], choices=sorted(SCENARIOS), metavar="SCENARIO"
    )
    parser.add_argument("--clients", help="comma-separated subset of floor,asyncvideos,openai")
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(scenarios.run_child(json.loads(args.child))))
        return 0
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    names = args.clients.split(",") if args.clients else None
    run = run_all(sizes, args.only, names)
    command = "python -m benchmarks" + " ".join(["", *(argv if argv is not None else sys.argv[1:])])
    text = report(run, command)
    print(text)
    if args.output:
        write_report(text, args.output)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": run.results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
