"""The scenarios: what each measures, at which sizes, and the targets.

A scenario's ``measure(ctx, client)`` runs one client once and returns its
metrics. Every measured run is a fresh subprocess (``run_child``): it imports
its client, warms it up on a small run of the same work, then collects and
freezes the garbage collector's generations (``gc.freeze()``) so that only
the garbage of the measured run itself is collected during it, and reports
its own CPU time (``time.process_time()``, the primary figure) and wall time.
No client's imports, warm-up or garbage are billed to another. The runner
rotates the client order every repetition, so no client always runs right
after the same other one on a noisy machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import clients
from .server import DONE_AT, POLL_AFTER_MS, Server

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
    reps: int = 9
    warmup: int = 1
    memory_reps: int = 3
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
    #: The standard clients that apply (None: all available).
    clients: tuple[str, ...] | None = None


def _client(name: str) -> clients.Client:
    if name == "asyncvideos+prefetch":
        return clients.make("asyncvideos", prefetch=1)
    return clients.make(name)


def _check(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: expected {expected}, got {got}")


# -- one measured run, in a subprocess --------------------------------------------


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


def _server_call(origin: str, method: str, path: str) -> dict[str, Any]:
    req = urllib.request.Request(origin + path, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Inside the child: a warm-up run, then one measured run of ``spec['op']``."""
    import resource

    name = spec["client"]
    if name in ("asyncvideos", "asyncvideos+prefetch"):
        clients.without_speedups()
    client = _client(name)
    op = spec["op"]
    path = Path(spec["path"]) if spec.get("path") else None

    async def go(base_url: str, warm: bool) -> int:
        if op == "download":
            assert path is not None
            await client.download(base_url, Path(str(path) + ".warm") if warm else path)
            return 0
        if op == "retrieve":
            calls = min(spec["calls"], 200) if warm else spec["calls"]
            return await client.retrieve(base_url, calls, spec["inflight"])
        if op == "wait_many":
            ids = [f"wait_warm_{i}" for i in range(20)] if warm else spec["ids"]
            return await client.wait_many(base_url, ids, spec["concurrency"])
        return await client.list_all(base_url, spec.get("work_us", 0.0))

    # A small run of the same work first, so the one-off costs (lazy imports,
    # the SSL context a connector loads, the loop) are not measured.
    asyncio.run(go(spec["warmup_url"], True))
    if path is not None:
        Path(str(path) + ".warm").unlink()
    origin = spec["origin"]
    if op == "wait_many":
        _server_call(origin, "POST", "/_reset")  # count the measured polls only
    server_before = _server_call(origin, "GET", "/_stats")["cpu"]
    # Whatever the imports and the warm-up left is collected now and frozen
    # out of later collections: the measured run pays for its own garbage.
    gc.collect()
    gc.freeze()
    before = _current_rss_kib()
    peak_resettable = _reset_peak_rss()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    count = asyncio.run(go(spec["base_url"], False))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    # The peak of this run alone where Linux can reset it (VmHWM); otherwise the
    # process's lifetime peak, which imports and the warm-up may have set.
    peak = (
        _peak_rss_kib() if peak_resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    stats = _server_call(origin, "GET", "/_stats")
    if path is not None:
        count = path.stat().st_size
    return {
        "count": count,
        "wall": wall,
        "cpu": cpu,
        "server_cpu": stats["cpu"] - server_before,
        "poll_requests": stats["poll_requests"],
        "rss_growth": max(peak - before, 0) / 1024,
    }


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


def _spec(ctx: Context, op: str, name: str, base_url: str, warmup_url: str, **more: Any) -> Any:
    return {
        "op": op,
        "client": name,
        "origin": ctx.server.origin,
        "base_url": base_url,
        "warmup_url": warmup_url,
        **more,
    }


# -- the scenarios' measurements ---------------------------------------------------


def measure_list_all(ctx: Context, name: str) -> Metrics:
    n = ctx.sizes.list_jobs
    url, warm = ctx.server.base_url(n), ctx.server.base_url(500)
    r = _child(_spec(ctx, "list_all", name, url, warm))
    _check(f"{name} list_all", r["count"], n)
    return {"cpu": r["cpu"], "rate": n / r["wall"], "server_cpu": r["server_cpu"]}


def measure_list_work(ctx: Context, name: str) -> Metrics:
    n, work = ctx.sizes.work_jobs, ctx.sizes.work_us
    url, warm = ctx.server.base_url(n), ctx.server.base_url(200)
    r = _child(_spec(ctx, "list_all", name, url, warm, work_us=work))
    _check(f"{name} list_all_work", r["count"], n)
    return {"rate": n / r["wall"], "cpu": r["cpu"]}


def measure_retrieve(ctx: Context, name: str) -> Metrics:
    calls, inflight = ctx.sizes.retrieve_calls, ctx.sizes.inflight
    url = ctx.server.base_url(1)
    r = _child(_spec(ctx, "retrieve", name, url, url, calls=calls, inflight=inflight))
    _check(f"{name} retrieve", r["count"], calls)
    return {"cpu": r["cpu"], "rate": calls / r["wall"], "server_cpu": r["server_cpu"]}


def measure_wait_many(ctx: Context, name: str) -> Metrics:
    ctx.run_id += 1
    jobs, concurrency = ctx.sizes.wait_jobs, ctx.sizes.wait_concurrency
    ids = [f"wait_{ctx.run_id}_{i}" for i in range(jobs)]
    url = ctx.server.base_url(1)
    r = _child(_spec(ctx, "wait_many", name, url, url, ids=ids, concurrency=concurrency))
    _check(f"{name} wait_many", r["count"], jobs)
    return {"cpu": r["cpu"], "wall": r["wall"], "requests": r["poll_requests"]}


def measure_download(ctx: Context, name: str) -> Metrics:
    size = ctx.sizes.download_bytes
    with tempfile.TemporaryDirectory(dir=ctx.tmp) as tmp:
        path = Path(tmp) / "video.mp4"
        url, warm = ctx.server.base_url(size), ctx.server.base_url(64 * 1024)
        r = _child(_spec(ctx, "download", name, url, warm, path=str(path)))
    _check(f"{name} download", r["count"], size)
    return {"rate": size / r["wall"] / 1e6, "rss": r["rss_growth"], "cpu": r["cpu"]}


def measure_memory(ctx: Context, name: str) -> Metrics:
    n = ctx.sizes.memory_jobs
    r = _child(_spec(ctx, "memory", name, ctx.server.base_url(n), ctx.server.base_url(200)))
    _check(f"{name} memory", r["count"], n)
    return {"rss": r["rss_growth"], "rate": n / r["wall"]}


# -- import ----------------------------------------------------------------------

IMPORTS = {"floor": "aiohttp", "asyncvideos": "asyncvideos", "openai": "openai"}
_IMPORT_LINE = re.compile(r"import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)")


def import_cost_ms(module: str) -> float:
    """``-X importtime``'s cumulative time for ``module``, in ms: what importing
    it and everything it pulls in costs, without the interpreter's start-up."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    for line in proc.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and match.group(4) == module and len(match.group(3)) == 1:
            return int(match.group(2)) / 1000
    raise RuntimeError(f"no -X importtime line for {module}")


def measure_import(ctx: Context, name: str) -> Metrics:
    return {"cumulative": import_cost_ms(IMPORTS[name])}


CPU = Metric("cpu", "client CPU s", False, "{:.2f}")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "list_all",
            "list(all=True) over {list_jobs:,} jobs, pages of 100",
            (
                CPU,
                Metric("rate", "jobs/s (wall)", True),
                Metric("server_cpu", "server CPU s", False, "{:.2f}"),
            ),
            measure_list_all,
        ),
        Scenario(
            "list_all_work",
            "list(all=True) over {work_jobs:,} jobs, {work_us:.0f} µs of work + a yield per job",
            (Metric("rate", "jobs/s (wall)", True), CPU),
            measure_list_work,
            variants=("asyncvideos+prefetch",),
            clients=("floor", "asyncvideos", "openai"),
        ),
        Scenario(
            "retrieve",
            "{retrieve_calls:,} retrieve() calls, {inflight} in flight",
            (
                CPU,
                Metric("rate", "calls/s (wall)", True),
                Metric("server_cpu", "server CPU s", False, "{:.2f}"),
            ),
            measure_retrieve,
        ),
        Scenario(
            "wait_many",
            f"{{wait_jobs:,}} jobs done at poll {DONE_AT}, poll-after {POLL_AFTER_MS} ms, "
            "{wait_concurrency} polls in flight",
            (
                CPU,
                Metric("wall", "wall s", False, "{:.2f}"),
                Metric("requests", "requests", False),
            ),
            measure_wait_many,
        ),
        Scenario(
            "download",
            "one {download_mib} MiB body to a file",
            (
                Metric("rate", "MB/s", True),
                Metric("rss", "peak RSS growth MiB", False, "{:,.1f}"),
                CPU,
            ),
            measure_download,
            reps=lambda sizes: sizes.download_reps,
            warmup=lambda sizes: 0,
            clients=("floor", "asyncvideos", "openai"),
        ),
        Scenario(
            "memory",
            "stream {memory_jobs:,} jobs",
            (
                Metric("rss", "peak RSS growth MiB", False, "{:,.1f}"),
                Metric("rate", "jobs/s (wall)", True),
            ),
            measure_memory,
            reps=lambda sizes: sizes.memory_reps,
            warmup=lambda sizes: 0,
            clients=("floor", "asyncvideos", "asyncvideos+speedups", "openai"),
        ),
        Scenario(
            "import",
            "-X importtime, cumulative ms for the package (asyncvideos, aiohttp (floor), openai)",
            (Metric("cumulative", "ms", False, "{:.1f}"),),
            measure_import,
            reps=lambda sizes: sizes.import_reps,
            clients=("floor", "asyncvideos", "openai"),
        ),
    )
}


def title(scenario: Scenario, sizes: Sizes) -> str:
    values = {**sizes.__dict__, "download_mib": sizes.download_bytes >> 20}
    return scenario.title.format(**values)
