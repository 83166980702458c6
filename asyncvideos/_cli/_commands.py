"""One coroutine per command, each on an open ``AsyncVideos``; they return an exit code.

Commands that take many ids (``get``, ``delete``, ``download``) keep going past a
job that fails (or an id the library refuses), report it on stderr, and exit 1 at
the end; ``get`` and ``delete`` print in the order the ids were given, with up to
``WINDOW`` requests in flight. A command that waits prints every job it waited on,
whatever ends the wait: a job still running is printed with its last state and a
``wait_error``, and a note says how to wait for it again.

While a live display draws on stderr (``live``), error and log lines go
through it, and table rows wait until it is gone, so nothing is glued to a bar
or erased by its next redraw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import attrs

from .._errors import AsyncVideosError, NotFoundError, VideoFailedError, WaitTimeoutError
from .._models import Video
from .._protocol import path_segment
from .._videos import AsyncVideos
from ._args import VARIANT_SUFFIXES
from ._output import Output
from ._progress import Display, download_display, wait_display
from ._terminal import Redacted

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
    err: Redacted  # stderr: secrets masked, control characters shown
    console: Console | None  # for live displays; None: no live display
    stdin: TextIO = attrs.field(factory=lambda: sys.stdin)
    failed: bool = False
    #: Lines for stderr after the command's last error line (``main`` prints them).
    notes: list[str] = attrs.field(factory=list)

    def report(self, message: str) -> None:
        """One error line on stderr; the command will exit 1."""
        self.failed = True
        self.err.write(f"asyncvideos: error: {message}\n")
        self.err.flush()

    @property
    def code(self) -> int:
        return 1 if self.failed else 0

    @contextlib.contextmanager
    def live(self, display: Display) -> Iterator[Display]:
        """Show ``display`` while the block runs, with nothing else drawn over it.

        Meanwhile stderr lines are printed through the display (above its bars), and
        what goes to stdout on a terminal is held, then printed once the display has stopped.
        """
        try:
            with display:
                if display.drawing:
                    self.err.divert = display.print
                    if self.out.tty:
                        self.out.hold()
                try:
                    yield display
                finally:
                    self.err.divert = None
        finally:
            self.out.release()


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


@attrs.frozen
class Given:
    """An id, and where it was given: ``stdin line N``, or None for an argument."""

    id: str
    where: str | None = None

    def __str__(self) -> str:
        return self.id if self.where is None else f"{self.where}: {self.id}"


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


async def ids_from(ctx: Context, values: list[str]) -> AsyncIterator[Given]:
    """The ids given, with each ``-`` replaced by the ids read from stdin."""
    if values.count("-") > 1:
        raise UsageError("'-' (read ids from stdin) may be given only once")
    for value in values:
        if value != "-":
            yield Given(value)
            continue
        number = 0
        async for line in _stdin_lines(ctx.stdin):
            number += 1
            video_id = _id_from_line(line, number)
            if video_id is not None:
                yield Given(video_id, f"stdin line {number}")


async def _in_order(
    ctx: Context, ids: AsyncIterator[Given], call: Callable[[str], Awaitable[T]]
) -> AsyncIterator[T]:
    """``call(id)`` for each id, ``WINDOW`` at a time, results in order; failures reported."""

    async def run(given: Given) -> T | None:
        try:
            return await call(given.id)
        except AsyncVideosError as error:
            ctx.report(f"{given}: {describe(error)}")
        except (ValueError, TypeError) as error:  # an id the library refuses: just this one
            ctx.report(f"{given}: {error}")
        return None

    pending: deque[asyncio.Future[T | None]] = deque()
    try:
        async for given in ids:
            pending.append(asyncio.ensure_future(run(given)))
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


_VERSIONED = re.compile(r"/v\d+[a-z0-9]*/?$")


def _collection_hint(client: AsyncVideos) -> str:
    """For a 404 on ``/videos`` itself: the likely cause, a base URL without ``/v1``."""
    if _VERSIONED.search(client.base_url):
        return ""
    return f"; the base URL {client.base_url} may lack /v1"


async def list_(ctx: Context, client: AsyncVideos) -> int:
    """``list``: printed as the pages arrive."""
    args = ctx.args
    options: dict[str, Any] = {"order": args.order, "after": args.after, "all": args.all}
    if args.limit is not None:
        options["limit"] = args.limit
    elif not args.all:
        # A page on purpose (the command's --help says so): no library hint about --all.
        options["limit"] = 20
    listed = 0
    try:
        async for video in client.list(**options):
            listed += 1
            ctx.out.video(video)
    except NotFoundError as error:
        if listed:  # the collection answered before: not a wrong base URL
            raise
        ctx.report(describe(error) + _collection_hint(client))
    return ctx.code


async def delete(ctx: Context, client: AsyncVideos) -> int:
    """``delete ID...``"""
    async for deleted in _in_order(ctx, ids_from(ctx, ctx.args.ids), client.delete):
        ctx.out.deleted(deleted)
    return ctx.code


def wait_error(error: BaseException) -> dict[str, str]:
    """What ended a wait, for the ``wait_error`` of a job's JSON line."""
    if isinstance(error, (asyncio.CancelledError, KeyboardInterrupt)):
        return {"type": "Interrupted", "message": "the wait was interrupted; the job keeps running"}
    return {"type": type(error).__name__, "message": describe(error)}


