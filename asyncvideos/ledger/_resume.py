"""The last step of a ledgered job, and the way back to it: downloads and ``resume()``.

A download through the ledger records its target before the first byte (so
``resume()`` can finish it) and, once the file is whole and on disk, its size
and SHA-256 (hashed while writing). A job whose recorded file is present and
whole is not downloaded again. A job whose content expired before it was
downloaded becomes ``expired`` and fails with ``ContentExpiredError``.

``resume()`` takes every unfinished entry (intent, ambiguous, created, and
completed with a target or a ``download_dir``), settles it (reconciling an
intent by the client's policy), waits for it, downloads it where a target is
known, and yields one ``WaitResult`` per entry, in completion order, as
``wait_many`` does. Knows no SQL and no HTTP: the client hands it ``Calls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import os
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from .._download import Digest
from .._errors import (
    ContentExpiredError,
    NotFoundError,
    WaitTimeoutError,
)
from .._models import Video
from .._waiting import WaitFailure, WaitResult, WaitSuccess
from ._flow import Journal, Retrieve, Send
from ._store import Change, Entry, State

__all__ = ["Calls", "download", "resume"]

_DOWNLOADABLE: tuple[State, ...] = ("created", "completed", "downloaded")
_RESUMED: tuple[State, ...] = ("intent", "ambiguous", "created", "completed")
_SUFFIXES = {"video": ".mp4", "thumbnail": ".webp", "spritesheet": ".jpg"}
_NOT_IN_A_NAME = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|]')
#: Writes the job's content to a path: (video id, variant, path, overwrite, digest).
Write = Callable[[str, str, Path, bool, Digest], Awaitable[Path]]


class Calls(Protocol):
    """What ``resume()`` needs of the client (with its default options)."""

    @property
    def send(self) -> Send: ...

    @property
    def retrieve(self) -> Retrieve: ...

    @property
    def write(self) -> Write: ...

    async def wait(self, video_id: str, key: str, status: str | None, seen: list[Video]) -> Video:
        """Wait on the job, recording its statuses to the entry ``key``; each
        state polled is appended to ``seen``."""


def absolute(path: str | os.PathLike[str]) -> str:
    """The path as the ledger records it: absolute, so another working folder
    (a restarted service) finds the same file. (A getcwd, not blocking I/O.)"""
    return os.path.abspath(path)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _whole(path: Path, size: int | None, sha256: str | None) -> bool:
    """Whether ``path`` holds exactly the recorded bytes (size, then SHA-256)."""
    if size is None or sha256 is None:
        return False
    try:
        if os.stat(path).st_size != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256


def _expired(entry: Entry, journal: Journal, *, margin: bool) -> bool:
    """Whether the content is past ``expires_at`` (by more than ``clock_skew`` with
    ``margin``: then no request is worth making)."""
    expires = entry.expires_at
    if expires is None:
        return False
    slack = timedelta(seconds=journal.clock_skew)
    return _now() > (expires + slack if margin else expires - slack)


async def _mark_expired(journal: Journal, entry: Entry, cause: BaseException | None) -> None:
    await journal.store.update(
        entry.key, Change(state="expired", lease="release"), states=_DOWNLOADABLE
    )
    raise ContentExpiredError(
        f"The content of video job {entry.video_id} expired at {entry.expires_at} before "
        "it was downloaded",
        video_id=entry.video_id or "",
        expires_at=entry.expires_at,
    ) from cause


def _stale_parts(target: Path) -> None:
    """Remove the temporary files an interrupted download to ``target`` left."""
    with contextlib.suppress(OSError):
        for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
            with contextlib.suppress(OSError):
                leftover.unlink()


async def download(
    journal: Journal,
    entry: Entry,
    target: Path,
    variant: str,
    overwrite: bool,
    write: Write,
) -> Path:
    """Download ``entry``'s content to ``target`` through the ledger."""
    store = journal.store
    place = absolute(target)
    if entry.state == "expired":
        await _mark_expired(journal, entry, None)
    if entry.state not in _DOWNLOADABLE:  # failed, say: the server's answer decides
        return await write(entry.video_id or "", variant, target, overwrite, Digest())
    owner = journal.owner()
    while True:
        if await _already_there(entry, place, variant, target):
            return target  # present and whole: nothing to fetch
        if _expired(entry, journal, margin=True):
            await _mark_expired(journal, entry, None)
        claimed = await store.claim(
            entry.key,
            owner=owner,
            states=_DOWNLOADABLE,
            replacing=entry.owner if _gone(entry.owner) else None,
        )
        if claimed is not None:
            # Read afresh with the lease: another process may have finished it
            # since ``entry`` was read.
            if await _already_there(claimed, place, variant, target):
                await _give_back(journal, entry.key, owner)
                return target
            break
        await asyncio.sleep(journal.poll_interval)  # another process downloads it
        current = await store.get(entry.key)
        if current is None:  # pragma: no cover - an entry is never deleted
            raise RuntimeError(f"The ledger has no entry {entry.key!r}")
        if current.state == "expired":
            await _mark_expired(journal, current, None)
        entry = current
    # A file at a target this entry recorded is ours, from an attempt that did
    # not get to record it: it is replaced, and its leftovers removed.
    ours = claimed.target == place and claimed.variant == variant
    try:
        if ours:
            await asyncio.to_thread(_stale_parts, target)
        else:  # the target, durable before the first byte, so resume() can finish it
            change = Change(target=place, variant=variant)
            await store.update(entry.key, change, states=_DOWNLOADABLE, owner=owner)
    except BaseException:
        await _give_back(journal, entry.key, owner)
        raise
    digest = Digest()
    try:
        async with journal.renewing(entry.key, owner, _DOWNLOADABLE):
            await write(entry.video_id or "", variant, target, overwrite or ours, digest)
    except NotFoundError as error:
        if _expired(claimed, journal, margin=False):
            await _mark_expired(journal, claimed, error)
        await _give_back(journal, entry.key, owner)
        raise
    except BaseException:
        await _give_back(journal, entry.key, owner)
        raise
    change = Change(
        state="downloaded",
        content_size=digest.size,
        content_sha256=digest.hexdigest(),
        downloaded_at=_now(),
        lease="release",
    )
    await store.update(entry.key, change, states=_DOWNLOADABLE, owner=owner)
    return target


