"""The cursor loop of ``list(all=True)`` and ``pages()``; it knows no HTTP.

It is a plain ``while`` loop over a ``fetch_page(after)`` function: nothing is
fetched before the first page is asked for, the next page only when the
current one is used up, and closing the iterator stops it without another
request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

from ._errors import AsyncVideosError, PaginationError
from ._models import Video, VideoPage

FetchPage = Callable[[str | None], Awaitable[VideoPage]]


def next_cursor(page: VideoPage) -> str | None:
    """The ``after`` of the next page: ``last_id``, or the last item's id when a
    provider leaves ``last_id`` out."""
    if page.last_id:
        return page.last_id
    return page.data[-1].id if page.data else None


async def iterate_pages(
    fetch_page: FetchPage, *, after: str | None
) -> AsyncGenerator[VideoPage, None]:
    """Yield pages from ``after`` on until one says ``has_more: false``.

    A failed fetch raises with ``resume_after`` set to the cursor it was
    fetching from, so ``after=error.resume_after`` continues with no gap and
    no repeat. A page that has more but no new cursor raises
    ``PaginationError`` instead of looping or ending silently.
    """
    cursor = after
    seen: set[str] = set()
    while True:
        try:
            page = await fetch_page(cursor)
        except AsyncVideosError as error:
            error.resume_after = cursor
            raise
        yield page
        if not page.has_more:
            return
        following = next_cursor(page)
        if following is None or following == cursor or following in seen:
            stuck = PaginationError(
                "The API said has_more but gave no new cursor "
                f"(after={cursor!r}, next={following!r}); stopping instead of looping",
            )
            stuck.resume_after = cursor
            raise stuck
        if cursor is not None:
            seen.add(cursor)
        cursor = following


async def iterate_items(fetch_page: FetchPage, *, after: str | None) -> AsyncGenerator[Video, None]:
    """Yield every job of every page, in order, lazily."""
    pages = iterate_pages(fetch_page, after=after)
    try:
        async for page in pages:
            for video in page.data:
                yield video
    finally:
        await pages.aclose()