def _about(video_id: str, error: BaseException) -> str:
    """An error line for one job: the id first, unless the message already names it."""
    message = describe(error)
    return message if video_id in message else f"{video_id}: {message}"


def _wait_again(ctx: Context, ids: list[str]) -> None:
    """After a wait that did not end: the jobs keep running, and how to wait again."""
    if not ids:
        return
    if len(ids) == 1:
        ctx.notes.append(
            f"asyncvideos: {ids[0]} keeps running on the server; "
            f"wait for it again with: asyncvideos wait {ids[0]}"
        )
        return
    shown = " ".join(ids) if len(ids) <= 5 else f"{ids[0]} ... (the JSON lines with wait_error)"
    ctx.notes.append(
        f"asyncvideos: {len(ids)} jobs keep running on the server; "
        f"wait for them again with: asyncvideos wait {shown}"
    )


async def _finish(ctx: Context, client: AsyncVideos, video: Video) -> Video:
    """Wait on one job with a live display when ``--wait`` was given.

    Whatever ends the wait early (its timeout, an error, Ctrl-C), the job is printed
    with its last state and a ``wait_error``, and stderr says how to wait for it again:
    the job was paid for and keeps running.
    """
    if not ctx.args.wait:
        return video
    last = video

    def seen(update: Video) -> None:
        nonlocal last
        last = update
        display.job(update)

    try:
        with ctx.live(wait_display(ctx.console, [video.id])) as display:
            display.job(video)
            return await client.wait(video, wait_timeout=ctx.args.wait_timeout, on_progress=seen)
    except BaseException as error:
        if isinstance(error, WaitTimeoutError) and error.video is not None:
            last = error.video
        ctx.out.unfinished(video.id, last, wait_error(error))
        _wait_again(ctx, [video.id])
        raise


def _outcome(ctx: Context, video: Video) -> int:
    ctx.out.video(video)
    if video.is_failed:
        ctx.report(describe(VideoFailedError(video)))  # the library's words, not a copy
    return ctx.code


async def create(ctx: Context, client: AsyncVideos) -> int:
    """``create PROMPT``"""
    args = ctx.args
    reference = None if args.input_reference is None else Path(args.input_reference)
    try:
        video = await client.create(
            args.prompt,
            model=args.model,
            seconds=args.seconds,
            size=args.size,
            input_reference=reference,
        )
    except NotFoundError as error:
        ctx.report(describe(error) + _collection_hint(client))
        return ctx.code
    return _outcome(ctx, await _finish(ctx, client, video))


async def remix(ctx: Context, client: AsyncVideos) -> int:
    """``remix ID PROMPT``"""
    video = await client.remix(ctx.args.id, ctx.args.prompt)
    return _outcome(ctx, await _finish(ctx, client, video))


async def _checked_ids(ctx: Context) -> list[str]:
    """The ids given (stdin read to its end); one the library refuses is reported alone,
    as with get and delete."""
    ids = []
    async for given in ids_from(ctx, ctx.args.ids):
        try:
            path_segment(given.id, "video")
        except ValueError as error:
            ctx.report(f"{given}: {error}")
            continue
        ids.append(given.id)
    return ids


async def _wait_all(
    ctx: Context, client: AsyncVideos, ids: list[str], *, print_finished: bool
) -> list[Video]:
    """Wait on ``ids`` together; return the jobs that finished, in completion order.

    Every job gets its line on stdout, whatever happens to the wait: a finished one
    as it finishes (with ``print_finished``; else its caller prints it), one whose wait
    failed or was cut short (a timeout, an error, Ctrl-C) with its last state seen and
    a ``wait_error``.
    """
    last: dict[str, Video | None] = dict.fromkeys(ids)
    finished: list[Video] = []
    running: list[str] = []  # reported unfinished, and still running on the server
    display: Display | None = None

    def seen(video: Video) -> None:
        last[video.id] = video
        assert display is not None
        display.job(video)

    try:
        with ctx.live(wait_display(ctx.console, ids)) as display:
            results = client.wait_many(ids, wait_timeout=ctx.args.wait_timeout, on_progress=seen)
            async for result in results:
                del last[result.video_id]
                if result.error is not None:
                    display.job_error(result.video_id, type(result.error).__name__)
                    ctx.report(_about(result.video_id, result.error))
                    ctx.out.unfinished(result.video_id, result.video, wait_error(result.error))
                    if not isinstance(result.error, NotFoundError):
                        running.append(result.video_id)
                    continue
                assert result.video is not None
                finished.append(result.video)
                if print_finished:
                    _outcome(ctx, result.video)
    except BaseException as error:
        for video_id, video in last.items():  # those the wait never reported
            ctx.out.unfinished(video_id, video, wait_error(error))
        _wait_again(ctx, [*running, *last])
        raise
    _wait_again(ctx, running)
    return finished


