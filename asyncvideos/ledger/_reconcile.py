"""Settling a create whose outcome is unknown: the ``reconcile`` policies.

Called with the entry's lease held (``Journal``, ``_flow.py``): ``resend`` sends
again with the same key, then retrieves the job (a replay may be stale);
``adopt`` lists the server's jobs since the intent (minus ``clock_skew``),
drops those another entry owns and matches the recorded fields; ``raise``
makes the entry ``ambiguous`` with the candidates the listing found, and
raises ``AmbiguousCreateError``. See the policies in ``docs/guide/ledger.md``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

from .._errors import AmbiguousCreateError, AsyncVideosError
from .._models import Video
from ._request import PaidRequest, rebuilt
from ._store import Change, Entry, State, VideoOwnedError

if TYPE_CHECKING:
    from ._flow import Journal, Retrieve, Send

__all__ = ["compared", "find_candidates", "give_up", "reconcile", "still_ambiguous", "unsendable"]

logger = logging.getLogger("asyncvideos")
_INTENT: tuple[State, ...] = ("intent",)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def reconcile(
    journal: Journal,
    entry: Entry,
    request: PaidRequest | None,
    send: Send,
    retrieve: Retrieve,
    owner: str,
    last_seen: datetime | None,
    cause: BaseException | None = None,
) -> Video:
    """Settle an intent whose outcome is unknown, holding its lease."""
    if journal.reconcile == "raise":
        return await give_up(journal, entry, owner, cause)
    if request is None:
        request = await asyncio.to_thread(rebuilt, entry)
    if journal.reconcile == "resend":
        if request is None:
            return await give_up(journal, entry, owner, cause, unsendable(entry))
        video = await journal.send_held(entry, request, send, retrieve, owner, "resend")
        fresh = await retrieve(video.id)  # a replayed answer may be stale
        await journal.observed(entry, fresh)
        return fresh
    return await adopt(journal, entry, request, send, retrieve, owner, last_seen, cause)


async def adopt(
    journal: Journal,
    entry: Entry,
    request: PaidRequest | None,
    send: Send,
    retrieve: Retrieve,
    owner: str,
    last_seen: datetime | None,
    cause: BaseException | None,
) -> Video:
    # Until clock_skew has passed since the intent's last sign of life, a
    # server still working on its POST may not list the job yet.
    settled = (last_seen or _utc_now()) + timedelta(seconds=journal.clock_skew)
    for _ in range(8):  # each round ends in a decision, unless another entry wins a race
        try:
            async with journal.renewing(entry.key, owner, _INTENT):
                matches, exact = await find_candidates(journal, entry)
                while not matches and (delay := (settled - _utc_now()).total_seconds()) > 0:
                    await asyncio.sleep(delay)
                    matches, exact = await find_candidates(journal, entry)
        except BaseException:
            await journal.release(entry.key, owner)
            raise
        if not matches:
            if request is None:
                return await give_up(journal, entry, owner, cause, unsendable(entry))
            # Nothing reached the server: a refusal now proves nothing was made.
            return await journal.send_held(entry, request, send, retrieve, owner, "first")
        if not exact and len(matches) > 1:
            return await give_up(journal, entry, owner, cause, candidates=matches)
        try:
            await journal.record_created(entry.key, matches[0], adopted=True)
        except VideoOwnedError:
            continue  # another entry took it just now: look again
        return matches[0]
    return await give_up(journal, entry, owner, cause)  # pragma: no cover - a race 8 times


async def find_candidates(journal: Journal, entry: Entry) -> tuple[list[Video], bool]:
    """The server's jobs that could be ``entry``'s, oldest first, and whether
    they all match it exactly."""
    since = entry.created_at - timedelta(seconds=journal.clock_skew)
    listed = [
        video
        async for video in journal.newest(since)
        if video.created_at is None or video.created_at >= since
    ]
    owned = await journal.store.owned([video.id for video in listed])
    matches: list[Video] = []
    exact = True
    for video in reversed(listed):
        if video.id in owned:
            continue
        how = compared(entry, video)
        if how != "no":
            matches.append(video)
            exact = exact and how == "exact"
    return matches, exact


async def give_up(
    journal: Journal,
    entry: Entry,
    owner: str,
    cause: BaseException | None,
    reason: str | None = None,
    candidates: list[Video] | None = None,
) -> Video:
    """Mark the entry ambiguous with what the listing found; raise."""
    if candidates is None:
        try:
            candidates, _ = await find_candidates(journal, entry)
        except AsyncVideosError as error:  # the listing failed: no candidates known
            logger.warning("Listing candidates for key %s failed: %s", entry.key, error)
            candidates = []
    ids = tuple(video.id for video in candidates)
    message = reason or (
        f"The create with key {entry.key!r} may or may not have made a job "
        f"({len(ids)} candidate{'' if len(ids) == 1 else 's'} on the server)"
    )
    change = Change(
        state="ambiguous",
        candidates=ids,
        error_code="ambiguous",
        error_message=message[:1000],
        lease="release",
    )
    await journal.store.update(entry.key, change, states=_INTENT)
    raise AmbiguousCreateError(
        f"{message}; settle it with videos.ledger.resolve({entry.key!r}, video_id=...)",
        key=entry.key,
        candidates=ids,
    ) from cause


# -- writes of the steps -----------------------------------------------


def compared(entry: Entry, video: Video) -> Literal["no", "exact", "inexact"]:
    """How a server's job matches an entry's recorded fields: a field the server
    left out makes the match inexact; one that differs, no match."""
    pairs: list[tuple[str | None, str | None]] = [(entry.prompt, video.prompt)]
    if entry.operation == "create":
        pairs += [
            (entry.model, video.model),
            (entry.size, video.size),
            (entry.seconds, video.seconds),
        ]
    elif entry.operation == "remix":
        pairs.append((entry.source_video_id, video.remixed_from_video_id))
    exact = True
    for ours, theirs in pairs:
        if ours is None:
            continue
        if theirs is None:
            exact = False
        elif ours != theirs:
            return "no"
    return "exact" if exact else "inexact"


def still_ambiguous(entry: Entry) -> AmbiguousCreateError:
    return AmbiguousCreateError(
        f"The create with key {entry.key!r} is ambiguous ({len(entry.candidates)} "
        f"candidate{'' if len(entry.candidates) == 1 else 's'}); settle it with "
        f"videos.ledger.resolve({entry.key!r}, video_id=...)",
        key=entry.key,
        candidates=entry.candidates,
    )


def unsendable(entry: Entry) -> str:
    return (
        f"The create with key {entry.key!r} may or may not have made a job, and cannot "
        "be sent again from the ledger (its input file was not given as a path, or "
        "changed since)"
    )
