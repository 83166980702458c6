"""One video per order, paid for once, however often the service is killed.

Each order is ``ORDER_ID=PROMPT``; the order id is the job's key (its
``Idempotency-Key``). The job ledger (``--ledger``, an SQLite file) records
every step before the next: the intent before the POST, the server's id as
soon as it answers, each status, the download. Kill the program (``kill -9``,
a deploy, the OOM killer) and run it again with the same orders: it first
``resume()``s what the last run left (waits, downloads), then goes through the
orders, and an order whose job exists is not paid for again. A create whose
outcome the ledger cannot tell is printed as ambiguous, for a person to settle
(``asyncvideos jobs --state ambiguous``).

Run it::

    python examples/durable_jobs.py order-1="a paper boat" order-2="a fox" \\
        --folder out/ --ledger sqlite:///jobs.db
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from asyncvideos import AmbiguousCreateError, AsyncVideos, AsyncVideosError


async def make_video(videos: AsyncVideos, order: str, prompt: str, folder: Path) -> bool:
    """The order's video, created (at most once), waited for and downloaded."""
    try:
        video = await videos.create_and_wait(prompt, idempotency_key=order, wait_timeout=1800)
    except AmbiguousCreateError as error:
        print(f"{order} ambiguous: {len(error.candidates)} candidate job(s)", file=sys.stderr)
        return False
    if not video.is_completed:
        print(f"{order} failed: the job ended {video.status}", file=sys.stderr)
        return False
    # Recorded in the ledger: a file already downloaded whole is not fetched again.
    path = await videos.download(video, folder / f"{order}.mp4")
    print(f"{order} {video.id} {path}")
    return True


async def run(videos: AsyncVideos, orders: dict[str, str], folder: Path) -> int:
    # What the last run left half done: waits to finish, downloads to complete.
    async with contextlib.aclosing(videos.resume()) as resumed:
        async for result in resumed:
            if not result.ok:
                print(f"{result.key} not resumed: {result.error}", file=sys.stderr)
    done = await asyncio.gather(
        *(make_video(videos, order, prompt, folder) for order, prompt in orders.items())
    )
    return 0 if all(done) else 1


def parse_orders(given: Sequence[str]) -> dict[str, str]:
    orders = {}
    for item in given:
        order, equals, prompt = item.partition("=")
        if not equals or not order or not prompt:
            raise SystemExit(f"an order is ORDER_ID=PROMPT, got {item!r}")
        orders[order] = prompt
    return orders


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("orders", nargs="+", metavar="ORDER_ID=PROMPT")
    parser.add_argument("--folder", type=Path, default=Path("videos"))
    parser.add_argument("--ledger", default="sqlite:///jobs.db", help="the job ledger's URL")
    parser.add_argument(
        "--reconcile",
        choices=("raise", "resend", "adopt"),
        default="resend",
        help="what to do about a create whose answer was lost (default: resend, for a "
        "server that honours Idempotency-Key)",
    )
    parser.add_argument("--base-url", help="default: $OPENAI_BASE_URL")
    parser.add_argument("--api-key", help="default: $OPENAI_API_KEY")
    args = parser.parse_args(argv)
    orders = parse_orders(args.orders)
    try:
        async with AsyncVideos(
            api_key=args.api_key,
            base_url=args.base_url,
            ledger=args.ledger,
            reconcile=args.reconcile,
        ) as videos:
            return await run(videos, orders, args.folder)
    except AsyncVideosError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
