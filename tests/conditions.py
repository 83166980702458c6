"""Waiting for a condition in tests, instead of sleeping a fixed time and hoping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncvideos

CLIENT = Path(asyncvideos.__file__).resolve().parent
FAKE = CLIENT / "testing"


async def until(condition: Callable[[], bool], what: str, *, timeout: float = 10.0) -> None:
    """Return as soon as ``condition()`` holds; fail naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened within {timeout} s: {what}")
        await asyncio.sleep(0.002)


def _is_client_code(task: asyncio.Task[object]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:
        return False
    path = Path(code.co_filename).resolve()
    return path.is_relative_to(CLIENT) and not path.is_relative_to(FAKE)


def tasks_started_since(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """The client's tasks (pollers, look-aheads) not in ``before`` and still running.

    The fake's own tasks (aiohttp's keep-alive handlers) are left out: they are the
    server's, not something the client left behind.
    """
    return {t for t in asyncio.all_tasks() - before if not t.done() and _is_client_code(t)}
