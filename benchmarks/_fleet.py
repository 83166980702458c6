"""What the fleet benchmarks share: child processes, the fake in one, a balancer, tables.

Each role (a replica, the fake, the balancer) is a process of its own, started with
the ``spawn`` method so it imports and builds everything itself, as a real replica
does, and talks to the coordinator over a pipe: it sends what it offers (its URL),
then answers commands until it is told to stop.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import statistics
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from aiohttp import web


class Child:
    """One child process and the coordinator's end of its pipe."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        child.close()

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._conn.recv)

    def send(self, message: Any) -> None:
        self._conn.send(message)

    async def ask(self, message: Any) -> Any:
        self.send(message)
        return await self.recv()

    async def stop(self) -> None:
        if self.process.is_alive():
            with suppress(BrokenPipeError, OSError):
                self._conn.send("stop")
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()


async def receive(conn: Connection) -> Any:
    """A child's next message from the coordinator, without blocking its loop."""
    return await asyncio.get_running_loop().run_in_executor(None, conn.recv)


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


# -- the balancer ----------------------------------------------------------------------


def balancer_process(conn: Connection, backends: list[str]) -> None:
    """A round-robin balancer over ``backends``: each POST goes to the next one."""
    asyncio.run(_balance(conn, backends))


async def _balance(conn: Connection, backends: list[str]) -> None:
    import aiohttp

    turn = itertools.cycle(backends)
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            headers = {
                name: value
                for name, value in request.headers.items()
                if name.lower() not in ("host", "content-length", "transfer-encoding")
            }
            target = next(turn) + request.path_qs
            async with session.post(target, data=body, headers=headers) as answer:
                return web.Response(status=answer.status, body=await answer.read())

        app = web.Application()
        app.router.add_post("/{tail:.*}", forward)
        async with serving(app) as url:
            conn.send(url)
            while await receive(conn) != "stop":
                conn.send("ok")


# -- figures ---------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0.95 for p95) by linear interpolation; 0 for none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
