"""What one hostile response costs the client: ``python -m benchmarks.hostile_memory``.

Each case is an answer a hostile (or broken) server can give within the default
``max_response_bytes`` (32 MiB): a body whose bytes are few but whose parse
builds many objects, a page with more jobs than asked for, cursors of
megabytes, content compressed although it was asked for unencoded, and two
bodies that must still be read (a huge string, a page of big extras).

Every case runs in a fresh client process, once per reader (the stdlib
``json`` reader, and msgspec's from the ``speedups`` extra), against a server
in a process of its own, so the figures are the client's alone:

- **peak RSS growth**: the kernel's high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs`` after the imports and a warm-up call of the same
  method on a normal answer) minus the resident set at that point;
- **seconds**: wall time of the call, transfer included;
- **outcome**: ``read`` (with what was read) or the exception's class.

``--against DIR`` measures the ``asyncvideos`` package found in ``DIR`` (a
checkout of another commit, say) instead of the installed one. ``--case`` and
``--reader`` pick cases; ``--list`` names them. Linux only (``/proc``).
Without msgspec installed, the msgspec reader is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
#: Hostile bodies stay just under the default max_response_bytes (32 MiB).
SIZE = 31 * MIB
READERS = ("json", "msgspec")
JOB = {
    "id": "video_1",
    "object": "video",
    "model": "sora-2",
    "status": "completed",
    "progress": 100,
    "created_at": 1_760_000_000,
    "completed_at": 1_760_000_090,
    "expires_at": 1_760_086_400,
    "prompt": "A calico cat plays a grand piano on a dim stage, slow dolly in",
    "size": "1280x720",
    "seconds": "8",
    "remixed_from_video_id": None,
    "error": None,
}


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _repeat(head: bytes, item: bytes, tail: bytes, size: int = SIZE) -> bytes:
    """``head``, ``item`` as often as fits in ``size`` bytes (comma-separated), ``tail``."""
    count = max((size - len(head) - len(tail)) // (len(item) + 1), 1)
    return head + b",".join([item] * count) + tail


def _job_with(extra: bytes, size: int = SIZE) -> bytes:
    """A completed job whose ``x`` field holds ``extra`` repeated (a JSON array)."""
    return _repeat(_dumps(JOB)[:-1] + b',"x":[', extra, b"]}", size)


def _page_of(item: bytes, size: int = SIZE) -> bytes:
    return _repeat(b'{"object":"list","data":[', item, b'],"has_more":false}', size)


def _big_extras_page() -> bytes:
    """100 jobs, each with about 70 KiB of extras: a long text, an object of 200
    keys and a list of 2,000 numbers (what a gateway's metadata might be)."""
    words = ("the quick brown fox jumps over the lazy dog, " * 1400)[:60_000]
    jobs = []
    for n in range(100):
        job = dict(JOB, id=f"video_{n}")
        job["transcript"] = words
        job["metadata"] = {f"key_{k}": f"value {k}" for k in range(200)}
        job["samples"] = [k * 7 % 1000 for k in range(2000)]
        jobs.append(job)
    return _dumps({"object": "list", "data": jobs, "has_more": False})


def _at_the_budget(make: Callable[[int], bytes]) -> bytes:
    """``make(size)`` as large as the parse budget lets it be parsed: the most a
    body of that shape may build (sized with the installed package's estimate)."""
    from asyncvideos._cost import DEFAULT_PARSE_BUDGET, weight

    size = MIB
    for _ in range(3):
        size = int(size * DEFAULT_PARSE_BUDGET * 0.99 / weight(make(size)))
    return make(min(size, SIZE))


def _gzip_bomb() -> bytes:
    """256 MiB of zeros, gzip-compressed to about 254 KiB."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MIB)
    return b"".join(squeeze.compress(block) for _ in range(256)) + squeeze.flush()


class Case:
    """One hostile answer and the call that meets it."""

    def __init__(self, method: str, what: str, body: Callable[[], bytes], **call: Any) -> None:
        self.method = method
        self.what = what
        self.body = body
        self.call = call


#: The long-cursor case: this many pages, each with a cursor of this many bytes.
CURSOR_PAGES, CURSOR_BYTES = 80, 2 * MIB

CASES: dict[str, Case] = {
    "empty_objects": Case(
        "retrieve", "a job with 31 MiB of `{},` in an extra field", lambda: _job_with(b"{}")
    ),
    "deep_arrays": Case(
        "retrieve",
        "a job with 31 MiB of arrays nested 64 deep",
        lambda: _job_with(b"[" * 64 + b"]" * 64),
    ),
    "short_strings": Case("retrieve", 'a job with 31 MiB of `"ab",`', lambda: _job_with(b'"ab"')),
    "numbers": Case("retrieve", "a job with 31 MiB of `0.5,`", lambda: _job_with(b"0.5")),
    "huge_string": Case(
        "retrieve",
        "a job with one 31 MiB string extra (must be read)",
        lambda: _dumps(JOB)[:-1] + b',"pad":"' + b"x" * SIZE + b'"}',
    ),
    "edge_objects": Case(
        "retrieve",
        "a job with as much `{},` as the parse budget lets through",
        lambda: _at_the_budget(lambda size: _job_with(b"{}", size)),
    ),
    "edge_deep_arrays": Case(
        "retrieve",
        "a job with as many arrays nested 64 deep as the parse budget lets through",
        lambda: _at_the_budget(lambda size: _job_with(b"[" * 64 + b"]" * 64, size)),
    ),
    "edge_astral": Case(
        "retrieve",
        "a job with an ASCII string ending in an escaped emoji, as long as the budget allows",
        lambda: _at_the_budget(
            lambda size: _dumps(JOB)[:-1] + b',"pad":"' + b"x" * size + b'\\ud83d\\ude00"}'
        ),
    ),
    "int_id_items": Case(
        "list_page", 'a page of 31 MiB of `{"id":1}` items', lambda: _page_of(b'{"id":1}')
    ),
    "many_items": Case(
        "list_page",
        'a page of 31 MiB of `{"id":"v"}` items (2.9 M)',
        lambda: _page_of(b'{"id":"v"}'),
    ),
    "over_limit": Case(
        "list_page",
        "200,000 jobs answering `list_page(limit=10)`",
        lambda: _page_of(b'{"id":"video_1","object":"video","status":"completed"}', 11_400_000),
        limit=10,
    ),
    "edge_items": Case(
        "list_page",
        'a page of as many `{"id":"v"}` items as the parse budget lets through',
        lambda: _at_the_budget(lambda size: _page_of(b'{"id":"v"}', size)),
    ),
    "big_extras": Case(
        "list_page", "100 jobs with about 70 KiB of extras each (must be read)", _big_extras_page
    ),
    "long_cursors": Case(
        "list_all",
        f"{CURSOR_PAGES} pages, each with a {CURSOR_BYTES // MIB} MiB `last_id`",
        lambda: b"",  # made per page by the server
    ),
    "gzip_download": Case(
        "download", "`download()` answered with 254 KiB of gzip (256 MiB inflated)", _gzip_bomb
    ),
    "gzip_iter_content": Case(
        "iter_content", "`iter_content()` answered with the same gzip body", _gzip_bomb
    ),
    "wait_many_16": Case(
        "wait_many",
        "`wait_many` over 16 jobs, each poll answered with the `{},` body",
        lambda: _job_with(b"{}"),
    ),
}


# -- the server (a process of its own) ----------------------------------------------


def serve() -> None:
    """Serve every case's answer on 127.0.0.1 and print the port."""
    from aiohttp import web

    bodies: dict[str, bytes] = {}

    def body(case: str) -> bytes:
        if case not in bodies:
            bodies[case] = CASES[case].body()
        return bodies[case]

    json_headers = {"Content-Type": "application/json"}

    async def job(request: web.Request) -> web.Response:
        case = request.match_info["case"]
        if case == "warm":
            return web.Response(
                body=_dumps(dict(JOB, id=request.match_info["id"])), headers=json_headers
            )
        return web.Response(body=body(case), headers=json_headers)

    async def page(request: web.Request) -> web.Response:
        case = request.match_info["case"]
        if case == "warm":
            return web.Response(
                body=_dumps({"data": [JOB], "has_more": False}), headers=json_headers
            )
        if case == "long_cursors":
            after = request.query.get("after", "")
            number = int(after[1:].split("x", 1)[0]) + 1 if after else 0
            cursor = f"c{number}x".ljust(CURSOR_BYTES, "x")
            data = {
                "data": [dict(JOB, id=f"video_{number}")],
                "has_more": number + 1 < CURSOR_PAGES,
                "last_id": cursor,
            }
            return web.Response(body=_dumps(data), headers=json_headers)
        return web.Response(body=body(case), headers=json_headers)

    async def content(request: web.Request) -> web.Response:
        case = request.match_info["case"]
        headers = {"Content-Type": "video/mp4"}
        if case == "warm":
            return web.Response(body=b"\0" * 1024, headers=headers)
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=body(case), headers=headers)

    async def main() -> None:
        for case in CASES:  # made before serving, so no case's time counts their making
            body(case)
        # Cursors of megabytes come back in the query string: let them in.
        app = web.Application(handler_args={"max_line_size": 64 * MIB, "max_field_size": 64 * MIB})
        app.router.add_get("/{case}/v1/videos", page)
        app.router.add_get("/{case}/v1/videos/{id}", job)
        app.router.add_get("/{case}/v1/videos/{id}/content", content)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the client (a fresh process per case and reader) --------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Restart the high-water mark from the current RSS, and return it (KiB)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _status_kib("VmHWM")


