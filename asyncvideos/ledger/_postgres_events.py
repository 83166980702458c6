"""Webhook events for a whole fleet, through PostgreSQL's ``LISTEN``/``NOTIFY``.

Behind a balancer each event reaches one replica; the waits for its job may be
on another. ``EventRelay`` joins a ``WebhookReceiver`` to the ledger's database:

- **publishing**: each event the receiver verified is recorded in the ledger
  (``record_status``, for a final event of a job the ledger knows) and sent to
  every replica with ``NOTIFY asyncvideos_events`` (its id, type, time and job,
  as JSON: no secret, nothing the event's sender did not sign);
- **listening**: one dedicated connection ``LISTEN``-s, and every notification
  is delivered to this replica's receiver as if it had come by HTTP, so its
  waits wake; the receiver drops the duplicates (its own events come back).

Polling stays the fallback. A pooler in transaction mode (PgBouncer's
``pool_mode = transaction``) accepts ``LISTEN`` and then hands the server
connection to someone else, so notifications never arrive: after ``LISTEN`` the
relay sends itself a probe, and when it does not come back within
``PROBE_SECONDS`` it says so once in the log and keeps publishing (a replica
whose ``LISTEN`` works elsewhere still hears). A lost connection is reopened
with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from .._webhooks import WebhookEvent, WebhookReceiver

if TYPE_CHECKING:
    from ._postgres import PostgresLedger

logger = logging.getLogger("asyncvideos")

__all__ = ["EVENTS_CHANNEL", "PROBE_SECONDS", "EventRelay"]

EVENTS_CHANNEL = "asyncvideos_events"
#: How long the probe after LISTEN may take to come back before LISTEN is judged
#: not to work here.
PROBE_SECONDS = 2.0
#: PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more.
_MAX_PAYLOAD = 7_900
_RECONNECT_FIRST, _RECONNECT_MAX = 0.5, 30.0
#: The ledger state (and status) a final event records.
FINAL_EVENT_STATES = {"video.completed": "completed", "video.failed": "failed"}


def encode(event: WebhookEvent) -> str | None:
    """The notification payload for ``event``; None when it would be too long."""
    payload = json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "created_at": event.created_at.timestamp(),
            "video_id": event.video_id,
        },
        separators=(",", ":"),
    )
    return payload if len(payload.encode()) < _MAX_PAYLOAD else None


def decode(payload: str) -> WebhookEvent | None:
    """The event in a notification, or None for anything else (a probe, junk)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    event_id, kind, created, video_id = (
        data.get("id"),
        data.get("type"),
        data.get("created_at"),
        data.get("video_id"),
    )
    if not (isinstance(event_id, str) and event_id and isinstance(kind, str) and kind):
        return None
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        return None
    if not math.isfinite(created) or (video_id is not None and not isinstance(video_id, str)):
        return None
    try:
        when = datetime.fromtimestamp(created, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    raw: dict[str, Any] = {"id": event_id, "type": kind, "object": "event", "created_at": created}
    if video_id is not None:
        raw["data"] = {"id": video_id}
    return WebhookEvent(event_id, kind, when, video_id, raw)


class EventRelay:
    """A receiver's events shared with every replica on the ledger's database.

    Use ``async with ledger.share_webhooks(receiver):`` (``PostgresLedger``), which
    starts it and stops it. ``listening`` says whether notifications reach this
    process (False after a failed probe, or while reconnecting).
    """

    def __init__(self, ledger: PostgresLedger, receiver: WebhookReceiver, conninfo: str) -> None:
        self._ledger = ledger
        self._receiver = receiver
        self._conninfo = conninfo
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.listening: bool = False
        #: Events heard from the database (this replica's own included).
        self.heard: int = 0
        self._warned = False

    async def start(self) -> None:
        """Start listening; return once ``LISTEN`` is in place and probed."""
        self._receiver._relay = self
        self._task = asyncio.get_running_loop().create_task(self._listen())
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()  # a programming error: raise it here

    async def stop(self) -> None:
        if self._receiver._relay is self:
            self._receiver._relay = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- publishing --------------------------------------------------------------

    async def publish(self, event: WebhookEvent) -> None:
        """Record ``event`` in the ledger and notify every replica; a database that
        fails is logged, never raised: the event was received, polling covers it."""
        payload = encode(event)
        try:
            state = FINAL_EVENT_STATES.get(event.type)
            if state is not None and event.video_id is not None:
                await self._ledger.record_status(
                    event.video_id,
                    status=state,
                    state="completed" if state == "completed" else "failed",
                )
            if payload is not None:
                await self._ledger._rows("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, payload))
        except Exception as error:  # the database is down: this replica still has it
            logger.warning(
                "Could not share webhook event %s with the fleet (%s): the other replicas' "
                "waits fall back to polling",
                event.id,
                type(error).__name__,
            )

    # -- listening ---------------------------------------------------------------

    async def _listen(self) -> None:
        delay = _RECONNECT_FIRST
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, prepare_threshold=None
                ) as connection:
                    await connection.execute(f"LISTEN {EVENTS_CHANNEL}")
                    probe = f"probe:{secrets.token_hex(8)}"
                    await self._ledger._rows("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, probe))
                    delay = _RECONNECT_FIRST
                    await self._hear(connection, probe)
            except asyncio.CancelledError:
                raise
            except psycopg.Error as error:
                self.listening = False
                logger.warning(
                    "The fleet's webhook listener lost the database (%s): reconnecting "
                    "in %.1f s; waits fall back to polling meanwhile",
                    type(error).__name__,
                    delay,
                )
            self._ready.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def _hear(self, connection: psycopg.AsyncConnection[Any], probe: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_SECONDS
        probed = False
        while not probed:
            left = deadline - loop.time()
            if left <= 0:
                break
            async for note in connection.notifies(timeout=left):
                if note.payload == probe:
                    probed = True
                    break
                self._heard(note.payload)
        if not probed:
            if not self._warned:
                logger.warning(
                    "LISTEN does not reach this process (a pooler in transaction mode, such "
                    "as PgBouncer's, drops it): webhook events received by other replicas "
                    "will not wake this one's waits, which fall back to polling"
                )
                self._warned = True
            self._ready.set()
            # Keep the connection: a pooler that starts passing notifications on
            # (or a session pooler) is heard all the same.
        else:
            self.listening = True
            self._ready.set()
        async for note in connection.notifies():
            self._heard(note.payload)

    def _heard(self, payload: str) -> None:
        event = decode(payload)
        if event is not None:
            self.heard += 1
            self._receiver._deliver(event)
