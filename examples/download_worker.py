"""Download finished videos with a pool of workers.

Ids come from the command line (or one per line on stdin with ``-``). Each worker
takes the next id, waits for the job if it is still running, and downloads it to
``<folder>/<id>.mp4``. A file already there is skipped, so the worker can be run
again after an interruption; ``download()`` writes a temporary file and moves it
into place only when complete, so there is never a partial file. A job that failed,
timed out or does not exist is reported and the others go on; the exit code is 1
if any did not download.

Run it::

    python examples/download_worker.py video_123 video_456 --folder out/ --workers 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from asyncvideos import AsyncVideos, AsyncVideosError


async def download_one(
    videos: AsyncVideos, video_id: str, folder: Path, *, wait_timeout: float
) -> bool:
    """Wait for one job and download it, saying what happened; False if it did not download."""
    target = folder / f"{video_id}.mp4"
    if target.exists():
        print(f"{video_id} skipped: {target} exists")
        return True
    video = await videos.wait(video_id, wait_timeout=wait_timeout)
    if not video.is_completed:
        print(f"{video_id} failed: the job ended {video.status}", file=sys.stderr)
        return False
    path = await videos.download(video, target)
    print(f"{video_id} downloaded: {path}")
    return True


async def worker(
    videos: AsyncVideos,
    queue: asyncio.Queue[str],
    folder: Path,
    failed: list[str],
    *,
    wait_timeout: float,
) -> None:
    """Take ids until the queue is empty; one job's error never stops the others."""
    while not queue.empty():
        video_id = queue.get_nowait()
        try:
            ok = await download_one(videos, video_id, folder, wait_timeout=wait_timeout)
        except AsyncVideosError as error:  # a 404, a timed-out wait, a dropped download...
            print(f"{video_id} failed: {error}", file=sys.stderr)
            ok = False
        if not ok:
            failed.append(video_id)


async def download_all(
    videos: AsyncVideos,
    ids: Sequence[str],
    folder: Path,
    *,
    workers: int = 4,
    wait_timeout: float = 900,
) -> list[str]:
    """Download every job in ``ids`` with ``workers`` at once; the ids that did not download."""
    os.makedirs(folder, exist_ok=True)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for video_id in dict.fromkeys(ids):  # each id once, in order
        queue.put_nowait(video_id)
    failed: list[str] = []
    await asyncio.gather(
        *(worker(videos, queue, folder, failed, wait_timeout=wait_timeout) for _ in range(workers))
    )
    return failed


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ids", nargs="+", help="video ids; '-' reads them from stdin")
    parser.add_argument("--folder", type=Path, default=Path("."), help="where files go")
    parser.add_argument("--workers", type=int, default=4, help="downloads at once")
    parser.add_argument("--wait-timeout", type=float, default=900, help="seconds per job")
    parser.add_argument("--base-url", help="default: OPENAI_BASE_URL or OpenAI's API")
    parser.add_argument("--api-key", help="default: OPENAI_API_KEY")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> int:
    """Download every id given; 1 if any did not download."""
    args = parse(argv)
    ids = [line.strip() for line in sys.stdin if line.strip()] if args.ids == ["-"] else args.ids
    async with AsyncVideos(api_key=args.api_key, base_url=args.base_url) as videos:
        failed = await download_all(
            videos, ids, args.folder, workers=args.workers, wait_timeout=args.wait_timeout
        )
    if failed:
        print(f"{len(failed)} of {len(ids)} did not download: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