def _empty(folder: Path) -> None:
    for leftover in folder.iterdir():
        leftover.unlink()


async def _call(videos: Any, method: str, call: dict[str, Any], folder: Path) -> str:
    """Make the case's call; say what was read."""
    if method == "retrieve":
        video = await videos.retrieve("video_1")
        return f"read ({len(video.raw)} raw keys)"
    if method == "list_page":
        page = await videos.list_page(limit=call.get("limit", 100))
        return f"read ({len(page.data)} jobs)"
    if method == "list_all":
        count = 0
        async for _ in videos.list(all=True):
            count += 1
        return f"read ({count} jobs)"
    if method == "download":
        target = folder / "video.mp4"
        try:
            await videos.download("video_1", target)
        finally:
            size = target.stat().st_size if target.exists() else None
        return f"read ({size} bytes written)"
    if method == "iter_content":
        total = 0
        async for chunk in videos.iter_content("video_1"):
            total += len(chunk)
        return f"read ({total} bytes)"
    if method == "wait_many":
        errors: dict[str, int] = {}
        async for result in videos.wait_many([f"video_{n}" for n in range(16)], wait_timeout=600):
            name = "read" if result.error is None else type(result.error).__name__
            errors[name] = errors.get(name, 0) + 1
        return ", ".join(f"{name} x{count}" for name, count in sorted(errors.items()))
    raise ValueError(method)


