"""The README's and the guide's typed forms, checked by mypy --strict and by pyright
(.ci/run runs both on this file); checked, never run (not collected by pytest)."""

from __future__ import annotations

from asyncvideos import AsyncVideos, Video


async def wait_many_narrows(videos: AsyncVideos, ids: list[str]) -> list[Video]:
    """``if result.error is None:`` makes ``result`` a ``WaitSuccess`` for both."""
    finished: list[Video] = []
    async for result in videos.wait_many(ids, concurrency=16, wait_timeout=900):
        if result.error is None:
            finished.append(result.video)
        else:
            error: Exception = result.error
            print(result.video_id, error)
    return finished


async def waits_take_wait_timeout(videos: AsyncVideos, video: Video) -> Video:
    video = await videos.wait(video, wait_timeout=600, request_timeout=5.0)
    return await videos.create_and_wait("a paper boat", wait_timeout=600, seconds=8)
