"""A service that creates video jobs on request and polls them in the background.

``VideoJobs`` is the part a web handler or a queue consumer would hold: ``submit()``
creates the job at once and returns its id; a background task per job (at most
``concurrency`` polling at a time) waits for it, and ``outcome()`` says where it is.
``aclose()`` cancels what is still polling, so the service stops promptly.

Run it (against the fake: ``asyncvideos serve`` in another terminal and
``--base-url http://127.0.0.1:8080/v1 --api-key sk-fake-0123456789abcdef``)::

    python examples/poller_service.py "a paper boat in the rain" "a lighthouse at dawn"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from asyncvideos import AsyncVideos, AsyncVideosError, Video


class VideoJobs:
    """Jobs created now, waited for in the background."""

    def __init__(self, videos: AsyncVideos, *, concurrency: int = 16, timeout: float = 900):
        self._videos = videos
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self._tasks: dict[str, asyncio.Task[Video]] = {}

    async def submit(self, prompt: str, *, seconds: int | None = None) -> str:
        """Create a job (the request is made now) and start waiting for it."""
        video = await self._videos.create(prompt, seconds=seconds)
        self._tasks[video.id] = asyncio.create_task(self._wait(video), name=f"wait {video.id}")
        return video.id

    async def _wait(self, video: Video) -> Video:
        async with self._slots:
            return await self._videos.wait(video, wait_timeout=self._timeout)

    def outcome(self, video_id: str) -> str:
        """``pending``, the job's final status, or ``error: ...`` if waiting failed."""
        task = self._tasks[video_id]
        if not task.done():
            return "pending"
        if task.cancelled():
            return "cancelled"
        error = task.exception()
        if error is not None:
            return f"error: {error}"
        return task.result().status or "unknown"

    async def join(self) -> dict[str, str]:
        """Wait until every job submitted so far is finished; their outcomes by id."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        return {video_id: self.outcome(video_id) for video_id in self._tasks}

    async def aclose(self) -> None:
        """Stop polling: cancel every wait still running."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prompts", nargs="+", help="one job per prompt")
    parser.add_argument("--base-url", help="default: OPENAI_BASE_URL or OpenAI's API")
    parser.add_argument("--api-key", help="default: OPENAI_API_KEY")
    parser.add_argument("--seconds", type=int, help="length of each video")
    parser.add_argument("--concurrency", type=int, default=16, help="jobs polled at once")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait per job")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> int:
    """Submit one job per prompt, wait for all, print each outcome; 1 if any did not complete."""
    args = parse(argv)
    async with AsyncVideos(api_key=args.api_key, base_url=args.base_url) as videos:
        jobs = VideoJobs(videos, concurrency=args.concurrency, timeout=args.timeout)
        try:
            for prompt in args.prompts:
                video_id = await jobs.submit(prompt, seconds=args.seconds)
                print(f"submitted {video_id}: {prompt}")
            outcomes = await jobs.join()
        except AsyncVideosError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        finally:
            await jobs.aclose()
    for video_id, outcome in outcomes.items():
        print(f"{video_id} {outcome}")
    return 0 if all(outcome == "completed" for outcome in outcomes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