async def _already_there(entry: Entry, place: str, variant: str, target: Path) -> bool:
    """Whether the entry's recorded download is this one, present and whole."""
    return (
        entry.state == "downloaded"
        and entry.target == place
        and entry.variant == variant
        and await asyncio.to_thread(_whole, target, entry.content_size, entry.content_sha256)
    )


def _gone(owner: str | None) -> bool:
    from ._owners import owner_is_dead

    return owner is not None and owner_is_dead(owner)


async def _give_back(journal: Journal, key: str, owner: str) -> None:
    await journal.release(key, owner, _DOWNLOADABLE)


def file_name(video_id: str, variant: str) -> str:
    """A plain file name for a job's content: an id never chooses the folder."""
    name = re.sub(r"^\.", "_", _NOT_IN_A_NAME.sub("_", video_id))[:200] or "_"
    return name + _SUFFIXES.get(variant, "")


async def resume(
    journal: Journal,
    calls: Calls,
    *,
    timeout: float | None,
    download_dir: Path | None,
) -> AsyncGenerator[WaitResult, None]:
    """One ``WaitResult`` per unfinished entry, as each one finishes."""
    entries = [
        entry
        for entry in await journal.store.entries(state=_RESUMED)
        if entry.state != "completed" or entry.target is not None or download_dir is not None
    ]
    results: asyncio.Queue[WaitResult] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout

    async def one(entry: Entry) -> None:
        last: list[Video] = []
        try:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            video = await asyncio.wait_for(
                _finish(journal, calls, entry, download_dir, last), remaining
            )
        except asyncio.TimeoutError:
            seen = last[-1] if last else None
            video_id = entry.video_id or (seen.id if seen else "")
            error = WaitTimeoutError(
                f"Video job {video_id or entry.key} did not finish within {timeout} s",
                video=seen,
                video_id=video_id,
            )
            results.put_nowait(WaitFailure(video_id, seen, error, key=entry.key))
        except Exception as exc:  # this entry's failure, reported with it
            seen = last[-1] if last else None
            video_id = entry.video_id or (seen.id if seen else "")
            results.put_nowait(WaitFailure(video_id, seen, exc, key=entry.key))
        else:
            results.put_nowait(WaitSuccess(video.id, video, key=entry.key))

    tasks = [asyncio.ensure_future(one(entry)) for entry in entries]
    try:
        for _ in entries:
            yield await results.get()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _finish(
    journal: Journal,
    calls: Calls,
    entry: Entry,
    download_dir: Path | None,
    last: list[Video],
) -> Video:
    """Settle, wait for and download one entry; its final state."""
    video: Video | None = None
    if entry.state in ("intent", "ambiguous"):
        video = await journal.settle(entry, calls.send, calls.retrieve)
        last.append(video)
        entry = await journal.store.get(entry.key) or entry
    video_id = entry.video_id
    if video_id is None:  # pragma: no cover - settle() gives a job or raises
        raise RuntimeError(f"The ledger entry {entry.key!r} has no job")
    if entry.state == "created":
        video = await calls.wait(video_id, entry.key, entry.status, last)
        last.append(video)
        entry = await journal.store.get(entry.key) or entry
    elif video is None:
        video = await calls.retrieve(video_id)
        last.append(video)
    target: Path | None = None
    variant = entry.variant or "video"
    if entry.target is not None:
        target = Path(entry.target)
    elif download_dir is not None:
        target = download_dir / file_name(video_id, variant)
    if video.is_completed and target is not None and entry.state in _DOWNLOADABLE:
        await download(journal, entry, target, variant, False, calls.write)
    return video