async def wait(ctx: Context, client: AsyncVideos) -> int:
    """``wait ID...``: every job polled together; each printed as it finishes."""
    await _wait_all(ctx, client, await _checked_ids(ctx), print_finished=True)
    return ctx.code


_NOT_IN_A_NAME = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|]')


def file_name(video_id: str, suffix: str) -> str:
    """A plain file name for a job's content: never a path, never hidden, never too long.

    An id comes from a listing or stdin, so from the server: ``../../x`` or
    ``/etc/x`` must not choose where the file goes. Separators and control
    characters become ``_``, as does a leading ``.``.
    """
    name = _NOT_IN_A_NAME.sub("_", video_id)
    name = re.sub(r"^\.", "_", name)[:200] or "_"
    return name + suffix


def _download_target(args: argparse.Namespace, video_id: str) -> Path:
    """Where ``download`` writes one job's file; checked before any request for it."""
    target = Path(args.output or file_name(video_id, VARIANT_SUFFIXES[args.variant]))
    # The library checks again when it moves the file in (see the FileExistsError below).
    if not args.overwrite and target.exists() and not target.is_dir():
        raise UsageError(f"{str(target)!r} exists; pass --overwrite to replace it")
    return target


async def download(ctx: Context, client: AsyncVideos) -> int:
    """``download ID...``: atomic and resumable, one file after the other, with a byte bar.

    Files given as arguments are checked before any request (an existing one is a
    usage error); one for an id from stdin is checked when the id arrives and, like a
    failed download, reported while the others go on. With ``--wait`` every job is
    waited on together first (as by ``wait``), then the completed ones are downloaded.
    """
    args = ctx.args
    if args.output is not None and (len(args.ids) > 1 or "-" in args.ids):
        raise UsageError("-o/--output names one file: give one id (files are ./ID.mp4 otherwise)")
    for video_id in args.ids:
        if video_id != "-":
            _download_target(args, video_id)
    if args.wait:
        finished = await _wait_all(ctx, client, await _checked_ids(ctx), print_finished=False)
        for video in finished:
            if video.is_completed:
                await _download_one(ctx, client, video)
            else:
                ctx.out.video(video)
                ctx.report(f"{video.id} ended as {video.status}; there is nothing to download")
        return ctx.code
    async for given in ids_from(ctx, args.ids):
        try:
            await _download_one(ctx, client, given.id)
        except (UsageError, AsyncVideosError, ValueError, TypeError) as error:
            if not ctx.args.ids[1:] and given.where is None:
                raise  # one id: its error is the command's
            ctx.report(f"{given}: {describe(error)}")
    return ctx.code


async def _download_one(ctx: Context, client: AsyncVideos, video: Video | str) -> None:
    args = ctx.args
    video_id = video if isinstance(video, str) else video.id
    target = _download_target(args, video_id)
    try:
        with ctx.live(download_display(ctx.console, f"{video_id} {args.variant}")) as display:
            path = await client.download(
                video,
                target,
                variant=args.variant,
                overwrite=args.overwrite,
                on_progress=display.bytes,
            )
    except FileExistsError:  # it appeared while the body was downloading
        raise UsageError(
            f"{str(target)!r} appeared during the download; pass --overwrite to replace it"
        ) from None
    ctx.out.downloaded(video_id, args.variant, str(path), path.stat().st_size)


async def resume(ctx: Context, client: AsyncVideos) -> int:
    """``resume``: in ``_jobs``, with ``jobs``."""
    from ._jobs import resume as resume_jobs

    return await resume_jobs(ctx, client)


COMMANDS: dict[str, Callable[[Context, AsyncVideos], Awaitable[int]]] = {
    "get": get,
    "retrieve": get,
    "list": list_,
    "create": create,
    "remix": remix,
    "delete": delete,
    "wait": wait,
    "download": download,
    "resume": resume,
}

__all__ = [
    "COMMANDS",
    "Context",
    "Display",
    "Given",
    "UsageError",
    "describe",
    "file_name",
    "ids_from",
]
