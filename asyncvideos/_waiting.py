"""Waiting for jobs to finish: one job, or many at once. Knows no HTTP.

``wait_for`` polls through a ``fetch()`` function that returns the job and the
server's ``openai-poll-after-ms`` hint. ``wait_many`` runs one such loop per
job and reports each job's outcome, failures included, for that job alone;
how many requests are in flight at once is the fetch functions' business
(``AsyncVideos.wait_many`` gives them one semaphore, held per attempt).

With a ``WebhookReceiver``, each loop sleeps until its job's event arrives or
the fallback interval passes, whichever is first, and then fetches once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal, TypeAlias, TypeGuard

import attrs

from ._callbacks import call_back
from ._errors import VideoFailedError, WaitTimeoutError
from ._models import Video
from ._retry import MIN_WAIT
from ._telemetry import WaitRecord
from ._webhooks import Watch, WebhookReceiver

Fetch = Callable[[], Awaitable[tuple[Video, "float | None"]]]
OnProgress: TypeAlias = Callable[[Video], Any]
"""``on_progress(video)`` of the waits: a sync or async callable given the job's new
state when its status or progress changes (and the state a wait starts from)."""
#: A scope around one job's wait (a span, when tracing), given the job's id.
Observe = Callable[[str], AbstractContextManager[WaitRecord]]
#: One job for ``wait_many``: its id, how to fetch it, and its state when known.
Job = tuple[str, Fetch, "Video | None"]
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_FALLBACK_INTERVAL = 60.0
#: A floor under every interval, the caller's own ``poll_interval`` included.
MIN_POLL_INTERVAL = 0.01
#: A floor under the server's ``openai-poll-after-ms`` hint, as under its retry
#: waits: a server cannot make a wait poll faster than this, unless the caller
#: asked for faster polls with ``poll_interval``.
MIN_POLL_HINT = MIN_WAIT
#: Events that say a job has finished: after one, the job is polled at the
#: normal rate until the server agrees (it may lag the event by a moment).
FINAL_EVENTS = frozenset({"video.completed", "video.failed"})


@attrs.frozen(slots=True)
class WaitSuccess:
    """A job that reached a final status (``completed``, ``failed``, ...): ``video``
    is its final state. ``ok`` is True and ``error`` None. ``key`` is the job's
    ledger key in the results of ``resume()`` (None elsewhere)."""

    video_id: str
    video: Video
    error: None = None
    key: str | None = None
    ok: ClassVar[Literal[True]] = True


@attrs.frozen(slots=True)
class WaitFailure:
    """A job that could not be waited on to the end: ``error`` says why (a
    ``NotFoundError``, a ``WaitTimeoutError``, an exception raised by
    ``on_progress``, ...); ``video`` is the last state seen, if any. ``ok`` is False.
    In the results of ``resume()``, ``key`` is the job's ledger key, and
    ``video_id`` is ``""`` for an entry the server's id is not known of (an
    ``AmbiguousCreateError``)."""

    video_id: str
    video: Video | None
    error: Exception
    key: str | None = None
    ok: ClassVar[Literal[False]] = False


#: What ``wait_many`` reports for one job: ``if result.ok:`` narrows it to a
#: ``WaitSuccess`` (for mypy; pyright narrows on ``result.error is None`` or
#: ``isinstance(result, WaitSuccess)``).
WaitResult: TypeAlias = WaitSuccess | WaitFailure


@attrs.define(slots=True)
class _Poller:
    fetch: Fetch
    video_id: str
    waiting: frozenset[str]
    poll_interval: float | None
    on_progress: OnProgress | None
    #: The last state seen: the ``Video`` the caller passed in, then each poll's.
    last: Video | None = None
    watch: Watch | None = None
    fallback_interval: float = DEFAULT_FALLBACK_INTERVAL
    polls: int = 0

    async def run(self) -> Video:
        if self.last is not None:
            await self._report(self.last)
        watch = self.watch
        catching_up = False
        if watch is not None and self.last is not None and self.last.status in self.waiting:
            # The state is known and pending: nothing to ask the server until
            # the job's event comes (or the fallback interval passes).
            event = await watch.wait(self._fallback())
            catching_up = event is not None and event.type in FINAL_EVENTS
        while True:
            video, hint = await self.fetch()
            self.polls += 1
            previous, self.last = self.last, video
            if previous is None or (previous.status, previous.progress) != (
                video.status,
                video.progress,
            ):
                await self._report(video)
            if video.status not in self.waiting:
                return video
            if watch is None or catching_up:
                # The server's hint wins: it knows when the next state is due.
                interval = (
                    self._hinted(hint)
                    if hint is not None
                    else self.poll_interval or DEFAULT_POLL_INTERVAL
                )
            else:
                # Events say when the job is done; polls only cover lost events.
                interval = self._fallback()
            if watch is None:
                await asyncio.sleep(max(interval, MIN_POLL_INTERVAL))
            else:
                event = await watch.wait(max(interval, MIN_POLL_INTERVAL))
                if event is not None and event.type in FINAL_EVENTS:
                    catching_up = True

    def _hinted(self, hint: float) -> float:
        """The server's hint, floored: at ``MIN_POLL_HINT``, or at the caller's shorter
        ``poll_interval`` (the caller's choice, not the server's)."""
        floor = MIN_POLL_HINT
        if self.poll_interval is not None and self.poll_interval < floor:
            floor = self.poll_interval
        return max(hint, floor)

    def _fallback(self) -> float:
        return self.poll_interval if self.poll_interval is not None else self.fallback_interval

    async def _report(self, video: Video) -> None:
        if self.on_progress is not None:
            await call_back(self.on_progress, video)


def _known_finished(start: Video | None, waiting: frozenset[str]) -> TypeGuard[Video]:
    """Whether a ``Video`` the caller passed in is already final (no poll needed)."""
    return start is not None and start.status is not None and start.status not in waiting


@contextlib.contextmanager
def _watching(webhooks: WebhookReceiver | None, video_id: str) -> Iterator[Watch | None]:
    if webhooks is None:
        yield None
        return
    with webhooks.watch(video_id) as watch:
        yield watch


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
    webhooks: WebhookReceiver | None = None,
    fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
    observe: Observe | None = None,
) -> Video:
    """Poll until the job leaves ``waiting``; bounded by ``timeout`` overall."""
    poller = _Poller(fetch, video_id, waiting, poll_interval, on_progress, start)
    poller.fallback_interval = fallback_interval
    if _known_finished(start, waiting):
        video = start
    else:
        with _watching(webhooks, video_id) as poller.watch:
            try:
                return await _run(poller, timeout, observe, raise_on_failure=raise_on_failure)
            except asyncio.TimeoutError:
                raise WaitTimeoutError(
                    f"Video job {video_id} did not finish within {timeout} s "
                    f"(last status: {poller.last.status if poller.last else 'unknown'})",
                    video=poller.last,
                    video_id=video_id,
                ) from None
    if raise_on_failure and video.is_failed:
        raise VideoFailedError(video)
    return video


async def _run(
    poller: _Poller, timeout: float | None, observe: Observe | None, *, raise_on_failure: bool
) -> Video:
    """The poller's run within ``timeout``, inside ``observe``'s scope when given."""
    scope = nullcontext(None) if observe is None else observe(poller.video_id)
    with scope as record:
        try:
            video = await asyncio.wait_for(poller.run(), timeout)
        finally:
            if record is not None:
                record.polls = poller.polls
                record.status = poller.last.status if poller.last is not None else None
        if raise_on_failure and video.is_failed:
            raise VideoFailedError(video)
        return video


class _Fed:
    """Put on the results queue once every job of an async source is started."""


_FED = _Fed()


async def wait_many(
    jobs: Iterable[Job] | AsyncIterable[Job],
    *,
    waiting: frozenset[str],
    timeout: float | None,
    poll_interval: float | None,
    on_progress: OnProgress | None,
    webhooks: WebhookReceiver | None = None,
    fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
    observe: Observe | None = None,
) -> AsyncGenerator[WaitResult, None]:
    """Yield a ``WaitResult`` per job as each one finishes, in completion order.

    Each job is ``(id, fetch, start)``; a ``start`` that is already finished is
    reported without a request. From an async iterable, each job starts as it
    arrives, and the run ends when the iterable is exhausted and every job is
    reported; an exception the iterable raises ends the run with it. When
    ``timeout`` passes, the iterable is read no further.
    """
    results: asyncio.Queue[WaitResult | _Fed | Exception] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    tasks: set[asyncio.Task[None]] = set()
    launched = 0

    async def one(video_id: str, fetch: Fetch, start: Video | None) -> None:
        if _known_finished(start, waiting):
            results.put_nowait(WaitSuccess(video_id, start))
            return
        poller = _Poller(fetch, video_id, waiting, poll_interval, on_progress, start)
        poller.fallback_interval = fallback_interval
        remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
        try:
            with _watching(webhooks, video_id) as poller.watch:
                video = await _run(poller, remaining, observe, raise_on_failure=False)
        except asyncio.TimeoutError:
            error = WaitTimeoutError(
                f"Video job {video_id} did not finish within {timeout} s",
                video=poller.last,
                video_id=video_id,
            )
            results.put_nowait(WaitFailure(video_id, poller.last, error))
        except Exception as exc:  # an API error, or on_progress raising: this job's error
            results.put_nowait(WaitFailure(video_id, poller.last, exc))
        else:
            results.put_nowait(WaitSuccess(video_id, video))

    def launch(job: Job) -> None:
        nonlocal launched
        launched += 1
        task = asyncio.ensure_future(one(*job))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    feeder: asyncio.Task[None] | None = None
    expiry: asyncio.TimerHandle | None = None
    if isinstance(jobs, AsyncIterable):
        expired = False

        async def feed(source: AsyncIterable[Job]) -> None:
            try:
                async for job in source:
                    launch(job)
            except asyncio.CancelledError:
                if not expired:
                    raise
            except Exception as exc:  # the source failed: the caller hears of it
                results.put_nowait(exc)
                return
            results.put_nowait(_FED)

        def expire() -> None:
            nonlocal expired
            expired = True
            assert feeder is not None
            feeder.cancel()

        feeder = asyncio.ensure_future(feed(jobs))
        if deadline is not None:
            expiry = loop.call_at(deadline, expire)
        fed = False
    else:
        for job in jobs:
            launch(job)
        fed = True
    reported = 0
    try:
        while not (fed and reported == launched):
            item = await results.get()
            if isinstance(item, _Fed):
                fed = True
                continue
            if isinstance(item, Exception):
                raise item
            reported += 1
            yield item
    finally:
        if expiry is not None:
            expiry.cancel()
        pending = [*tasks, *([feeder] if feeder is not None else [])]
        for task in pending:
            task.cancel()
        # Wait for the cancelled polls to release their connections.
        await asyncio.gather(*pending, return_exceptions=True)
