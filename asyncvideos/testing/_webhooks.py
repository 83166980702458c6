"""The fake's webhooks: signed ``video.completed`` / ``video.failed`` events, sent when
jobs finish, with faults for tests.

Signing follows Standard Webhooks as OpenAI uses it: ``webhook-id``,
``webhook-timestamp`` (Unix seconds, real time) and ``webhook-signature``
(``v1,`` + base64 of HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``, keyed with
the bytes the ``whsec_`` secret encodes). It is written here on its own, not
borrowed from the client's verifier, so the two check each other.

The sender keeps a heap of when each progressing job ends (the job store tells
it of every job created or changed) and wakes for the earliest: at the exact
moment on a ``RealClock``, by checking every 20 ms on any other clock (a
``ManualClock`` moves only when told to). Events go out through up to 64 concurrent deliveries,
in the order jobs finish unless a fault says otherwise; a delivery that fails
to connect or gets a 5xx is retried twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import math
import random
import secrets
import time
from collections.abc import Callable

import aiohttp
import attrs

from ._clock import Clock, RealClock
from ._jobs import JobStore

__all__ = [
    "WebhookDelivery",
    "WebhookFaults",
    "WebhookSender",
    "generate_webhook_secret",
    "sign_webhook",
]

_PREFIX = "whsec_"
#: How often a clock that is not a RealClock is checked for jobs that ended.
_CHECK_EVERY = 0.02
#: A held-back ("reordered") event goes out after the next one, or after this long.
_HOLD_AT_MOST = 0.5
#: Deliveries in flight at once: enough that a slow receiver does not queue them.
_WORKERS = 64
_ATTEMPTS = 3


def generate_webhook_secret() -> str:
    """A new random signing secret: ``whsec_`` and 32 random bytes in base64."""
    return _PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret.startswith(_PREFIX):
        raise ValueError("webhook_secret must start with 'whsec_' (see generate_webhook_secret)")
    try:
        key = base64.b64decode(secret[len(_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("webhook_secret: what follows 'whsec_' must be base64") from None
    if not key:
        raise ValueError("webhook_secret is empty after 'whsec_'")
    return key


def sign_webhook(
    body: bytes, secret: str, *, webhook_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers a Standard Webhooks sender puts on ``body``: for tests that post
    their own events to a receiver. ``timestamp`` defaults to now."""
    return _headers(
        body, _key(secret), webhook_id, int(time.time()) if timestamp is None else timestamp
    )


def _headers(body: bytes, key: bytes, webhook_id: str, timestamp: int) -> dict[str, str]:
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": "asyncvideos-fake-webhooks",
    }


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook_url must be an http(s) URL, got {url!r}")
    return url


def _rate(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"a webhook fault rate is a probability from 0 to 1, got {value!r}")
    return float(value)


@attrs.frozen
class WebhookFaults:
    """What goes wrong with the fake's webhooks; rates are probabilities per event.

    ``drop``: never sent. ``duplicate``: sent twice (same id and body, signed
    again). ``reorder``: held back and sent after the next event (or after
    0.5 s). ``bad_signature``: sent once with a signature from another key.
    ``delay``: seconds every event waits before it goes out. ``seed`` makes the
    choices repeatable.
    """

    drop: float = attrs.field(default=0.0, converter=_rate)
    duplicate: float = attrs.field(default=0.0, converter=_rate)
    reorder: float = attrs.field(default=0.0, converter=_rate)
    bad_signature: float = attrs.field(default=0.0, converter=_rate)
    delay: float = 0.0
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"delay must be a number of seconds >= 0, got {self.delay!r}")


@attrs.frozen
class WebhookDelivery:
    """One event the fake sent (or meant to), and the receiver's answer.

    ``fault`` is None or the fault it met: ``"dropped"`` (never sent),
    ``"duplicate"`` (the second copy), ``"reordered"``, ``"bad_signature"``,
    ``"delayed"``. ``status`` is the HTTP status of the last attempt, or None
    when nothing answered (or nothing was sent).
    """

    event_id: str
    video_id: str
    type: str
    fault: str | None
    status: int | None
    #: When the event was sent (``time.time()``), or None for a dropped one.
    sent_at: float | None


@attrs.define
class _Message:
    event_id: str
    video_id: str
    type: str
    body: bytes
    fault: str | None = None
    bad_signature: bool = False
    duplicate: bool = False
    #: Held-back messages that go out once this one is delivered.
    then: list[_Message] = attrs.Factory(list)


