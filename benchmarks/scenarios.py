"""The scenarios: what each measures, at which sizes, and the targets.

A scenario's ``measure(ctx, client)`` runs one client once and returns its
metrics; the runner interleaves the clients (floor, asyncvideos, openai,
floor, ...) repetition by repetition, so ratios are computed pair by pair
within the same moment of a noisy machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import clients
from .server import DONE_AT, Server

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    list_jobs: int = 100_000
    retrieve_calls: int = 10_000
    inflight: int = 64
    wait_jobs: int = 1_000
    wait_concurrency: int = 64
    download_bytes: int = 1 << 30
    memory_jobs: int = 1_000_000
    work_jobs: int = 20_000
    work_us: float = 20.0
    reps: int = 5
    warmup: int = 1
    memory_reps: int = 2
    download_reps: int = 5
    import_reps: int = 15


FULL = Sizes()
QUICK = Sizes(
    list_jobs=5_000,
    retrieve_calls=1_000,
    wait_jobs=100,
    download_bytes=64 << 20,
    memory_jobs=20_000,
    work_jobs=2_000,
    reps=3,
    warmup=1,
    memory_reps=1,
    download_reps=2,
    import_reps=5,
)
SMOKE = replace(
    QUICK,
    list_jobs=300,
    retrieve_calls=50,
    inflight=8,
    wait_jobs=10,
    wait_concurrency=4,
    download_bytes=2 << 20,
    memory_jobs=300,
    work_jobs=200,
    reps=1,
    warmup=0,
    memory_reps=1,
    download_reps=1,
    import_reps=1,
)


@dataclass
class Context:
    server: Server
    sizes: Sizes
    tmp: Path
    run_id: int = 0
    notes: list[str] = field(default_factory=list)


Metrics = dict[str, float]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    fmt: str = "{:,.0f}"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    metrics: tuple[Metric, ...]
    measure: Callable[[Context, str], Metrics]
    #: Client names (beyond the standard ones) this scenario also runs.
    variants: tuple[str, ...] = ()
    reps: Callable[[Sizes], int] = lambda sizes: sizes.reps
    warmup: Callable[[Sizes], int] = lambda sizes: sizes.warmup


def _client(name: str) -> clients.Client:
    if name == "asyncvideos+prefetch":
        return clients.make("asyncvideos", prefetch=1)
    return clients.make(name)


def _in_process(ctx: Context, run: Callable[[], Any]) -> tuple[Any, Metrics]:
    """Run a coroutine in a fresh event loop; measure wall, client CPU, server CPU."""
    gc.collect()
    server_before = ctx.server.stats()["cpu"]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = asyncio.run(run())
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server_cpu = ctx.server.stats()["cpu"] - server_before
    return result, {"wall": wall, "cpu": cpu, "server_cpu": server_cpu}


def _check(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: expected {expected}, got {got}")


# -- list_all ------------------------------------------------------------------


def measure_list_all(ctx: Context, name: str) -> Metrics:
    n = ctx.sizes.list_jobs
    client = _client(name)
    count, m = _in_process(ctx, lambda: client.list_all(ctx.server.base_url(n)))
    _check(f"{name} list_all", count, n)
    return {"rate": n / m["wall"], "cpu": m["cpu"], "server_cpu": m["server_cpu"]}


def measure_list_work(ctx: Context, name: str) -> Metrics:
    n, work = ctx.sizes.work_jobs, ctx.sizes.work_us
    client = _client(name)
    count, m = _in_process(ctx, lambda: client.list_all(ctx.server.base_url(n), work))
    _check(f"{name} list_all_work", count, n)
    return {"rate": n / m["wall"], "cpu": m["cpu"]}


# -- retrieve ------------------------------------------------------------------


def measure_retrieve(ctx: Context, name: str) -> Metrics:
    calls, inflight = ctx.sizes.retrieve_calls, ctx.sizes.inflight
    client = _client(name)
    done, m = _in_process(ctx, lambda: client.retrieve(ctx.server.base_url(1), calls, inflight))
    _check(f"{name} retrieve", done, calls)
    return {"rate": calls / m["wall"], "cpu": m["cpu"], "server_cpu": m["server_cpu"]}


# -- wait_many -----------------------------------------------------------------


def measure_wait_many(ctx: Context, name: str) -> Metrics:
    ctx.run_id += 1
    jobs, concurrency = ctx.sizes.wait_jobs, ctx.sizes.wait_concurrency
    ids = [f"wait_{ctx.run_id}_{i}" for i in range(jobs)]
    client = _client(name)
    ctx.server.reset()
    done, m = _in_process(ctx, lambda: client.wait_many(ctx.server.base_url(1), ids, concurrency))
    _check(f"{name} wait_many", done, jobs)
    stats = ctx.server.stats()
    return {
        "wall": m["wall"],
        "requests": stats["poll_requests"],
        "cpu": m["cpu"],
    }


# -- subprocess measurements (download, memory) ----------------------------------


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['op']}/{spec['client']} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Inside the child: one measurement with ru_maxrss before and after."""
    import resource

    client = _client(spec["client"])
    path = Path(spec["path"]) if spec.get("path") else None

    async def go(base_url: str, target: Path | None) -> int:
        if target is not None:
            await client.download(base_url, target)
            return 0
        return await client.list_all(base_url)

    # A tiny run first, so the one-off costs (lazy imports, the SSL context a
    # connector loads, the loop) are not counted as growth due to the work.
    warm = Path(str(path) + ".warm") if path is not None else None
    asyncio.run(go(spec["warmup_url"], warm))
    if warm is not None:
        warm.unlink()
    gc.collect()
    before = _current_rss_kib()
    peak_resettable = _reset_peak_rss()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    count = asyncio.run(go(spec["base_url"], path))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    # The peak of this run alone where Linux can reset it (VmHWM); otherwise the
    # process's lifetime peak, which imports and the warm-up may have set.
    peak = (
        _peak_rss_kib() if peak_resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    if path is not None:
        count = path.stat().st_size
    return {"count": count, "wall": wall, "cpu": cpu, "rss_growth": max(peak - before, 0) / 1024}


def _reset_peak_rss() -> bool:
    """Reset the kernel's record of this process's peak RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _current_rss_kib() -> int:
    """The resident set now (not the peak so far, which imports may have pushed up)."""
    import resource

    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def measure_download(ctx: Context, name: str) -> Metrics:
    size = ctx.sizes.download_bytes
    with tempfile.TemporaryDirectory(dir=ctx.tmp) as tmp:
        path = Path(tmp) / "video.mp4"
        r = _child(
            {
                "op": "download",
                "client": name,
                "base_url": ctx.server.base_url(size),
                "warmup_url": ctx.server.base_url(64 * 1024),
                "path": str(path),
            }
        )
    _check(f"{name} download", r["count"], size)
    return {"rate": size / r["wall"] / 1e6, "rss": r["rss_growth"], "cpu": r["cpu"]}


def measure_memory(ctx: Context, name: str) -> Metrics:
    n = ctx.sizes.memory_jobs
    r = _child(
        {
            "op": "memory",
            "client": name,
            "base_url": ctx.server.base_url(n),
            "warmup_url": ctx.server.base_url(200),
        }
    )
    _check(f"{name} memory", r["count"], n)
    return {"rss": r["rss_growth"], "rate": n / r["wall"]}


# -- import ----------------------------------------------------------------------

IMPORTS = {"floor": "aiohttp", "asyncvideos": "asyncvideos", "openai": "openai"}


def measure_import(ctx: Context, name: str) -> Metrics:
    module = IMPORTS[name]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
    return {"wall": (time.perf_counter() - t0) * 1000}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "list_all",
            "list(all=True) over {list_jobs:,} jobs, pages of 100",
            (
                Metric("rate", "jobs/s", True),
                Metric("cpu", "client CPU s", False, "{:.2f}"),
                Metric("server_cpu", "server CPU s", False, "{:.2f}"),
            ),
            measure_list_all,
        ),
        Scenario(
            "list_all_work",
            "list(all=True) over {work_jobs:,} jobs, {work_us:.0f} µs of work + a yield per job",
            (Metric("rate", "jobs/s", True), Metric("cpu", "client CPU s", False, "{:.2f}")),
            measure_list_work,
            variants=("asyncvideos+prefetch",),
        ),
        Scenario(
            "retrieve",
            "{retrieve_calls:,} retrieve() calls, {inflight} in flight",
            (
                Metric("rate", "calls/s", True),
                Metric("cpu", "client CPU s", False, "{:.2f}"),
                Metric("server_cpu", "server CPU s", False, "{:.2f}"),
            ),
            measure_retrieve,
        ),
        Scenario(
            "wait_many",
            "{wait_jobs:,} jobs done at poll " + str(DONE_AT) + ", poll-after 50 ms, "
            "{wait_concurrency} polls in flight",
            (
                Metric("wall", "wall s", False, "{:.2f}"),
                Metric("requests", "requests", False),
                Metric("cpu", "client CPU s", False, "{:.2f}"),
            ),
            measure_wait_many,
        ),
        Scenario(
            "download",
            "one {download_mib} MiB body to a file (subprocess per run)",
            (
                Metric("rate", "MB/s", True),
                Metric("rss", "peak RSS growth MiB", False, "{:,.1f}"),
                Metric("cpu", "client CPU s", False, "{:.2f}"),
            ),
            measure_download,
            reps=lambda sizes: sizes.download_reps,
            warmup=lambda sizes: 0,
        ),
        Scenario(
            "memory",
            "stream {memory_jobs:,} jobs (subprocess per run)",
            (
                Metric("rss", "peak RSS growth MiB", False, "{:,.1f}"),
                Metric("rate", "jobs/s", True),
            ),
            measure_memory,
            reps=lambda sizes: sizes.memory_reps,
            warmup=lambda sizes: 0,
        ),
        Scenario(
            "import",
            "python -c 'import X' (asyncvideos vs aiohttp (floor) vs openai)",
            (Metric("wall", "ms", False, "{:.0f}"),),
            measure_import,
            reps=lambda sizes: sizes.import_reps,
        ),
    )
}


def title(scenario: Scenario, sizes: Sizes) -> str:
    values = {**sizes.__dict__, "download_mib": sizes.download_bytes >> 20}
    return scenario.title.format(**values)
