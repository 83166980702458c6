"""The cursor loop of ``list(all=True)`` and ``pages()``; it knows no HTTP.

It is a plain ``while`` loop over a ``fetch_page(after)`` function: nothing is
fetched before the first page is asked for, the next page only when the
current one is used up (or, opted in with ``prefetch=1``, while it is being
used), and closing the iterator stops it without another request.

Empty pages that say ``has_more`` are legitimate behind a multi-tenant gateway
(LiteLLM's proxy filters each page by key ownership after paging), so a run of
them is followed, each after a short growing pause, up to ``max_empty_pages``
in a row: a server sending them forever costs no CPU spin, a bounded number of
requests and memory, and the caller can cancel the listing in any pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

import attrs

from . import _retry
from ._errors import AsyncVideosError, PaginationError
from ._models import Video, VideoPage

logger = logging.getLogger("asyncvideos")

FetchPage = Callable[[str | None], Awaitable[VideoPage]]
#: Empty pages that say ``has_more`` followed in a row before the listing stops
#: (``AsyncVideos(max_empty_pages=...)``): a server answering them forever would
#: otherwise keep a listing going without yielding a job.
MAX_EMPTY_PAGES = 100
#: The pause before the page after an empty one: from the floor under retry
#: waits, doubling with each empty page in a row, up to this.
MAX_EMPTY_PAGE_PAUSE = 0.5
#: How many recent cursors are remembered to catch a cycle (bounded memory).
CURSOR_MEMORY = 1024


@attrs.define(slots=True)
class _Cursors:
    """The recent cursors of one listing and its run of empty pages."""

    order: deque[str] = attrs.field(factory=deque)
    known: set[str] = attrs.field(factory=set)
    empty_run: int = 0

    def remember(self, cursor: str | None) -> None:
        if cursor is None or cursor in self.known:
            return
        self.order.append(cursor)
        self.known.add(cursor)
        if len(self.order) > CURSOR_MEMORY:
            self.known.discard(self.order.popleft())


def first_jobs(page: VideoPage, most: int) -> VideoPage:
    """``page`` cut to its first ``most`` jobs, with the cursor after the last one
    kept: a server that ignores ``limit`` (LiteLLM's proxy drops it) still gives
    the caller the page asked for, and the listing goes on after what it yielded."""
    if len(page.data) <= most:
        return page
    kept = page.data[:most]
    return attrs.evolve(page, data=kept, last_id=kept[-1].id if kept else None, has_more=True)


def next_cursor(page: VideoPage) -> str | None:
    """The ``after`` of the next page: ``last_id``, or the last item's id when a
    provider leaves ``last_id`` out."""
    if page.last_id:
        return page.last_id
    return page.data[-1].id if page.data else None


def empty_page_pause(run: int) -> float:
    """Seconds to pause before the next page after ``run`` empty pages in a row."""
    if run <= 0:
        return 0.0
    return min(_retry.MIN_WAIT * 2.0 ** min(run - 1, 16), MAX_EMPTY_PAGE_PAUSE)


async def _fetch_after(fetch_page: FetchPage, cursor: str, run: int) -> VideoPage:
    """``fetch_page(cursor)`` after the pause that ``run`` empty pages in a row call for."""
    pause = empty_page_pause(run)
    if pause:
        logger.debug(
            "%d empty page(s) in a row that say has_more; the next one in %.3f s",
            run,
            pause,
            extra={"empty_pages": run, "wait": pause},
        )
        # The retry module's switch: under no_retry_waits the pause is logged, not slept.
        if _retry._waits_enabled:
            await asyncio.sleep(pause)
    return await fetch_page(cursor)


async def iterate_pages(
    fetch_page: FetchPage,
    *,
    after: str | None,
    prefetch: int = 0,
    max_empty_pages: int = MAX_EMPTY_PAGES,
) -> AsyncGenerator[VideoPage, None]:
    """Yield pages from ``after`` on until one says ``has_more: false``.

    A failed fetch raises with ``resume_after`` set to the cursor it was
    fetching from, so ``after=error.resume_after`` continues with no gap and
    no repeat. A page that has more but no new cursor raises
    ``PaginationError`` instead of looping or ending silently, as does a run
    of more than ``max_empty_pages`` empty pages that say ``has_more``; the
    page after an empty one is fetched after a pause (``empty_page_pause``).

    With ``prefetch=1`` the next page is requested as a page is yielded, so it
    travels while the consumer works; its failure is raised when that page is
    asked for, and closing the iterator cancels it.
    """
    cursor = after
    seen = _Cursors()
    ahead: asyncio.Task[VideoPage] | None = None
    try:
        while True:
            task, ahead = ahead, None
            try:
                if task is not None:
                    page = await task
                elif cursor is not None and seen.empty_run:
                    page = await _fetch_after(fetch_page, cursor, seen.empty_run)
                else:
                    page = await fetch_page(cursor)
            except AsyncVideosError as error:
                error.resume_after = cursor
                raise
            if not page.has_more:
                yield page
                return
            following = _checked_cursor(page, cursor, seen, max_empty_pages)
            if prefetch:
                ahead = asyncio.ensure_future(
                    _fetch_after(fetch_page, following, seen.empty_run)
                    if seen.empty_run
                    else fetch_page(following)
                )
            yield page
            seen.remember(cursor)
            cursor = following
    finally:
        if ahead is not None:
            ahead.cancel()
            # Wait for the cancelled request to give its connection back.
            await asyncio.gather(ahead, return_exceptions=True)


def _checked_cursor(
    page: VideoPage, cursor: str | None, seen: _Cursors, max_empty_pages: int
) -> str:
    """The next page's cursor, or ``PaginationError`` when it leads nowhere new."""
    following = next_cursor(page)
    seen.empty_run = 0 if page.data else seen.empty_run + 1
    if following is not None and not following.isascii() and not _sendable(following):
        # A lone surrogate has no UTF-8 form: the next request could not carry it.
        raise _stuck(f"The API gave a cursor that cannot be sent back: {_short(following)}", cursor)
    if following is None or following == cursor or following in seen.known:
        # Checked before the page is yielded: a page whose cursor leads back
        # is a repeat, and its jobs must not be handed out twice.
        raise _stuck(
            "The API said has_more but gave no new cursor "
            f"(after={_short(cursor)}, next={_short(following)}); stopping instead of looping",
            cursor,
        )
    if seen.empty_run > max_empty_pages:
        raise _stuck(
            f"The API sent {seen.empty_run} empty pages in a row that each said has_more "
            f"(max_empty_pages={max_empty_pages}); stopping instead of following them further",
            cursor,
        )
    return following


def _sendable(cursor: str) -> bool:
    try:
        cursor.encode()
    except UnicodeEncodeError:
        return False
    return True


def _stuck(message: str, cursor: str | None) -> PaginationError:
    error = PaginationError(message)
    error.resume_after = cursor
    return error


def _short(cursor: str | None) -> str:
    """A cursor for a message: a server may send one of any length."""
    shown = repr(cursor)
    return shown if len(shown) <= 80 else shown[:77] + "..."


async def iterate_items(
    fetch_page: FetchPage,
    *,
    after: str | None,
    prefetch: int = 0,
    max_empty_pages: int = MAX_EMPTY_PAGES,
) -> AsyncGenerator[Video, None]:
    """Yield every job of every page, in order, lazily (see ``iterate_pages``)."""
    pages = iterate_pages(
        fetch_page, after=after, prefetch=prefetch, max_empty_pages=max_empty_pages
    )
    try:
        async for page in pages:
            for video in page.data:
                yield video
    finally:
        await pages.aclose()
