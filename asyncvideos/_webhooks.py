"""Webhook events: verifying them (Standard Webhooks signatures) and waking waiters.

``verify_webhook`` is pure: bytes and headers in, a ``WebhookEvent`` or a
``WebhookVerificationError`` out. ``WebhookReceiver`` adds what a service needs
around it: an ``aiohttp.web`` handler, a stream of events, duplicate detection,
and the watches through which ``wait``/``wait_many`` finish on an event. Knows
no client: ``_waiting.py`` asks it for a watch per job. In a fleet, a ``Relay``
(the PostgreSQL ledger's) hands each verified event to the other replicas and
theirs to this one, so a wait wakes whichever replica the balancer chose.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from . import _validate as check
from ._errors import WebhookVerificationError

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["WebhookEvent", "WebhookReceiver", "verify_webhook"]

logger = logging.getLogger("asyncvideos")

SECRET_PREFIX = "whsec_"
#: The largest body ``WebhookReceiver.handle`` reads; an event is a few hundred bytes.
MAX_BODY_BYTES = 256 * 1024
#: Signatures read from one header: a rotation sends two or three.
MAX_SIGNATURES = 16
#: Event ids kept to recognise replays, whatever ``remember_events`` says.
MIN_REMEMBERED_IDS = 10_000
_EMPTY: Mapping[str, Any] = {}


@attrs.frozen(slots=True)
class WebhookEvent:
    """One verified webhook event.

    ``type`` is ``video.completed`` or ``video.failed`` for video jobs; any other
    type a sender uses is kept as it is. ``video_id`` is ``data.id`` (None when
    the event has none); ``created_at`` is a timezone-aware UTC datetime;
    ``raw`` is the whole JSON body.
    """

    id: str
    type: str
    created_at: datetime
    video_id: str | None = None
    raw: Mapping[str, Any] = attrs.field(default=_EMPTY, eq=False, repr=False)


def decode_secret(secret: object, name: str = "secret") -> bytes:
    """The signing key in ``secret`` (``whsec_`` + base64). The secret is never in a message.

    A secret without the ``whsec_`` prefix is refused rather than guessed at:
    libraries disagree on whether such a secret is base64 or raw bytes, and a
    wrong guess would reject every event with a signature error.
    """
    if not isinstance(secret, str):
        raise TypeError(f"{name} must be a str, got {type(secret).__name__}")
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            f"{name} must be a webhook signing secret starting with {SECRET_PREFIX!r} "
            "(as the dashboard shows it)"
        )
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"{name} is not valid: what follows {SECRET_PREFIX!r} must be base64"
        ) from None
    if not key:
        raise ValueError(f"{name} is empty after {SECRET_PREFIX!r}")
    return key


def check_tolerance(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"tolerance must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"tolerance must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = 300.0,
) -> WebhookEvent:
    """Check a webhook request's signature and timestamp; return its event.

    ``body`` is the raw request body, exactly as received; ``headers`` the
    request headers (any case). Raises ``WebhookVerificationError`` saying why
    when the ``webhook-signature`` has no valid ``v1`` signature (any one of
    several is enough, as during a secret rotation), ``webhook-timestamp`` is
    more than ``tolerance`` seconds from now either way, or the body is not an
    event. ``TypeError``/``ValueError`` for a bad ``secret`` or argument.
    """
    event, _ = _verify(body, headers, decode_secret(secret), check_tolerance(tolerance))
    return event


def _verify(
    body: object, headers: object, key: bytes, tolerance: float
) -> tuple[WebhookEvent, int]:
    """The event of an authentic request, and the Unix time it was signed at."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping, got {type(headers).__name__}")
    body = bytes(body)
    webhook_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookVerificationError("webhook-timestamp is not a Unix time in seconds")
    skew = time.time() - int(timestamp)
    if skew > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is too old ({skew:.0f} s ago; tolerance {tolerance:g} s)"
        )
    if -skew > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is in the future ({-skew:.0f} s ahead; tolerance {tolerance:g} s)"
        )
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    candidates = _v1_signatures(signatures)
    # Every candidate is compared, in constant time each, so the time taken does
    # not tell which entry (or how much of one) matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate, expected)
    if not matched:
        raise WebhookVerificationError("webhook-signature does not match the body")
    return _event(body), int(timestamp)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        # A plain dict may spell it in any case; a CIMultiDict finds it above.
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    if not isinstance(value, str) or not value.strip():
        raise WebhookVerificationError(f"missing {name} header")
    return value.strip()


