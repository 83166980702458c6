"""Content bodies read in chunks, resumed after a drop, and written atomically.

``read_content`` knows no HTTP details beyond ``Range``: it is given a way to
open the body from an offset, and yields ``(offset, chunk)`` so that a writer
knows when a server that ignores ``Range`` made it start over.
``write_atomically`` puts the bytes in a temporary file beside the target and
renames it into place only when the body is whole, so the target is either
the complete file or untouched, also when the task is cancelled.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import secrets
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from ._errors import APIConnectionError
from ._http import StreamedResponse

logger = logging.getLogger("asyncvideos")

OpenBody = Callable[[int], AbstractAsyncContextManager[StreamedResponse]]
ProgressCallback = Callable[[int, "int | None"], Any]
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _total_size(response: StreamedResponse, offset: int) -> int | None:
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match and match.group(3) != "*":
            return int(match.group(3))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _honours_range(response: StreamedResponse, offset: int) -> bool:
    if response.status != 206:
        return False
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    return match is not None and int(match.group(1)) == offset


async def read_content(
    open_body: OpenBody,
    *,
    chunk_size: int,
    max_resumes: int,
    may_restart: bool,
    sizes: list[int | None] | None = None,
) -> AsyncGenerator[tuple[int, bytes], None]:
    """Yield ``(offset, chunk)`` for a whole body, resuming after dropped connections.

    After a drop, the body is asked for again from the bytes received, with
    ``Range``, when the server said ``Accept-Ranges: bytes``; a 206 whose
    ``Content-Range`` starts at that offset is checked for. Otherwise, when
    ``may_restart``, the body starts over (offset 0 again); else the error is
    raised. ``sizes``, when given, receives the total size once it is known.
    """
    received = 0
    resumes = 0
    while True:
        async with open_body(received) as response:
            if received and not _honours_range(response, received):
                if not may_restart:
                    raise APIConnectionError(
                        "The connection dropped and the server cannot resume the body "
                        f"from byte {received}"
                    )
                logger.info("Server ignored Range; restarting the download from byte 0")
                received = 0
            accepts_ranges = response.headers.get("Accept-Ranges", "").lower() == "bytes"
            if sizes is not None:
                sizes.append(_total_size(response, received))
            try:
                async for chunk in response.chunks(chunk_size):
                    yield received, chunk
                    received += len(chunk)
                return
            except APIConnectionError as error:
                if resumes >= max_resumes or not (accepts_ranges or may_restart):
                    error.retries = resumes  # each resume is a retry of the body
                    raise
                resumes += 1
                logger.info(
                    "Body cut at byte %d (%s); resuming (%d of %d)",
                    received,
                    error,
                    resumes,
                    max_resumes,
                )
                if not accepts_ranges:
                    received = 0


async def _report(on_progress: ProgressCallback | None, done: int, total: int | None) -> None:
    if on_progress is None:
        return
    result = on_progress(done, total)
    if inspect.isawaitable(result):
        await result


def _create_temp(path: Path) -> tuple[int, str]:
    """Create ``.{name}.{random}.part`` beside ``path``, new and empty.

    Not ``tempfile.mkstemp``: its files are private (0600) and the rename would
    give the download those permissions; here the umask applies, as for any file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        name = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:  # pragma: no cover - a 48-bit random name collided
            continue


async def write_atomically(
    chunks: AsyncGenerator[tuple[int, bytes], None],
    path: Path,
    *,
    sizes: list[int | None],
    on_progress: ProgressCallback | None,
    overwrite: bool,
) -> Path:
    """Write ``(offset, chunk)`` pairs to a temporary file, then move it to ``path``."""
    async with contextlib.aclosing(chunks):
        # The body is opened before anything is created on disk, so an error
        # response (a 404, say) leaves no folder and no file behind.
        item = await anext(chunks, None)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = _create_temp(path)
        try:
            with os.fdopen(fd, "wb") as file:
                written = 0
                while item is not None:
                    offset, chunk = item
                    if offset != written:  # the server made us start over
                        file.seek(offset)
                        file.truncate()
                        written = offset
                    # Plain writes: a chunk lands in the page cache in microseconds,
                    # far less than a thread hop would cost per chunk.
                    file.write(chunk)
                    written += len(chunk)
                    await _report(on_progress, written, sizes[-1] if sizes else None)
                    item = await anext(chunks, None)
            _move_into_place(temp_name, path, overwrite=overwrite)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
    return path


def _move_into_place(temp_name: str, path: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp_name, path)
        return
    # A hard link fails if ``path`` exists, so a file that appeared while the
    # body was downloading is never clobbered (os.replace would).
    try:
        os.link(temp_name, path)
    except FileExistsError:
        raise FileExistsError(
            f"path {str(path)!r} appeared during the download; pass overwrite=True to replace it"
        ) from None
    except OSError:  # pragma: no cover - a file system without hard links
        if path.exists():
            raise FileExistsError(f"path {str(path)!r} exists") from None
        os.replace(temp_name, path)
        return
    os.unlink(temp_name)
