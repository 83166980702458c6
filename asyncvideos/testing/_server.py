"""FakeVideosAPI: a real HTTP server on loopback that behaves like the OpenAI Videos API.

It owns one aiohttp server, one job store, one fault plan and one request log, so two
fakes in one process never share state. Each request goes through the same steps, in
this order: read and record it; pick a fault; wait (``delay``); drop the connection
(``drop``) or answer with the fault's status; otherwise replay an idempotent POST or run
the endpoint; add the fault's headers; write the reply, possibly cut short.

Each request answered is logged at DEBUG: one line on the ``asyncvideos.testing``
logger (method, path and query, status, time taken, the fault met), its headers
(credentials masked) and body on ``asyncvideos.testing.details``. DEBUG, so that a
test capturing the client's INFO lines (its retries) sees nothing of the server's;
``asyncvideos serve`` shows the lines on stderr, and the details with ``--debug``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._clock import Clock, RealClock
from ._content import DEFAULT_CONTENT_SIZES, VARIANTS
from ._faults import Fault, FaultPlan, fault_body
from ._jobs import JobStore, Outcome, VideosView
from ._ratelimit import Limiter, RateLimit
from ._recording import RecordedRequest, mask_secret, record
from ._routes import Reply, Router, Settings
from ._validate import ApiError
from ._webhooks import (
    WebhookDelivery,
    WebhookFaults,
    WebhookSender,
    check_url,
    generate_webhook_secret,
)

if TYPE_CHECKING:
    from asyncvideos import AsyncVideos

__all__ = ["DEFAULT_API_KEY", "FakeVideosAPI"]

logger = logging.getLogger("asyncvideos.testing")
details = logging.getLogger("asyncvideos.testing.details")

DEFAULT_API_KEY = "sk-fake-0123456789abcdef"
# Large enough for any upload a test makes; aiohttp's default (1 MiB) would answer 413.
_MAX_REQUEST_BYTES = 512 * 1024 * 1024


class FakeVideosAPI(FaultPlan):
    """A fake OpenAI Videos API served over real HTTP on ``host:port``.

    Use it as an async context manager (or call ``start()`` and ``close()``). Jobs
    progress over ``clock`` (a :class:`~asyncvideos.testing.ManualClock` for exact
    control, real time otherwise): ``queue_seconds`` queued, then ``run_seconds`` in
    progress, then their outcome (see ``set_outcome``), each duration divided by
    ``speed`` (timestamps stay the real time). Ids and request ids come from RNGs
    seeded with ``seed``, so runs are reproducible.

    With ``webhook_url``, each job that finishes is announced by a signed
    ``video.completed`` / ``video.failed`` event POSTed there, signed with
    ``webhook_secret`` (one is generated when none is given: see
    ``webhook_secret``), meeting ``webhook_faults``; ``webhook_deliveries`` lists them.
    Given only ``webhook_secret``, events start once ``webhook_url`` is set (for a
    receiver started after the fake).

    A POST with an ``Idempotency-Key`` that succeeded is remembered for
    ``idempotency_ttl`` seconds of the fake's clock (None: for ever): the same
    key on the same path with the same body gets the first answer again
    (``idempotent-replayed: true``), with another body a 422
    ``idempotency_key_reused`` error (as the IETF Idempotency-Key draft and
    careful servers answer; nothing is created). ``idempotency_keys=False``
    ignores the header entirely, as LiteLLM's proxy does: every POST creates.
    """

    def __init__(
        self,
        *,
        api_key: str = "sk-fake-0123456789abcdef",  # DEFAULT_API_KEY, shown as its value
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        speed: float = 1.0,
        queue_seconds: float = 1.0,
        run_seconds: float = 5.0,
        poll_after_ms: int | None = 1000,
        content_sizes: Mapping[str, int] | None = None,
        accept_ranges: bool = True,
        require_auth: bool = True,
        id_prefix: str = "video_",
        seed: int = 0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_faults: WebhookFaults | None = None,
        rate_limit: RateLimit | None = None,
        idempotency_keys: bool = True,
        idempotency_ttl: float | None = 24 * 60 * 60,
    ) -> None:
        if clock is not None and speed != 1.0:
            raise ValueError("speed applies to the real-time clock; not with clock=")
        if queue_seconds < 0 or run_seconds < 0:
            raise ValueError("queue_seconds and run_seconds must not be negative")
        sizes = dict(DEFAULT_CONTENT_SIZES)
        sizes.update(content_sizes or {})
        if set(sizes) != set(VARIANTS) or any(size < 0 for size in sizes.values()):
            raise ValueError(f"content_sizes maps {VARIANTS} to sizes in bytes")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(f"rate_limit must be a RateLimit, got {type(rate_limit).__name__}")
        if not isinstance(idempotency_keys, bool):
            raise TypeError("idempotency_keys must be a bool")
        if idempotency_ttl is not None and not idempotency_ttl >= 0:
            raise ValueError(
                f"idempotency_ttl must be >= 0 seconds or None, got {idempotency_ttl!r}"
            )
        #: Whether an Idempotency-Key is honoured (False: ignored, as by LiteLLM).
        self.idempotency_keys = idempotency_keys
        #: Seconds (of the fake's clock) a key is remembered; None: for ever.
        self.idempotency_ttl = idempotency_ttl
        self.api_key = api_key
        self._limiter = None if rate_limit is None else Limiter(rate_limit)
        #: How many requests the rate limit answered with 429.
        self.rate_limited: int = 0
        self.host = host
        self.clock: Clock = clock if clock is not None else RealClock(speed)
        self._port = port
        self._store = JobStore(
            self.clock,
            queue_seconds=queue_seconds,
            run_seconds=run_seconds,
            id_prefix=id_prefix,
            seed=seed,
        )
        settings = Settings(api_key, require_auth, poll_after_ms, sizes, accept_ranges)
        self._router = Router(self._store, settings)
        FaultPlan.__init__(self)
        self._requests: list[RecordedRequest] = []
        #: (key, path) -> (the request's fingerprint, its answer, when it was given)
        self._idempotent: dict[tuple[str, str], tuple[str, Reply, float]] = {}
        self._request_ids = random.Random(f"{seed}:request-ids")
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._in_flight = 0
        self._max_in_flight = 0
        self.webhook_secret = webhook_secret
        self._webhooks: WebhookSender | None = None
        if webhook_url is not None or webhook_secret is not None:
            self.webhook_secret = webhook_secret or generate_webhook_secret()
            self._webhooks = WebhookSender(
                self._store,
                self.clock,
                webhook_url,
                self.webhook_secret,
                faults=webhook_faults,
                seed=seed,
            )

    # lifecycle -------------------------------------------------------------------------

    async def start(self) -> FakeVideosAPI:
        """Start serving; returns self. Starting twice is an error."""
        if self._runner is not None:
            raise RuntimeError("this FakeVideosAPI is already started")
        app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        # One catch-all route: the router works on the raw path (see _routes).
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # access_log=None: no log line per request; a short shutdown so close() is quick.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._closing.clear()
        self._runner = runner
        if self._webhooks is not None:
            await self._webhooks.start()
        return self

    async def close(self) -> None:
        """Stop serving and wake any request waiting on a ``delay`` fault. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        if self._webhooks is not None:
            await self._webhooks.close()
        await runner.cleanup()

    async def __aenter__(self) -> FakeVideosAPI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The port served on (the chosen free port once started)."""
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:8123``."""
        if self._runner is None:
            raise RuntimeError("the FakeVideosAPI is not started")
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The API base URL to give a client: ``{url}/v1``."""
        return f"{self.url}/v1"

    def client(self, **options: Any) -> AsyncVideos:
        """Return an ``AsyncVideos`` pointed at this fake; the caller closes it."""
        from asyncvideos import AsyncVideos  # lazy: the client needs the fake, not the reverse

        return AsyncVideos(api_key=self.api_key, base_url=self.base_url, **options)

    # jobs ------------------------------------------------------------------------------

    def add_videos(self, *videos: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Seed jobs; return their JSON as stored (in the order given).

        Missing fields get realistic defaults: ``object`` "video", ``model`` "sora-2",
        ``status`` "completed", ``created_at`` now, ``size`` "720x1280", ``seconds`` "4",
        a prompt, and timestamps and ``progress`` consistent with the status. A job given
        as ``completed`` or ``failed`` keeps that status; one given as ``queued`` or
        ``in_progress`` progresses from its ``created_at`` like a created job (an
        ``in_progress`` one is in progress at least from now, at its given ``progress``).
        Extra keys are kept and served, to test a client's tolerance of new fields. A job
        with an existing id replaces it.
        """
        return [self._store.add(video) for video in videos]

    def seed(
        self,
        n: int,
        *,
        status: str = "completed",
        prefix: str = "video_",
        start: int | None = None,
    ) -> list[str]:
        """Seed ``n`` jobs created one second apart (ending now unless ``start`` is given).

        Returns their ids in ascending listing order.
        """
        first = int(self.clock.now()) - n + 1 if start is None else start
        ids: list[str] = []
        for index in range(n):
            video_id = self._store.new_id(prefix)
            self._store.add({"id": video_id, "status": status, "created_at": first + index})
            ids.append(video_id)
        return ids

    def remove_video(self, video_id: str) -> bool:
        """Delete a job (a cursor on it keeps working); False if there was none."""
        return self._store.remove(video_id)

    @property
    def videos(self) -> Mapping[str, dict[str, Any]]:
        """Read-only view: id to the job's JSON at the current clock time."""
        return VideosView(self._store)

    def set_outcome(
        self,
        video_id: str | None,
        status: str,
        *,
        error: Mapping[str, str] | None = None,
        duration: float | None = None,
    ) -> None:
        """Decide how a job ends: "completed" or "failed" (with ``error``, a code and message).

        ``duration`` overrides ``run_seconds`` for that job. With ``video_id`` None, it is
        the default for jobs created from now on. An id not known yet applies when a job
        with that id is seeded; a seeded final job switches at once.
        """
        self._store.set_outcome(video_id, Outcome(status, error, duration))

    def content_bytes(self, video_id: str, variant: str = "video") -> bytes:
        """The exact bytes the content endpoint serves for this job and variant."""
        if variant not in VARIANTS:
            raise ValueError(f"variant is one of {VARIANTS}, not {variant!r}")
        return self._router.content_source(video_id, variant).read()

    # webhooks --------------------------------------------------------------------------

    @staticmethod
    def generate_webhook_secret() -> str:
        """A new random signing secret (``whsec_`` + base64), for the fake and your receiver."""
        return generate_webhook_secret()

    @property
    def webhook_url(self) -> str | None:
        """Where events are sent (None: nowhere yet); may be set while the fake runs."""
        return None if self._webhooks is None else self._webhooks.url

    @webhook_url.setter
    def webhook_url(self, url: str) -> None:
        if self._webhooks is None:
            raise RuntimeError(
                "this FakeVideosAPI sends no webhooks: give it webhook_url= or webhook_secret="
            )
        self._webhooks.url = check_url(url)

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every webhook event sent (or dropped by a fault), in the order sent."""
        return [] if self._webhooks is None else self._webhooks.deliveries

    def set_webhook_faults(self, faults: WebhookFaults) -> None:
        """Apply ``faults`` to the events sent from now on."""
        if self._webhooks is None:
            raise RuntimeError(
                "this FakeVideosAPI sends no webhooks: give it webhook_url= or webhook_secret="
            )
        self._webhooks.set_faults(faults)

    # requests and faults ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request that reached the server, in order, faulted ones included."""
        return self._requests

    def clear_requests(self) -> None:
        """Forget the recorded requests (and reset ``max_in_flight``)."""
        self._requests.clear()
        self._max_in_flight = self._in_flight

    @property
    def in_flight(self) -> int:
        """How many requests are being handled right now (read, delayed or written)."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since start or ``clear_requests()``: for
        checking a client's concurrency limit (add a ``delay`` fault so requests overlap)."""
        return self._max_in_flight

    # the request pipeline --------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Counted around the whole exchange, from reading the request to the last byte.
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response: web.StreamResponse | None = None
        seen: dict[str, Any] = {}  # what the log tells: the record, and the fault met
        try:
            response = await self._handle_one(request, seen)
            return response
        finally:
            self._in_flight -= 1
            if logger.isEnabledFor(logging.DEBUG):
                _log_request(request, response, loop.time() - started, seen)

    async def _handle_one(self, request: web.Request, seen: dict[str, Any]) -> web.StreamResponse:
        try:
            rec = await record(request)
        except ConnectionError:
            return web.Response(status=499)  # the client went away mid-upload
        self._requests.append(rec)
        seen["record"] = rec
        # Over the rate limit: a 429 before any fault or endpoint (neither is used up).
        limit = None if self._limiter is None else self._limiter.take()
        over = limit is not None and not limit.allowed
        fault = None if over else self.pick_fault(rec.method, rec.raw_path)
        seen["met"] = "rate limited" if over else None if fault is None else _described(fault)
        if fault is not None and fault.delay:
            # Wakes early on close() so shutdown never waits for a long delay.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay)
        if fault is not None and (fault.drop or self._closing.is_set()):
            # A request still waiting when the fake closes is dropped, as by a server
            # going away, rather than answered during shutdown.
            _close_connection(request)
            return web.Response(status=499)  # never sent: the connection is gone
        if fault is not None and fault.status is not None:
            body, content_type = fault_body(fault, fault.status)
            reply = Reply(fault.status, body, {"Content-Type": content_type})
        elif limit is not None and over:
            self.rate_limited += 1
            reply = limit.reply()
        else:
            reply = self._run(rec)
        reply.headers["x-request-id"] = f"req_{self._request_ids.getrandbits(128):032x}"
        if limit is not None:
            reply.headers.update(limit.headers)
        cut = stall = None
        if fault is not None:
            reply.headers.update(fault.headers)
            cut = fault.cut_at(reply.length)
            stall = fault.stall_after_bytes
        return await _write(request, reply, cut, stall, self._closing)

    def _run(self, rec: RecordedRequest) -> Reply:
        key = rec.headers.get("idempotency-key")
        if rec.method != "POST" or not key or not self.idempotency_keys:
            return self._router.dispatch(rec)
        now = self.clock.now()
        self._forget_keys(now)
        fingerprint = _request_fingerprint(rec)
        cached = self._idempotent.get((key, rec.raw_path))
        if cached is not None:
            if cached[0] != fingerprint:
                return Reply.error(
                    ApiError(
                        422,
                        f"Idempotency-Key {key[:100]!r} was already used with a different "
                        "request; use a new key for a new request.",
                        param="Idempotency-Key",
                        code="idempotency_key_reused",
                    )
                )
            reply = cached[1]
            headers = {**reply.headers, "idempotent-replayed": "true"}
            return Reply(reply.status, reply.body, headers)
        reply = self._router.dispatch(rec)
        # Only successes are remembered: a rejected request did nothing to replay.
        if 200 <= reply.status < 300:
            kept = Reply(reply.status, reply.body, dict(reply.headers))
            self._idempotent[(key, rec.raw_path)] = (fingerprint, kept, now)
        return reply

    def _forget_keys(self, now: float) -> None:
        """Forget keys older than ``idempotency_ttl`` (kept in the order they came)."""
        ttl = self.idempotency_ttl
        if ttl is None:
            return
        remembered = self._idempotent
        while remembered:
            oldest = next(iter(remembered))
            if now - remembered[oldest][2] < ttl:
                return
            del remembered[oldest]


