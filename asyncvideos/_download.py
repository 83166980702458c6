"""Content bodies read in chunks, resumed after a drop, checked, and written atomically.

``ContentStream`` knows no HTTP details beyond the range headers: it is given a
way to open the body from an offset, and checks every response against what
was asked for (the variant's media type, the ``Content-Range`` of a resume,
the announced size, the content's version through ``If-Range``), so that the
bytes it yields are the content, whole, or an error. ``pieces()`` yields
``(offset, chunk, total)`` so that a writer knows when a download had to start
over. ``write_atomically`` puts the bytes in a temporary file beside the target
and renames it into place only when the body is whole, so the target is either
the complete file or untouched, also when the task is cancelled.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

from ._callbacks import call_back
from ._errors import (
    APIConnectionError,
    APIStatusError,
    AsyncVideosError,
    ContentMismatchError,
    ResponseTooLargeError,
)
from ._http import StreamedResponse
from ._ranges import (
    accepts_byte_ranges,
    content_length,
    if_range_validator,
    parse_content_range,
)

logger = logging.getLogger("asyncvideos")

OpenBody = Callable[[int, "str | None"], AbstractAsyncContextManager[StreamedResponse]]
"""Opens the body from a byte offset (0: the whole body), with an ``If-Range`` value."""
Piece = tuple[int, bytes, "int | None"]
"""``(offset, chunk, total)``: where the chunk goes, its bytes, the whole size if known."""
ProgressCallback: TypeAlias = Callable[[int, "int | None"], Any]
"""``on_progress(done, total)`` of ``download()``: a sync or async callable given the
bytes written so far and the whole size (None when the server did not say), after
each chunk. ``done`` goes back when a download has to start over."""
_IMAGE_VARIANTS = ("thumbnail", "spritesheet")


def check_media_type(variant: str | None, content_type: str | None) -> None:
    """Refuse a body of the wrong kind for the variant asked for (``None``: the video).

    An image variant must not come as ``video/*``, the video not as ``image/*``:
    a gateway that ignores ``variant`` would otherwise fill a ``.webp`` with MP4
    bytes. A missing or generic type (``application/octet-stream``) is accepted.
    """
    if not content_type:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    wanted, wrong = ("image", "video/") if variant in _IMAGE_VARIANTS else ("video", "image/")
    if media.startswith(wrong):
        raise ContentMismatchError(
            f"Asked for the {variant or 'video'} variant (a {wanted}/* body); "
            f"the server sent {media[:100]!r}"
        )


def check_whole_body(
    variant: str | None, status: int, headers: Mapping[str, str], size: int
) -> None:
    """Refuse a body read whole that is of the wrong media type, or only a part."""
    check_media_type(variant, headers.get("Content-Type"))
    if status != 206:
        return
    # A 206 to a request without Range is usable only when it holds everything.
    value = headers.get("Content-Range")
    given = parse_content_range(value)
    if given is None or given.start != 0 or given.stop != size or given.total != size:
        raise ContentMismatchError(
            f"Asked for the whole body; the server sent a 206 of {size} bytes "
            f"with Content-Range {(value or '(none)')[:100]!r}"
        )


def check_unencoded(headers: Mapping[str, str]) -> None:
    """Refuse content in a ``Content-Encoding``: it is asked for as ``identity``.

    A compressed answer would inflate to any size (254 KiB of gzip is 256 MiB
    of zeros), and its length and ranges would count compressed bytes.
    """
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise ContentMismatchError(
            "Asked for the content unencoded (Accept-Encoding: identity); "
            f"the server sent it in {encoding[:40]!r} encoding"
        )


class ContentStream:
    """One content body, as ``AsyncVideos.open_content()`` gives it (not made directly).

    Entering it opens and checks the first response; then ``content_length``
    (the whole body's size, or None when the server did not say) and
    ``content_type`` are known, and ``async for chunk in stream`` reads the
    body (once). ``pieces()`` yields ``(offset, chunk, total)`` instead, for a
    writer. After a drop, or a body that ends before its announced size, the
    body is asked for again from the bytes received (``Range``, with
    ``If-Range`` naming the version already held) when the server accepts
    ranges; else, when ``may_restart``, from the start; else the error is
    raised. A resumed answer that is not the asked-for bytes of the same
    version is never used: the body starts over (``may_restart``) or
    ``ContentMismatchError`` is raised; so is a resume answered ``416 Range
    Not Satisfiable``. Each new request counts against ``max_resumes``. A body
    over ``max_bytes`` (None: no ceiling), announced or received, raises
    ``ResponseTooLargeError`` before any byte past it is handed over. Leaving
    the block gives the connection back.
    """

    def __init__(
        self,
        open_body: OpenBody,
        *,
        variant: str | None,
        chunk_size: int,
        max_resumes: int,
        may_restart: bool,
        max_bytes: int | None = None,
    ) -> None:
        self._open_body = open_body
        self._max_bytes = max_bytes
        self._variant = variant
        self._chunk_size = chunk_size
        self._max_resumes = max_resumes
        self._may_restart = may_restart
        self._opened: AbstractAsyncContextManager[StreamedResponse] | None = None
        self._response: StreamedResponse | None = None
        self._iterator: AsyncGenerator[Piece, None] | None = None
        self._chunks: AsyncGenerator[bytes, None] | None = None
        self._resumes = 0
        self._received = 0
        self._stop: int | None = None  # where the current response's bytes end, if said
        self._validator: str | None = None
        self._ranges = False
        self._total: int | None = None
        self._type: str | None = None

    @property
    def content_length(self) -> int | None:
        """The size of the whole body in bytes, when the server said it."""
        return self._total

    @property
    def content_type(self) -> str | None:
        """The body's ``Content-Type``, as the server sent it."""
        return self._type

    @property
    def received(self) -> int:
        """How many bytes of the body have been handed over so far."""
        return self._received

    @property
    def resumes(self) -> int:
        """How many times the body was asked for again after a drop or a mismatch."""
        return self._resumes

    async def __aenter__(self) -> ContentStream:
        try:
            self._adopt(await self._open(0))
        except BaseException as error:
            await self._release(error)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and give the connection back; idempotent."""
        if self._chunks is not None:
            await self._chunks.aclose()
        if self._iterator is not None:
            await self._iterator.aclose()
        await self._release()

    def __aiter__(self) -> AsyncIterator[bytes]:
        pieces = self.pieces()
        self._chunks = _chunks_of(pieces)
        return self._chunks

    def pieces(self) -> AsyncGenerator[Piece, None]:
        """``(offset, chunk, total)`` for the whole body; a stream is read once."""
        if self._response is None or self._iterator is not None:
            raise RuntimeError("a content stream is read once, inside its async with block")
        self._iterator = self._read()
        return self._iterator

    # -- opening and checking responses ------------------------------------

    async def _open(self, offset: int) -> StreamedResponse:
        opened = self._open_body(offset, self._validator if offset else None)
        response = await opened.__aenter__()
        self._opened, self._response = opened, response
        return response

    async def _release(self, error: BaseException | None = None) -> None:
        """Close the current response; an ``error`` raised while it was open is
        passed through it, so that the key is masked in it as in any other."""
        opened, self._opened, self._response = self._opened, None, None
        if opened is None:
            return
        if error is None:
            await opened.__aexit__(None, None, None)
        else:
            await opened.__aexit__(type(error), error, error.__traceback__)

    def _adopt(self, response: StreamedResponse) -> None:
        """Take a response that starts at byte 0 as the body (first, or starting over)."""
        headers = response.headers
        check_media_type(self._variant, headers.get("Content-Type"))
        check_unencoded(headers)
        total: int | None
        if response.status == 206:
            # Partial content to a request for the whole: usable only from byte 0
            # and with the whole size, which the finished body must then reach.
            value = headers.get("Content-Range")
            given = parse_content_range(value)
            if given is None or given.start != 0 or given.total is None:
                raise ContentMismatchError(
                    "Asked for the whole body; the server sent a 206 with "
                    f"Content-Range {(value or '(none)')[:100]!r}"
                )
            total, self._stop, self._ranges = given.total, given.stop, True
        else:
            total = self._stop = content_length(headers.get("Content-Length"))
            self._ranges = accepts_byte_ranges(headers.get("Accept-Ranges"))
        self._check_size(total)
        self._total = total
        self._type = headers.get("Content-Type")
        self._validator = if_range_validator(headers)
        self._received = 0

    def _check_size(self, size: int | None, *, announced: bool = True) -> None:
        """Refuse a body announced (or, while read, grown) past ``max_bytes``."""
        limit = self._max_bytes
        if limit is None or size is None or size <= limit:
            return
        what = f"is {size} bytes" if announced else "grew past that"
        raise ResponseTooLargeError(
            f"The content {what}, over the client's max_download_bytes={limit}; "
            "the connection was closed"
        )

    def _misfit(self, response: StreamedResponse, offset: int) -> str | None:
        """Why a 206 to ``Range: bytes={offset}-`` cannot continue the body, or None."""
        headers = response.headers
        value = headers.get("Content-Range")
        given = parse_content_range(value)
        if given is None:
            return f"a 206 with Content-Range {(value or '(none)')[:100]!r}"
        if given.start != offset:
            return f"bytes from {given.start}"
        total = self._total
        if given.total is not None and total is not None and given.total != total:
            return f"a body of {given.total} bytes instead of {total}"
        etag = (headers.get("ETag") or "").strip()
        ours = self._validator or ""
        if etag.startswith('"') and ours.startswith('"') and etag != ours:
            return f"version {etag[:100]!r} instead of {ours!r}"
        return None

    async def _resume(self, offset: int, cause: AsyncVideosError) -> None:
        """Open the body again from ``offset`` (0: from the start) and check the answer."""
        while True:
            if self._resumes >= self._max_resumes:
                cause.retries = self._resumes  # each resume is a retry of the body
                raise cause
            self._resumes += 1
            await self._release()
            try:
                response = await self._open(offset)
            except APIStatusError as error:
                if error.status_code != 416 or not offset:
                    raise
                # No bytes from there (the content shrank, or the server lost track):
                # as for a misranged 206, the body starts over without Range.
                cause = ContentMismatchError(
                    f"Resumed the body at byte {offset} (of {self._total or 'unknown'}); "
                    "the server answered 416 Range Not Satisfiable"
                )
                if not self._may_restart:
                    raise cause from error
                logger.warning("%s; starting the download over", cause)
                offset = 0
                continue
            if offset == 0:
                self._adopt(response)
                return
            check_media_type(self._variant, response.headers.get("Content-Type"))
            check_unencoded(response.headers)
            if response.status != 206:
                self._whole_again(response, offset)
                return
            problem = self._misfit(response, offset)
            if problem is None:
                given = parse_content_range(response.headers.get("Content-Range"))
                assert given is not None  # checked by _misfit
                if self._total is None:
                    self._check_size(given.total)
                    self._total = given.total
                # No byte past the known size is taken, whatever the range claims.
                total = self._total
                self._stop = given.stop if total is None else min(given.stop, total)
                return
            cause = ContentMismatchError(
                f"Resumed the body at byte {offset} (of {self._total or 'unknown'}); "
                f"the server sent {problem}"
            )
            if not self._may_restart:
                raise cause
            logger.warning("%s; starting the download over", cause)
            offset = 0

    def _whole_again(self, response: StreamedResponse, offset: int) -> None:
        """A 200 to a resume: the server ignored ``Range``, or the content changed."""
        validator = if_range_validator(response.headers)
        changed = self._validator is not None and validator != self._validator
        if not self._may_restart:
            if changed:
                raise ContentMismatchError(
                    f"Resumed the body at byte {offset} of version {self._validator!r}; "
                    f"the content changed (now {(validator or 'unknown')[:100]!r})"
                )
            raise APIConnectionError(
                f"The connection dropped and the server cannot resume the body from byte {offset}"
            )
        if changed:
            logger.warning("The content changed during the download; starting over")
        else:
            logger.info("Server ignored Range; restarting the download from byte 0")
        self._adopt(response)

    # -- reading -----------------------------------------------------------

    async def _read(self) -> AsyncGenerator[Piece, None]:
        limit = self._max_bytes
        try:
            while True:
                response = self._response
                assert response is not None  # opened on entry, reopened by _resume
                cause: AsyncVideosError | None
                try:
                    async with contextlib.aclosing(response.chunks(self._chunk_size)) as chunks:
                        async for chunk in chunks:
                            start = self._received
                            end = start + len(chunk)
                            if self._stop is not None and end > self._stop:
                                raise ContentMismatchError(
                                    f"Expected {self._stop} bytes of the body; the server sent more"
                                )
                            if limit is not None and end > limit:
                                self._check_size(end, announced=False)
                            yield start, chunk, self._total
                            self._received = end
                    cause = self._shortfall()
                    if cause is None:
                        return
                except APIConnectionError as error:
                    cause = error
                await self._carry_on(cause)
        except AsyncVideosError as error:
            await self._release(error)
            raise

    def _shortfall(self) -> ContentMismatchError | None:
        """After a body ended cleanly: why it is not whole yet, or None."""
        # A known size is the whole body's; a 206 may have held less of it.
        expected = self._stop if self._total is None else self._total
        if expected is None or self._received >= expected:
            return None
        return ContentMismatchError(
            f"Expected a body of {expected} bytes; it ended at byte {self._received}"
        )

    async def _carry_on(self, cause: AsyncVideosError) -> None:
        """After a drop or a short body: resume, start over, or raise ``cause``."""
        if not (self._ranges or self._may_restart):
            cause.retries = self._resumes
            raise cause
        logger.info(
            "Body cut at byte %d (%s); resuming (%d of %d)",
            self._received,
            cause,
            self._resumes + 1,
            self._max_resumes,
        )
        await self._resume(self._received if self._ranges else 0, cause)


async def _chunks_of(pieces: AsyncGenerator[Piece, None]) -> AsyncGenerator[bytes, None]:
    async for _, chunk, _ in pieces:
        yield chunk


async def _report(on_progress: ProgressCallback | None, done: int, total: int | None) -> None:
    if on_progress is None:
        return
    await call_back(on_progress, done, total)


# -- the target file --------------------------------------------------------


class Digest:
    """The size and SHA-256 of the bytes a download writes, computed as they are
    written (no second read), and started over when the body does."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def restart(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _existing_mode(path: Path) -> int | None:
    """The permission bits of the regular file at ``path`` (None: nothing there).

    Anything else there (a directory, FIFO, device, socket) is a ValueError:
    a download writes and replaces regular files only.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return stat.S_IMODE(info.st_mode)
    kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
    raise ValueError(
        f"path {str(path)!r} is {kind}; download() writes and replaces regular files only"
    )


def target_path(path: object, overwrite: object) -> Path:
    """Check ``download()``'s target before any request; return it as a ``Path``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
    if not str(path).strip():
        raise ValueError("path must not be empty")
    target = Path(path)
    if _existing_mode(target) is not None and not overwrite:
        raise FileExistsError(f"path {str(target)!r} exists; pass overwrite=True to replace it")
    return target


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
    pieces: AsyncGenerator[Piece, None],
    path: Path,
    *,
    on_progress: ProgressCallback | None,
    overwrite: bool,
    digest: Digest | None = None,
) -> Path:
    """Write ``(offset, chunk, total)`` pieces to a temporary file, then move it to ``path``.

    The body must already be open (an error response raised before any folder
    or file is made). With ``digest``, the bytes are hashed as they are written,
    and the file is flushed to disk (``fsync``) before it is moved into place,
    so that what a ledger records as downloaded is on disk.
    """
    async with contextlib.aclosing(pieces):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = _create_temp(path)
        try:
            with os.fdopen(fd, "wb") as file:
                written = 0
                async for offset, chunk, total in pieces:
                    if offset != written:  # the body started over
                        file.seek(offset)
                        file.truncate()
                        written = offset
                        if digest is not None:
                            _rehash(digest, file, temp_name, offset)
                    # Plain writes: a chunk lands in the page cache in microseconds,
                    # far less than a thread hop would cost per chunk.
                    file.write(chunk)
                    if digest is not None:
                        digest.update(chunk)
                    written += len(chunk)
                    await _report(on_progress, written, total)
                if digest is not None:
                    file.flush()
                    os.fsync(file.fileno())
            _move_into_place(temp_name, path, overwrite=overwrite)
            if digest is not None:
                _sync_folder(path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
    return path


def _sync_folder(folder: Path) -> None:
    """Make a file's new name durable (where folders can be opened: not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - a file system that cannot sync a folder
        pass
    finally:
        os.close(fd)


def _rehash(digest: Digest, file: Any, name: str, offset: int) -> None:
    """Start ``digest`` over at ``offset`` (a body starts over from byte 0)."""
    digest.restart()
    if offset:  # pragma: no cover - a body only ever starts over from byte 0
        file.flush()
        with open(name, "rb") as kept:
            digest.update(kept.read(offset))


def _move_into_place(temp_name: str, path: Path, *, overwrite: bool) -> None:
    if overwrite:
        # Checked again: something else may have taken the path meanwhile.
        mode = _existing_mode(path)
        if mode is not None:
            os.chmod(temp_name, mode)  # the replaced file's permissions are kept
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