class WebhookSender:
    """Sends a signed event for each job of ``store`` when it ends, to ``url``."""

    def __init__(
        self,
        store: JobStore,
        clock: Clock,
        url: str | None,
        secret: str,
        *,
        faults: WebhookFaults | None = None,
        seed: int = 0,
    ) -> None:
        self.url = None if url is None else check_url(url)
        self._key = _key(secret)
        self._store = store
        self._clock = clock
        self._ids = random.Random(f"{seed}:webhook-ids")
        self.set_faults(faults or WebhookFaults())
        self._due: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._sent: set[str] = set()
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[_Message] = asyncio.Queue()
        self._held: list[_Message] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.deliveries: list[WebhookDelivery] = []
        store.on_change = self.job_changed

    def set_faults(self, faults: WebhookFaults) -> None:
        self._faults = faults
        self._rng = random.Random(faults.seed)

    def job_changed(self, video_id: str) -> None:
        """Note when a job ends (again, if its outcome changed)."""
        finish = self._store.finish(video_id)
        if finish is None or video_id in self._sent:
            return
        heapq.heappush(self._due, (finish[0], next(self._order), video_id))
        self._wake.set()

    # lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._tasks = [asyncio.ensure_future(self._schedule())]
        self._tasks += [asyncio.ensure_future(self._deliver()) for _ in range(_WORKERS)]

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # scheduling ------------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            while self._due and self._due[0][0] <= now:
                due, _, video_id = heapq.heappop(self._due)
                finish = self._store.finish(video_id)
                # Stale: the job was deleted, or its end moved (a newer entry exists).
                if finish is None or finish[0] != due or video_id in self._sent:
                    continue
                self._sent.add(video_id)
                self._emit(video_id, finish[1], due)
            timeout: float | None = None
            if self._due:
                ahead = self._due[0][0] - now
                # A RealClock moves on its own: sleep until then. Others are checked.
                real = isinstance(self._clock, RealClock)
                timeout = ahead if real else min(ahead, _CHECK_EVERY)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _emit(self, video_id: str, status: str, due: float) -> None:
        if self.url is None:
            return  # nowhere to send it yet
        event_id = f"evt_{self._ids.getrandbits(96):024x}"
        event_type = f"video.{status}"
        body = {
            "id": event_id,
            "object": "event",
            "created_at": int(due),
            "type": event_type,
            "data": {"id": video_id},
        }
        message = _Message(event_id, video_id, event_type, json.dumps(body).encode())
        faults = self._faults
        if self._roll(faults.drop):
            self.deliveries.append(
                WebhookDelivery(event_id, video_id, event_type, "dropped", None, None)
            )
            return
        if self._roll(faults.bad_signature):
            message.fault, message.bad_signature = "bad_signature", True
        message.duplicate = self._roll(faults.duplicate)
        if self._roll(faults.reorder):
            message.fault = message.fault or "reordered"
            self._held.append(message)
            self._later(_HOLD_AT_MOST, self._release_held)
            return
        # Events held back go out after this one, so they arrive out of order.
        message.then, self._held = self._held, []
        if faults.delay:
            message.fault = message.fault or "delayed"
            self._later(faults.delay, self._queue.put_nowait, message)
        else:
            self._queue.put_nowait(message)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(timer)
            callback(*args)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    def _release_held(self) -> None:
        # Newest first: held events still arrive out of order when no event
        # came after them (as with reorder=1.0).
        held, self._held = self._held, []
        for message in reversed(held):
            self._queue.put_nowait(message)

    # delivery --------------------------------------------------------------------------

    async def _deliver(self) -> None:
        while True:
            message = await self._queue.get()
            sent_at = time.time()
            status = await self._post(message)
            self.deliveries.append(
                WebhookDelivery(
                    message.event_id,
                    message.video_id,
                    message.type,
                    message.fault,
                    status,
                    sent_at,
                )
            )
            for follower in message.then:
                self._queue.put_nowait(follower)
            if message.duplicate:
                self._queue.put_nowait(
                    _Message(
                        message.event_id, message.video_id, message.type, message.body, "duplicate"
                    )
                )

    async def _post(self, message: _Message) -> int | None:
        assert self._session is not None
        assert self.url is not None
        key = secrets.token_bytes(32) if message.bad_signature else self._key
        status: int | None = None
        for attempt in range(_ATTEMPTS):
            headers = _headers(message.body, key, message.event_id, int(time.time()))
            try:
                async with self._session.post(
                    self.url, data=message.body, headers=headers
                ) as reply:
                    await reply.read()
                    status = reply.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = None
            if status is not None and status < 500:
                return status
            if attempt + 1 < _ATTEMPTS:
                await asyncio.sleep(0.1 * 2**attempt)
        return status
