"""One coroutine per command, each on an open ``AsyncVideos``; they return an exit code.

Commands that take many ids (``get``, ``delete``) keep going past a job that
fails, report it on stderr, and exit 1 at the end; results come out in the
order the ids were given, with up to ``WINDOW`` requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import attrs

from .._errors import AsyncVideosError
from .._models import Video
from .._videos import AsyncVideos
from ._args import VARIANT_SUFFIXES
from ._output import Output
from ._progress import Display, download_display, wait_display

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
WINDOW = 16
_EOF = object()


class UsageError(Exception):
    """Bad input found by the command line itself; exit code 2."""


@attrs.define
class Context:
    """What every command needs besides the client."""

    args: argparse.Namespace
    out: Output
    err: TextIO
    console: Console | None  # for live displays; None: no live display
    stdin: TextIO = attrs.field(factory=lambda: sys.stdin)
    failed: bool = False

    def report(self, message: str) -> None:
        """One error line on stderr; the command will exit 1."""
        self.failed = True
        self.err.write(f"asyncvideos: error: {message}\n")
        self.err.flush()

    @property
    def code(self) -> int:
        return 1 if self.failed else 0


def describe(error: BaseException) -> str:
    """One line for an error: the message, then status, code and request id when known."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    details = []
    status = getattr(error, "status_code", None)
    if status is not None:
        details.append(f"HTTP {status}")
    code = getattr(error, "code", None)
    if isinstance(code, str) and code:
        details.append(f"code {code}")
    request_id = getattr(error, "request_id", None)
    if request_id:
        details.append(f"request id {request_id}")
    retries = getattr(error, "retries", 0)
    if retries:
        details.append(f"after {retries} retr{'y' if retries == 1 else 'ies'}")
    return f"{message} ({', '.join(details)})" if details else message


# -- ids from the command line and stdin ---------------------------------------------


def _id_from_line(line: str, number: int) -> str | None:
    text = line.strip()
    if not text:
        return None
    if not text.startswith("{"):
        return text
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"stdin line {number} is not valid JSON") from None
    video_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(video_id, str) or not video_id:
        raise UsageError(f"stdin line {number} has no string 'id' field")
    return video_id


