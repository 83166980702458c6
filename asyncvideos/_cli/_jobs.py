"""``asyncvideos jobs`` and ``asyncvideos resume``: the job ledger from a shell.

``jobs`` lists the ledger's entries (a table on a terminal, JSON lines
otherwise); it reads the ledger only, so it needs no key; nor does ``purge``,
which deletes old finished entries (SQLite and PostgreSQL ledgers alike). ``resume`` re-attaches
to every unfinished entry with the live display, as ``wait`` does, and prints
each job as it finishes. Both, and ``create`` and ``remix``, take the ledger
from ``--ledger URL`` or ``$ASYNCVIDEOS_LEDGER``. The grammar is here too.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._videos import AsyncVideos
    from ._commands import Context

LEDGER_ENV = "ASYNCVIDEOS_LEDGER"
STATES = (
    "intent",
    "ambiguous",
    "rejected",
    "created",
    "completed",
    "failed",
    "downloaded",
    "expired",
)
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_ledger_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        metavar="URL",
        help=f"record the job in this ledger, e.g. sqlite:///jobs.db (default: ${LEDGER_ENV})",
    )


def since(text: str) -> datetime:
    """argparse type: ``2h`` (that long ago) or an ISO 8601 time (local when no zone)."""
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        seconds = float(ago.group(1)) * _UNITS[ago.group(2)]
        return datetime.now(timezone.utc) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a time (2025-01-02T03:04) or an age (30m, 2h, 7d), got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def add_parsers(command: Any) -> None:
    """``jobs`` and ``resume``; ``command(name, help, options=...)`` makes a subparser."""
    jobs = command("jobs", "List the job ledger's entries.", options="output")
    add_ledger_option(jobs)
    jobs.add_argument(
        "--state", action="append", choices=STATES, help="only entries in this state (repeatable)"
    )
    jobs.add_argument("--since", type=since, metavar="TIME", help="only entries made since TIME")

    purge = command("purge", "Delete the ledger's finished entries older than an age.")
    add_ledger_option(purge)
    purge.add_argument(
        "--older-than",
        type=age,
        required=True,
        metavar="AGE",
        help="entries finished (failed, downloaded, expired, rejected) and not written "
        "for this long: 30d, 12h",
    )

    resume = command("resume", "Wait for, reconcile and download the ledger's unfinished jobs.")
    add_ledger_option(resume)
    resume.add_argument(
        "--download-dir",
        metavar="DIR",
        help="download completed jobs with no recorded target here (as ID.mp4)",
    )
    resume.add_argument(
        "--reconcile",
        choices=("raise", "resend", "adopt"),
        default="raise",
        help="a create whose answer was lost: leave it ambiguous (default), send it again "
        "with its key (servers that honour Idempotency-Key), or adopt the matching job",
    )
    resume.add_argument(
        "--wait-timeout", type=_positive, metavar="S", help="give up after S seconds in all"
    )


def age(text: str) -> timedelta:
    """argparse type: ``30d``, ``12h``, ``90m``, ``45s``."""
    found = _AGO.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"expected an age (30d, 12h, 90m), got {text!r}")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def _positive(text: str) -> float:
    from ._args import positive_float

    return positive_float(text)


def ledger_url(args: argparse.Namespace) -> str | None:
    """The ledger the command was given: ``--ledger``, else ``$ASYNCVIDEOS_LEDGER``."""
    return getattr(args, "ledger", None) or os.environ.get(LEDGER_ENV) or None


def _needed(args: argparse.Namespace) -> str:
    from ._commands import UsageError

    url = ledger_url(args)
    if url is None:
        raise UsageError(f"no ledger: pass --ledger URL or set {LEDGER_ENV}")
    return url


async def jobs(ctx: Context) -> int:
    """``jobs``: the entries, oldest first."""
    from ..ledger import open_ledger

    store = open_ledger(_needed(ctx.args))
    try:
        for entry in await store.entries(state=ctx.args.state, since=ctx.args.since):
            ctx.out.entry(entry)
    finally:
        await store.close()
    return 0


async def purge(ctx: Context) -> int:
    """``purge``: delete the ledger's old finished entries (any ledger); print how many."""
    from ..ledger import open_ledger

    store = open_ledger(_needed(ctx.args))
    try:
        count = await store.purge(older_than=ctx.args.older_than)
    finally:
        await store.close()
    sys.stdout.write(f"{count}\n")  # how many were deleted: for a script to read
    return 0


async def resume(ctx: Context, client: AsyncVideos) -> int:
    """``resume``: every unfinished job, a live bar each, printed as it finishes."""
    from ._commands import describe
    from ._progress import wait_display

    args = ctx.args
    _needed(args)
    store = client.ledger
    assert store is not None  # client_options gave it the ledger
    pending = await store.entries(state=("created", "completed"))
    ids = [entry.video_id for entry in pending if entry.video_id is not None]
    folder = None if args.download_dir is None else Path(args.download_dir)
    with ctx.live(wait_display(ctx.console, ids)) as display:
        results = client.resume(
            download_dir=folder, wait_timeout=args.wait_timeout, on_progress=display.job
        )
        async for result in results:
            if result.error is not None:
                if result.video_id:
                    display.job_error(result.video_id, type(result.error).__name__)
                ctx.report(f"{result.key}: {describe(result.error)}")
                continue
            ctx.out.video(result.video)
            if result.video.is_failed:
                ctx.report(f"{result.key}: {result.video.id} ended as {result.video.status}")
    return ctx.code