def _request_fingerprint(rec: RecordedRequest) -> str:
    """What a request asked for: its parsed JSON body, or its raw body with the
    multipart boundary taken out (each client picks its own)."""
    if rec.json is not None:
        data = json.dumps(rec.json, sort_keys=True, separators=(",", ":")).encode()
    else:
        data = rec.body
        _, _, boundary = rec.headers.get("content-type", "").partition("boundary=")
        boundary = boundary.split(";", 1)[0].strip().strip('"')
        if boundary:
            data = data.replace(boundary.encode(), b"")
    return hashlib.sha256(data).hexdigest()


_LOGGED_BODY = 2000  # characters of a body shown at DEBUG


def _described(fault: Fault) -> str:
    """``fault: status=500, delay=0.1``: the fields a fault sets, for the log."""
    unset = Fault()
    shown = [
        # A body is named, not quoted: a test may put anything in it (a key it checks for).
        f"{field.name}=..." if field.name == "body" else f"{field.name}={value!r}"
        for field in attrs.fields(Fault)
        if (value := getattr(fault, field.name)) != getattr(unset, field.name)
    ]
    return "fault: " + ", ".join(shown)


def _log_request(
    request: web.Request,
    response: web.StreamResponse | None,
    elapsed: float,
    seen: dict[str, Any],
) -> None:
    """One line per request; its headers and body on the details logger."""
    rec: RecordedRequest | None = seen.get("record")
    status = "dropped" if response is None or response.status == 499 else str(response.status)
    met = seen.get("met")
    logger.debug(
        "%s %s -> %s in %.1f ms%s",
        request.method,
        request.raw_path,  # with the query string, as sent
        status,
        elapsed * 1000,
        f" ({met})" if met else "",
    )
    if rec is None or not details.isEnabledFor(logging.DEBUG):
        return
    headers = {
        name: mask_secret(value) if name in ("authorization", "api-key") else value
        for name, value in rec.headers.items()
    }
    details.debug("  headers: %s", json.dumps(headers, ensure_ascii=False))
    if rec.json is not None:
        body = json.dumps(rec.json, ensure_ascii=False)
    elif rec.form is not None:
        body = "form " + json.dumps(rec.form, ensure_ascii=False)
    elif rec.body:
        body = f"{len(rec.body)} bytes"
    else:
        return
    cut = "..." if len(body) > _LOGGED_BODY else ""
    details.debug("  body: %s%s", body[:_LOGGED_BODY], cut)


