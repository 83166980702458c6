"""Export every video job to a JSON-lines file, with a checkpoint to resume from.

Pages are read in ascending order (oldest first). After each page is written, its
cursor (``page.last_id``) is saved to the checkpoint file, so:

- a page that fails after the client's retries raises an error carrying
  ``resume_after``; the export waits and goes on from there, with no gap and no
  repeat, up to ``--attempts`` times in a row;
- a later run (after a crash, or tomorrow, for the jobs created since) starts from
  the saved cursor and appends only what is new.

The output is written before the cursor, so a crash between the two repeats at
most one page, never skips one; each line is written once per job otherwise.

Run it::

    python examples/batch_export.py --output jobs.jsonl --checkpoint jobs.cursor
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from asyncvideos import AsyncVideos, AsyncVideosError


def read_cursor(checkpoint: Path) -> str | None:
    """The last id exported by an earlier run, or None to start from the beginning."""
    try:
        return checkpoint.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def save_cursor(checkpoint: Path, cursor: str) -> None:
    """Replace the checkpoint atomically: a crash leaves the old cursor or the new one."""
    partial = checkpoint.with_name(checkpoint.name + ".partial")
    partial.write_text(cursor + "\n", encoding="utf-8")
    os.replace(partial, checkpoint)


async def export(
    videos: AsyncVideos,
    output: Path,
    checkpoint: Path,
    *,
    attempts: int = 5,
    pause: float = 5.0,
) -> int:
    """Append every job after the saved cursor to ``output``; return how many were written."""
    cursor = read_cursor(checkpoint)
    written = 0
    failures = 0
    with output.open("a", encoding="utf-8") as out:
        while True:
            try:
                async for page in videos.pages(after=cursor, order="asc"):
                    for video in page.data:
                        out.write(json.dumps(video.raw, sort_keys=True) + "\n")
                    out.flush()
                    written += len(page.data)
                    if page.last_id is not None:
                        cursor = page.last_id
                        save_cursor(checkpoint, cursor)
                    failures = 0
                return written
            except AsyncVideosError as error:
                failures += 1
                if failures >= attempts:
                    raise
                # Everything before resume_after was yielded (and written) already.
                cursor = error.resume_after
                print(f"page failed ({error}); resuming after {cursor}", file=sys.stderr)
                await asyncio.sleep(pause)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="JSON lines, appended to")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the saved cursor")
    parser.add_argument("--base-url", help="default: OPENAI_BASE_URL or OpenAI's API")
    parser.add_argument("--api-key", help="default: OPENAI_API_KEY")
    parser.add_argument("--attempts", type=int, default=5, help="failed pages in a row to allow")
    parser.add_argument("--pause", type=float, default=5.0, help="seconds before resuming")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> int:
    """Run the export; print how many jobs were written; 1 if it had to give up."""
    args = parse(argv)
    async with AsyncVideos(api_key=args.api_key, base_url=args.base_url) as videos:
        try:
            count = await export(
                videos, args.output, args.checkpoint, attempts=args.attempts, pause=args.pause
            )
        except AsyncVideosError as error:
            print(f"error: {error}; run again to resume", file=sys.stderr)
            return 1
    print(f"exported {count} jobs to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