def _v1_signatures(header: str) -> list[bytes]:
    entries = header.split()
    if len(entries) > MAX_SIGNATURES:
        raise WebhookVerificationError(
            f"webhook-signature has {len(entries)} entries (at most {MAX_SIGNATURES})"
        )
    found: list[bytes] = []
    for entry in entries:
        version, comma, signature = entry.partition(",")
        if not comma:
            raise WebhookVerificationError("webhook-signature entries must be 'v1,<base64>'")
        if version != "v1":
            continue  # another scheme (v1a is asymmetric): not ours to check
        try:
            found.append(base64.b64decode(signature, validate=True))
        except (binascii.Error, ValueError):
            raise WebhookVerificationError("webhook-signature is not valid base64") from None
    if not found:
        raise WebhookVerificationError("webhook-signature has no v1 signature")
    return found


def _event(body: bytes) -> WebhookEvent:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookVerificationError("the body is not a JSON object")
    event_id, event_type = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookVerificationError("the event has no 'id'")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookVerificationError("the event has no 'type'")
    if data.get("object", "event") != "event":
        raise WebhookVerificationError("the body's 'object' is not 'event'")
    created = data.get("created_at")
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise WebhookVerificationError("the event has no numeric 'created_at'")
    try:
        created_at = datetime.fromtimestamp(created, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise WebhookVerificationError("the event's 'created_at' is out of range") from None
    payload = data.get("data", _EMPTY)
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the event's 'data' is not an object")
    video_id = payload.get("id")
    if video_id is not None and (not isinstance(video_id, str) or not video_id):
        raise WebhookVerificationError("the event's 'data.id' is not a string")
    return WebhookEvent(event_id, event_type, created_at, video_id, data)


class Relay(Protocol):
    """Where a receiver sends each event it verified, for the fleet's other replicas."""

    async def publish(self, event: WebhookEvent) -> None: ...


class Watch:
    """One waiter's view of the events for one job: ``wait()`` wakes on the next."""

    __slots__ = ("_event", "_flag", "video_id")

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        self._flag = asyncio.Event()
        self._event: WebhookEvent | None = None

    def notify(self, event: WebhookEvent) -> None:
        self._event = event
        self._flag.set()

    @property
    def pending(self) -> bool:
        """Whether an event arrived that ``wait()`` has not returned yet."""
        return self._flag.is_set()

    async def wait(self, timeout: float) -> WebhookEvent | None:
        """The next event for this job, or None when ``timeout`` seconds pass first."""
        if not self._flag.is_set():
            try:
                await asyncio.wait_for(self._flag.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        self._flag.clear()
        event, self._event = self._event, None
        return event


class WebhookReceiver:
    """Receives webhook events for a service: verifies them and hands them on.

    - ``await receiver.feed(body, headers)`` from any web framework: returns the
      verified event or raises ``WebhookVerificationError``.
    - ``receiver.handle`` is an ``aiohttp.web`` handler:
      ``app.router.add_post("/webhooks", receiver.handle)``; 200 for a verified
      event (a duplicate too), 400 with the reason otherwise.
    - ``receiver.events()`` iterates the verified events from then on.
    - ``AsyncVideos(webhooks=receiver)`` makes ``wait``, ``create_and_wait`` and
      ``wait_many`` finish as soon as their job's event arrives.

    A ``video.*`` event for a job nobody waits on yet is remembered for
    ``remember_seconds`` (at most ``remember_events`` of them, oldest forgotten
    first), so a wait that starts after its job's event still ends at once.

    An event is delivered once: a duplicate (same event ``id``) is acknowledged
    and dropped, a replay of the very same signed request too. An event's id
    is remembered for as long as its signature's timestamp is within
    ``tolerance`` (and at least ``remember_seconds``), so a replay is always
    recognised. Memory stays bounded: at most ``remember_events`` ids, and
    10,000 when ``remember_events`` is fewer (an id is small). When more events
    than that arrive within the tolerance, the oldest ids are forgotten early, and from
    then on an event signed no later than a forgotten one is refused (400,
    so that the sender tries again with a fresh signature) rather than risk
    delivering a replay twice. A rejected event reaches nobody. Use it on one
    event loop.
    """

    def __init__(
        self,
        secret: str,
        *,
        tolerance: float = 300.0,
        remember_events: int = 10_000,
        remember_seconds: float = 600.0,
    ) -> None:
        self._key = decode_secret(secret)
        self._tolerance = check_tolerance(tolerance)
        if type(remember_events) is not int or remember_events < 0:
            raise ValueError(f"remember_events must be an int >= 0, got {remember_events!r}")
        if isinstance(remember_seconds, bool) or not isinstance(remember_seconds, (int, float)):
            raise TypeError("remember_seconds must be a number of seconds")
        if not (math.isfinite(remember_seconds) and remember_seconds >= 0):
            raise ValueError(f"remember_seconds must be >= 0, got {remember_seconds!r}")
        self._limit = remember_events
        self._id_limit = max(remember_events, MIN_REMEMBERED_IDS)
        self._ttl = float(remember_seconds)
        self._watches: dict[str, set[Watch]] = {}
        # In arrival order, so pruning pops from the front: O(1) per event, and
        # bounded by _limit. _recent expires on a fixed TTL (monotonic clock).
        self._recent: OrderedDict[str, tuple[float, WebhookEvent]] = OrderedDict()
        # Event id -> (wall time it may be forgotten, Unix time it was signed at).
        # Wall time, as the signature's tolerance is; an id further back with an
        # earlier expiry waits for the front: kept longer, never shorter.
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        # Requests signed at or before this were possibly forgotten: refused.
        self._replays_before = -1
        self._subscribers: set[_Subscriber] = set()
        self._relay: Relay | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tolerance={self._tolerance:g})"

    @property
    def tolerance(self) -> float:
        return self._tolerance

    # -- receiving ---------------------------------------------------------

    async def feed(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify one webhook request and deliver its event; return the event.

        Raises ``WebhookVerificationError`` (answer 400) for a request that
        fails verification, or that cannot be told from a replay (see the class
        docstring); nothing is delivered then.
        """
        event, signed_at = _verify(body, headers, self._key, self._tolerance)
        fresh = self._deliver(event, signed_at)
        if fresh and self._relay is not None:
            # After this replica's own waiters: the fleet's hear of it a round trip later.
            await self._relay.publish(event)
        return event

    async def handle(self, request: web.Request) -> web.Response:
        """An ``aiohttp.web`` handler: 200 for a verified event, 400 otherwise."""
        from aiohttp import web

        body = await read_body(request)
        if body is None:
            return web.Response(status=400, text="the body is too large\n")
        try:
            await self.feed(body, request.headers)
        except WebhookVerificationError as error:
            return web.Response(status=400, text=f"{error}\n")
        return web.Response(status=200, text="ok\n")

    def events(self, *, max_queued: int = 1000) -> AsyncGenerator[WebhookEvent, None]:
        """Every event verified from the first iteration on, duplicates left out.

        At most ``max_queued`` events wait for a consumer that falls behind:
        past that, the oldest waiting one is dropped (a WARNING is logged the
        first time), so the receiver never waits on a slow consumer to answer
        the sender and memory stays bounded however long nobody reads.
        """
        return self._events(check.integer(max_queued, "max_queued", low=1))

    async def _events(self, max_queued: int) -> AsyncGenerator[WebhookEvent, None]:
        subscriber = _Subscriber(max_queued)
        self._subscribers.add(subscriber)
        try:
            while True:
                yield await subscriber.queue.get()
        finally:
            self._subscribers.discard(subscriber)

    def _deliver(self, event: WebhookEvent, signed_at: int | None = None) -> bool:
        """Hand ``event`` to its watches and subscribers; False for a duplicate.

        ``signed_at`` is the request's signed timestamp; None for an event another
        replica verified and relayed, which is remembered from now on.
        """
        now, wall = time.monotonic(), time.time()
        self._prune(now, wall)
        if event.id in self._seen:
            return False
        if signed_at is None:
            signed_at = int(wall)
        elif signed_at <= self._replays_before:
            raise WebhookVerificationError(
                "the event cannot be told from a replay: it is signed no later than events "
                f"this receiver had to forget (more than {self._id_limit} within the "
                "tolerance); send it again with a fresh signature"
            )
        self._remember_id(event.id, signed_at, wall)
        for subscriber in self._subscribers:
            subscriber.put(event)
        video_id = event.video_id
        if video_id is None or not event.type.startswith("video."):
            return True  # not about a video job: nobody waits on it
        if self._limit:
            known = self._recent.pop(video_id, None)
            # Out of order: the newer of two events for one job is the one kept.
            if known is not None and known[1].created_at > event.created_at:
                self._recent[video_id] = (now + self._ttl, known[1])
            else:
                self._recent[video_id] = (now + self._ttl, event)
            if len(self._recent) > self._limit:
                self._recent.popitem(last=False)
        for watch in self._watches.get(video_id, ()):
            watch.notify(event)
        return True

    def _remember_id(self, event_id: str, signed_at: int, wall: float) -> None:
        # Replayable while the timestamp check passes: up to tolerance after it
        # was signed (the check refuses only a skew *over* the tolerance).
        replayable_until = signed_at + self._tolerance + 1.0
        self._seen[event_id] = (max(replayable_until, wall + self._ttl), signed_at)
        while len(self._seen) > self._id_limit:
            _, (_, forgotten) = self._seen.popitem(last=False)
            if forgotten + self._tolerance + 1.0 > wall:  # still replayable
                self._replays_before = max(self._replays_before, forgotten)

    def _prune(self, now: float, wall: float) -> None:
        recent, seen = self._recent, self._seen
        while recent and next(iter(recent.values()))[0] <= now:
            recent.popitem(last=False)
        while seen and next(iter(seen.values()))[0] <= wall:
            seen.popitem(last=False)

    # -- waiting (for _waiting.py) -----------------------------------------

    @contextmanager
    def watch(self, video_id: str) -> Iterator[Watch]:
        """Watch events for one job while the block runs; an event remembered from
        before is pending at once."""
        watch = Watch(video_id)
        self._prune(time.monotonic(), time.time())
        known = self._recent.get(video_id)
        if known is not None:
            watch.notify(known[1])
        watchers = self._watches.setdefault(video_id, set())
        watchers.add(watch)
        try:
            yield watch
        finally:
            watchers.discard(watch)
            if not watchers:
                del self._watches[video_id]


class _Subscriber:
    """One ``events()`` consumer's queue: bounded, the oldest dropped when full."""

    __slots__ = ("dropped", "queue")

    def __init__(self, max_queued: int) -> None:
        self.queue: asyncio.Queue[WebhookEvent] = asyncio.Queue(max_queued)
        self.dropped = 0

    def put(self, event: WebhookEvent) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            if not self.dropped:
                logger.warning(
                    "A WebhookReceiver.events() consumer is %d events behind: dropping "
                    "its oldest events (max_queued)",
                    self.queue.maxsize,
                )
            self.dropped += 1
        self.queue.put_nowait(event)


async def read_body(request: web.Request) -> bytes | None:
    """The request body, or None when it is larger than ``MAX_BODY_BYTES``."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)


def check_receiver(value: object) -> WebhookReceiver | None:
    """``AsyncVideos(webhooks=...)``: a ``WebhookReceiver`` or None."""
    if value is not None and not isinstance(value, WebhookReceiver):
        raise TypeError(
            f"webhooks must be an asyncvideos.webhooks.WebhookReceiver or None, "
            f"got {type(value).__name__}"
        )
    return value


def check_fallback_interval(value: object) -> float:
    """``AsyncVideos(webhook_fallback_interval=...)``: seconds, greater than 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"webhook_fallback_interval must be a number of seconds, got {type(value).__name__}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"webhook_fallback_interval must be > 0 and finite, got {value!r}")
    return float(value)