def _close_connection(request: web.Request) -> None:
    # close(), not abort(): bytes already written are flushed first, then FIN, so the
    # client sees exactly the partial body and then a disconnect.
    transport = request.transport
    if transport is not None:
        transport.close()


async def _write(
    request: web.Request,
    reply: Reply,
    cut: int | None,
    stall: int | None,
    closing: asyncio.Event,
) -> web.StreamResponse:
    """Write a reply in chunks; with ``cut``, stop after that many body bytes and hang
    up; with ``stall``, stop after that many and wait, connection open, until closing.
    A reply to HEAD has the headers a GET would have, and never a body: on a kept-alive
    connection its bytes would be read as the start of the next response."""
    response = web.StreamResponse(status=reply.status, headers=reply.headers)
    response.content_length = reply.length
    try:
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        sent = 0
        for chunk in reply.chunks():
            if stall is not None and sent + len(chunk) > stall:
                await response.write(chunk[: stall - sent])
                await closing.wait()
                _close_connection(request)
                return response
            if cut is not None and sent + len(chunk) > cut:
                # write() also sends the buffered headers, even for an empty piece.
                await response.write(chunk[: cut - sent])
                _close_connection(request)
                # aiohttp's own write_eof afterwards fails with ConnectionError, which it
                # handles quietly; the handler must not raise.
                return response
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
    except ConnectionError:
        pass  # the client hung up (e.g. its timeout fired during a delay)
    return response