async def _stdin_lines(stdin: TextIO) -> AsyncIterator[str]:
    """Lines of stdin as they arrive, read by a daemon thread.

    A daemon thread rather than the loop's executor: a read blocked on a
    terminal must not keep the process alive after Ctrl-C.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def read() -> None:
        try:
            for line in stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, _EOF)
        except RuntimeError:  # the loop is closed: the command ended before stdin did
            return

    threading.Thread(target=read, name="asyncvideos-stdin", daemon=True).start()
    while (item := await queue.get()) is not _EOF:
        assert isinstance(item, str)
        yield item


async def ids_from(ctx: Context, values: list[str]) -> AsyncIterator[str]:
    """The ids given, with each ``-`` replaced by the ids read from stdin."""
    if values.count("-") > 1:
        raise UsageError("'-' (read ids from stdin) may be given only once")
    for value in values:
        if value != "-":
            yield value
            continue
        number = 0
        async for line in _stdin_lines(ctx.stdin):
            number += 1
            video_id = _id_from_line(line, number)
            if video_id is not None:
                yield video_id


async def _in_order(
    ctx: Context, ids: AsyncIterator[str], call: Callable[[str], Awaitable[T]]
) -> AsyncIterator[T]:
    """``call(id)`` for each id, ``WINDOW`` at a time, results in order; failures reported."""

    async def run(video_id: str) -> T | None:
        try:
            return await call(video_id)
        except AsyncVideosError as error:
            ctx.report(f"{video_id}: {describe(error)}")
            return None

    pending: deque[asyncio.Future[T | None]] = deque()
    try:
        async for video_id in ids:
            pending.append(asyncio.ensure_future(run(video_id)))
            if len(pending) >= WINDOW:
                result = await pending.popleft()
                if result is not None:
                    yield result
        while pending:
            result = await pending.popleft()
            if result is not None:
                yield result
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


# -- commands -------------------------------------------------------------------------


async def get(ctx: Context, client: AsyncVideos) -> int:
    """``get ID...``"""
    async for video in _in_order(ctx, ids_from(ctx, ctx.args.ids), client.retrieve):
        ctx.out.video(video)
    return ctx.code


async def list_(ctx: Context, client: AsyncVideos) -> int:
    """``list``: printed as the pages arrive."""
    args = ctx.args
    options: dict[str, Any] = {"order": args.order, "after": args.after, "all": args.all}
    if args.limit is not None:
        options["limit"] = args.limit
    async for video in client.list(**options):
        ctx.out.video(video)
    return 0


async def delete(ctx: Context, client: AsyncVideos) -> int:
    """``delete ID...``"""
    async for deleted in _in_order(ctx, ids_from(ctx, ctx.args.ids), client.delete):
        ctx.out.deleted(deleted)
    return ctx.code


async def _finish(ctx: Context, client: AsyncVideos, video: Video) -> Video:
    """Wait on one job with a live display when ``--wait`` was given."""
    if not ctx.args.wait:
        return video
    with wait_display(ctx.console, [video.id]) as display:
        display.job(video)
        return await client.wait(video, timeout=ctx.args.wait_timeout, on_progress=display.job)


def _outcome(ctx: Context, video: Video) -> int:
    ctx.out.video(video)
    if video.is_failed:
        detail = f": {video.error.code}: {video.error.message}" if video.error else ""
        ctx.report(f"{video.id} failed{detail}")
    return ctx.code


async def create(ctx: Context, client: AsyncVideos) -> int:
    """``create PROMPT``"""
    args = ctx.args
    reference = None if args.input_reference is None else Path(args.input_reference)
    video = await client.create(
        args.prompt,
        model=args.model,
        seconds=args.seconds,
        size=args.size,
        input_reference=reference,
    )
    return _outcome(ctx, await _finish(ctx, client, video))


async def remix(ctx: Context, client: AsyncVideos) -> int:
    """``remix ID PROMPT``"""
    video = await client.remix(ctx.args.id, ctx.args.prompt)
    return _outcome(ctx, await _finish(ctx, client, video))


async def wait(ctx: Context, client: AsyncVideos) -> int:
    """``wait ID...``: every job polled together; each printed as it finishes."""
    ids = [video_id async for video_id in ids_from(ctx, ctx.args.ids)]
    with wait_display(ctx.console, ids) as display:
        results = client.wait_many(ids, timeout=ctx.args.wait_timeout, on_progress=display.job)
        async for result in results:
            if result.error is not None:
                display.job_error(result.video_id, type(result.error).__name__)
                ctx.report(f"{result.video_id}: {describe(result.error)}")
                continue
            assert result.video is not None
            _outcome(ctx, result.video)
    return ctx.code


async def download(ctx: Context, client: AsyncVideos) -> int:
    """``download ID``: atomic and resumable, with a byte bar."""
    args = ctx.args
    video: Video | str = args.id
    if args.wait:
        video = await _finish(ctx, client, await client.retrieve(args.id))
        if not video.is_completed:
            ctx.report(f"{video.id} ended as {video.status}; there is nothing to download")
            return ctx.code
    target = Path(args.output or f"{args.id}{VARIANT_SUFFIXES[args.variant]}")
    with download_display(ctx.console, f"{args.id} {args.variant}") as display:
        path = await client.download(
            video, target, variant=args.variant, overwrite=args.overwrite, on_progress=display.bytes
        )
    ctx.out.downloaded(args.id, args.variant, str(path), path.stat().st_size)
    return 0


COMMANDS: dict[str, Callable[[Context, AsyncVideos], Awaitable[int]]] = {
    "get": get,
    "list": list_,
    "create": create,
    "remix": remix,
    "delete": delete,
    "wait": wait,
    "download": download,
}

__all__ = ["COMMANDS", "Context", "Display", "UsageError", "describe", "ids_from"]
