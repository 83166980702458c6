"""Polling jobs until they finish: one job, or many at once. Knows no HTTP.

``wait_for`` polls through a ``fetch()`` function that returns the job and the
server's ``openai-poll-after-ms`` hint. ``wait_many`` runs one such loop per
job and reports each job's outcome, failures included, for that job alone;
how many requests are in flight at once is the fetch functions' business
(``AsyncVideos.wait_many`` gives them one semaphore, held per attempt).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeGuard

import attrs

from ._errors import AsyncVideosError, VideoFailedError, WaitTimeoutError
from ._models import Video

Fetch = Callable[[], Awaitable[tuple[Video, "float | None"]]]
OnProgress = Callable[[Video], Any]
DEFAULT_POLL_INTERVAL = 1.0
#: A floor under every interval, so that a hint of 0 ms is not a busy loop.
MIN_POLL_INTERVAL = 0.01


@attrs.frozen(slots=True)
class WaitResult:
    """What ``wait_many`` reports for one job.

    ``video`` is the final job (or, after an error, the last state seen, if
    any); ``error`` is None when the job reached a final status.
    """

    video_id: str
    video: Video | None
    error: AsyncVideosError | None = None

    @property
    def ok(self) -> bool:
        """True when the job reached a final status (completed, failed, ...)."""
        return self.error is None


@attrs.define(slots=True)
class _Poller:
    fetch: Fetch
    video_id: str
    waiting: frozenset[str]
    poll_interval: float | None
    on_progress: OnProgress | None
    #: The last state seen: the ``Video`` the caller passed in, then each poll's.
    last: Video | None = None

    async def run(self) -> Video:
        if self.last is not None:
            await self._report(self.last)
        while True:
            video, hint = await self.fetch()
            previous, self.last = self.last, video
            if previous is None or (previous.status, previous.progress) != (
                video.status,
                video.progress,
            ):
                await self._report(video)
            if video.status not in self.waiting:
                return video
            # The server's hint wins: it knows when the next state is due.
            interval = hint if hint is not None else self.poll_interval or DEFAULT_POLL_INTERVAL
            await asyncio.sleep(max(interval, MIN_POLL_INTERVAL))

    async def _report(self, video: Video) -> None:
        if self.on_progress is not None:
            result = self.on_progress(video)
            if inspect.isawaitable(result):
                await result


def _known_finished(start: Video | None, waiting: frozenset[str]) -> TypeGuard[Video]:
    """Whether a ``Video`` the caller passed in is already final (no poll needed)."""
    return start is not None and start.status is not None and start.status not in waiting


async def wait_for(
    fetch: Fetch,
    *,
    video_id: str,
    waiting: frozenset[str],
    timeout: float | None,
    poll_interval: float | None,
    on_progress: OnProgress | None,
    raise_on_failure: bool,
    start: Video | None = None,
) -> Video:
    """Poll until the job leaves ``waiting``; bounded by ``timeout`` overall."""
    poller = _Poller(fetch, video_id, waiting, poll_interval, on_progress, start)
    if _known_finished(start, waiting):
        video = start
    else:
        try:
            video = await asyncio.wait_for(poller.run(), timeout)
        except asyncio.TimeoutError:
            raise WaitTimeoutError(
                f"Video job {video_id} did not finish within {timeout} s "
                f"(last status: {poller.last.status if poller.last else 'unknown'})",
                video=poller.last,
                video_id=video_id,
            ) from None
    if raise_on_failure and video.status == "failed":
        raise VideoFailedError(video)
    return video


async def wait_many(
    jobs: Sequence[tuple[str, Fetch, Video | None]],
    *,
    waiting: frozenset[str],
    timeout: float | None,
    poll_interval: float | None,
    on_progress: OnProgress | None,
) -> AsyncGenerator[WaitResult, None]:
    """Yield a ``WaitResult`` per job as each one finishes, in completion order.

    Each job is ``(id, fetch, start)``; a ``start`` that is already finished is
    reported without a request.
    """
    if not jobs:
        return
    results: asyncio.Queue[WaitResult | Exception] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout

    async def one(video_id: str, fetch: Fetch, start: Video | None) -> None:
        if _known_finished(start, waiting):
            results.put_nowait(WaitResult(video_id, start))
            return

        poller = _Poller(fetch, video_id, waiting, poll_interval, on_progress, start)
        remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
        try:
            video = await asyncio.wait_for(poller.run(), remaining)
        except asyncio.TimeoutError:
            error: AsyncVideosError = WaitTimeoutError(
                f"Video job {video_id} did not finish within {timeout} s",
                video=poller.last,
                video_id=video_id,
            )
            results.put_nowait(WaitResult(video_id, poller.last, error))
        except AsyncVideosError as exc:
            results.put_nowait(WaitResult(video_id, poller.last, exc))
        except Exception as exc:  # a bug in on_progress, say: it ends the whole run
            results.put_nowait(exc)
        else:
            results.put_nowait(WaitResult(video_id, video))

    tasks = [asyncio.ensure_future(one(*job)) for job in jobs]
    try:
        for _ in tasks:
            item = await results.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        for task in tasks:
            task.cancel()
        # Wait for the cancelled polls to release their connections.
        await asyncio.gather(*tasks, return_exceptions=True)
