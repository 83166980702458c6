"""The load server: a Videos-API look-alike that does as little work as it can.

It runs in its own process (``python -m benchmarks.server``, or ``start()``)
on 127.0.0.1, so the client's CPU time is measured apart from the server's.
Every body is pre-encoded bytes, or a pre-encoded template with the id
spliced in, so the server stays far cheaper than any client (its own CPU
time is reported by ``GET /_stats`` to check that).

Routes, where ``{n}`` sets the size of the synthetic job list (``list``) or
of the content body in bytes (``content``)::

    GET /{n}/v1/videos?limit=&after=&order=asc    pages over jobs video_0 .. video_{n-1}
    GET /{n}/v1/videos/{id}                       a completed job (pre-encoded)
    GET /{n}/v1/videos/wait_{k}                   queued, in_progress, then completed at
                                                  poll ``DONE_AT``, with openai-poll-after-ms
    GET /{n}/v1/videos/{id}/content               ``n`` bytes streamed from one buffer
    POST /{n}/v1/videos                           a new queued job ``job_{n}_{k}``, which its
                                                  ``n``-th poll finds completed
    GET /_stats                                   request counts and server CPU seconds
    POST /_reset                                  zero the counters
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

#: The poll at which a ``wait_*`` job is completed (earlier polls say it is running).
DONE_AT = 3
#: At asyncvideos' floor under a server's poll hint (0.1 s), so that every client
#: follows the same schedule.
POLL_AFTER_MS = 100
CONTENT_BUFFER = 1024 * 1024
_CREATED = 1_760_000_000

JOB_TEMPLATE: dict[str, Any] = {
    "id": "@ID@",
    "object": "video",
    "model": "sora-2",
    "status": "completed",
    "progress": 100,
    "created_at": _CREATED,
    "completed_at": _CREATED + 90,
    "expires_at": _CREATED + 86_400,
    "prompt": "A calico cat plays a grand piano on a dim stage, slow dolly in",
    "size": "1280x720",
    "seconds": "8",
    "remixed_from_video_id": None,
    "error": None,
}


def _template(status: str, progress: int) -> tuple[bytes, bytes]:
    job = {**JOB_TEMPLATE, "status": status, "progress": progress}
    if status != "completed":
        job["completed_at"] = None
    prefix, suffix = json.dumps(job, separators=(",", ":")).encode().split(b"@ID@")
    return prefix, suffix


_DONE = _template("completed", 100)
_POLLS = {1: _template("queued", 0), 2: _template("in_progress", 50)}


def job_bytes(video_id: str, template: tuple[bytes, bytes] = _DONE) -> bytes:
    return template[0] + video_id.encode() + template[1]


def job_id(index: int) -> str:
    return f"video_{index:08d}"


class LoadServer:
    """The routes' state: page cache, poll counts, request counters."""

    def __init__(self) -> None:
        self.requests = 0
        self.created = 0
        self.polls: dict[str, int] = {}
        self.poll_requests = 0
        self._pages: dict[tuple[int, int, int], bytes] = {}
        self._buffer = bytes(range(256)) * (CONTENT_BUFFER // 256)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{n:\\d+}/v1/videos", self.list_page)
        app.router.add_post("/{n:\\d+}/v1/videos", self.create)
        app.router.add_get("/{n:\\d+}/v1/videos/{id}", self.retrieve)
        app.router.add_get("/{n:\\d+}/v1/videos/{id}/content", self.content)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_reset", self.reset)
        return app

    def _page(self, total: int, start: int, limit: int) -> bytes:
        key = (total, start, limit)
        body = self._pages.get(key)
        if body is not None:
            return body
        stop = min(start + limit, total)
        ids = [job_id(i) for i in range(start, stop)]
        items = b",".join([job_bytes(i) for i in ids])
        first = json.dumps(ids[0] if ids else None).encode()
        last = json.dumps(ids[-1] if ids else None).encode()
        more = b"true" if stop < total else b"false"
        body = (
            b'{"object":"list","data":['
            + items
            + b'],"first_id":'
            + first
            + b',"last_id":'
            + last
            + b',"has_more":'
            + more
            + b"}"
        )
        # Keep up to ~200k jobs of pages (about 70 MB) pre-encoded; a longer
        # listing (the memory scenario) is built from the template each time.
        if total * 350 <= 80_000_000:
            self._pages[key] = body
        return body

    async def list_page(self, request: web.Request) -> web.Response:
        self.requests += 1
        total = int(request.match_info["n"])
        limit = int(request.query.get("limit", "20"))
        after = request.query.get("after")
        start = 0 if after is None else int(after.removeprefix("video_")) + 1
        return web.Response(body=self._page(total, start, limit), content_type="application/json")

    async def create(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        self.created += 1
        video_id = f"job_{request.match_info['n']}_{self.created}"
        return web.Response(
            body=job_bytes(video_id, _POLLS[1]),
            content_type="application/json",
            headers={"openai-poll-after-ms": str(POLL_AFTER_MS)},
        )

    async def retrieve(self, request: web.Request) -> web.Response:
        self.requests += 1
        video_id = request.match_info["id"]
        headers = None
        template = _DONE
        if video_id.startswith("job_"):  # created: completed at its n-th poll
            self.poll_requests += 1
            count = self.polls[video_id] = self.polls.get(video_id, 0) + 1
            if count < int(video_id.split("_")[1]):
                template = _POLLS[2]
                headers = {"openai-poll-after-ms": str(POLL_AFTER_MS)}
        elif video_id.startswith("wait_"):
            self.poll_requests += 1
            count = self.polls[video_id] = self.polls.get(video_id, 0) + 1
            if count < DONE_AT:
                template = _POLLS[count]
                headers = {"openai-poll-after-ms": str(POLL_AFTER_MS)}
        return web.Response(
            body=job_bytes(video_id, template), content_type="application/json", headers=headers
        )

    async def content(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        size = int(request.match_info["n"])
        response = web.StreamResponse(
            headers={"Content-Type": "video/mp4", "Accept-Ranges": "bytes"}
        )
        response.content_length = size
        await response.prepare(request)
        view = memoryview(self._buffer)
        left = size
        while left > 0:
            n = min(left, len(view))
            await response.write(view[:n])
            left -= n
        await response.write_eof()
        return response

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "poll_requests": self.poll_requests,
                "jobs_polled": len(self.polls),
                "cpu": time.process_time(),
            }
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.requests = 0
        self.created = 0
        self.poll_requests = 0
        self.polls.clear()
        return web.json_response({"ok": True})


async def _serve(port: int, ready: Any, *, watch_stdin: bool = False) -> None:
    runner = web.AppRunner(LoadServer().app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if watch_stdin:
        # Started by ``start()``: stdin is a pipe from the runner, and its end
        # (the runner exited, even if killed) stops the server too.
        fd = sys.stdin.fileno()
        loop.add_reader(fd, lambda: os.read(fd, 1024) or stop.set())
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class Server:
    """A handle on the server process: its base address and helpers."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"

    def base_url(self, n: int) -> str:
        """The ``base_url`` a client uses for a list of ``n`` jobs (or ``n`` content bytes)."""
        return f"{self.origin}/{n}/v1"

    def _call(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.origin + path, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_stats")

    def reset(self) -> None:
        self._call("POST", "/_reset")


@contextmanager
def start(port: int = 0) -> Iterator[Server]:
    """Run the server in a separate process for the block's duration."""
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server", "--port", str(port), "--watch-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=root,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError("the load server did not start")
        yield Server(process, int(line.split()[1]))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args(argv)

    def ready(bound: int) -> None:
        print(f"port {bound}", flush=True)

    asyncio.run(_serve(args.port, ready, watch_stdin=args.watch_stdin))


if __name__ == "__main__":
    main()