def measure(case: str, reader: str, port: int) -> dict[str, Any]:
    """Run one case in this (fresh) process and return its figures."""
    from asyncvideos import AsyncVideos, _speedups

    _speedups.use(reader == "msgspec")
    if (_speedups.current() is not None) != (reader == "msgspec"):
        raise RuntimeError(f"the {reader} reader is not available here")
    spec = CASES[case]

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            origin = f"http://127.0.0.1:{port}"
            async with AsyncVideos(
                api_key="sk-bench", base_url=f"{origin}/warm/v1", max_retries=0, timeout=600
            ) as warm:
                await _call(warm, spec.method, spec.call, folder)
                _empty(folder)
            async with AsyncVideos(
                api_key="sk-bench", base_url=f"{origin}/{case}/v1", max_retries=0, timeout=600
            ) as videos:
                before = _reset_peak()
                started = time.perf_counter()
                try:
                    outcome = await _call(videos, spec.method, spec.call, folder)
                except Exception as error:  # the outcome of a hostile case is often an error
                    outcome = type(error).__name__
                seconds = time.perf_counter() - started
                growth = (_status_kib("VmHWM") - before) / 1024
        return {
            "case": case,
            "reader": reader,
            "outcome": outcome,
            "growth_mib": round(growth, 1),
            "seconds": round(seconds, 2),
        }

    return asyncio.run(run())


# -- the runner ---------------------------------------------------------------------


def run_cases(
    cases: list[str], readers: list[str], against: str | None, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Each case and reader in a fresh process, against one server process."""
    env = dict(os.environ)
    if against:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [against, env.get("PYTHONPATH")]))
    script = str(Path(__file__).resolve())
    server = subprocess.Popen(
        [sys.executable, script, "--serve"], stdout=subprocess.PIPE, text=True
    )
    results = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for case in cases:
            for reader in readers:
                done = subprocess.run(
                    [
                        sys.executable,
                        script,
                        "--measure",
                        case,
                        "--reader",
                        reader,
                        "--port",
                        str(port),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    cwd=tempfile.gettempdir(),  # not a checkout: the package comes from env
                    timeout=1800,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"{case} ({reader}) failed:\n{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                log(
                    f"{case:18} {reader:8} {result['growth_mib']:8.1f} MiB "
                    f"{result['seconds']:7.2f} s  {result['outcome']}"
                )
                results.append(result)
    finally:
        server.terminate()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | what | reader | peak RSS growth | seconds | outcome |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        case = CASES[result["case"]]
        lines.append(
            f"| `{result['case']}` | {case.method}: {case.what} | {result['reader']} "
            f"| {result['growth_mib']:.0f} MiB | {result['seconds']:.2f} | {result['outcome']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable")
    parser.add_argument("--reader", action="append", choices=READERS, help="repeatable")
    parser.add_argument("--against", help="measure the asyncvideos package in this folder")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--list", action="store_true", help="name the cases and exit")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        for name, case in CASES.items():
            print(f"{name}: {case.method}: {case.what}")
        return 0
    if args.serve:
        serve()
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure, args.reader[0], args.port)))
        return 0
    readers = args.reader or [
        r for r in READERS if r == "json" or importlib.util.find_spec("msgspec") is not None
    ]
    results = run_cases(
        args.case or list(CASES), readers, args.against, lambda line: print(line, file=sys.stderr)
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
