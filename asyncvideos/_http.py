"""The one place that calls aiohttp.

It owns (or borrows) the session, sends one attempt of a ``Request``, and
translates every aiohttp and asyncio failure into the exception tree, keeping
the original as ``__cause__``. Retries, headers and meaning live elsewhere.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Mapping
from typing import Any, NoReturn
from urllib.parse import urlencode

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from . import _errors as errors
from ._protocol import Request

# aiohttp >= 3.10 tells a connect timeout (nothing was sent) from a read timeout.
_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(aiohttp, "ConnectionTimeoutError", None),) if cls is not None
)
_TLS_FAILURES = (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@attrs.frozen(slots=True)
class Response:
    """A whole response: status, headers and the body, read to the end."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _StallWatch:
    """Cancels the reading task once it has waited ``limit`` seconds for a byte.

    One timer checks twice per ``limit``, where aiohttp's ``sock_read`` re-arms a
    timer for every buffer received (a heap push and a cancel per buffer, an
    eighth of a download's CPU). Only time spent waiting for the server counts,
    never time the consumer spends between chunks; a stall is caught between
    ``limit`` and 1.5 x ``limit`` after it began.
    """

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        # The task is held only while it waits: whichever task reads is the one
        # to stop, and a stream dropped between reads is not kept alive by the
        # loop (which holds this watch through its timer).
        self._waiter: asyncio.Task[Any] | None = None
        self._since = 0.0
        self._fired: asyncio.Task[Any] | None = None
        self._handle = self._loop.call_later(limit / 2, self._check)

    def waiting(self) -> None:
        self._waiter = asyncio.current_task()
        self._since = self._loop.time()

    def received(self) -> None:
        self._waiter = None

    def _check(self) -> None:
        waiter = self._waiter
        if waiter is not None and self._loop.time() - self._since >= self._limit:
            self._fired, self._waiter = waiter, None
            waiter.cancel()
            return
        self._handle = self._loop.call_later(self._limit / 2, self._check)

    def stop(self) -> None:
        self._handle.cancel()
        self._waiter = None

    def timed_out(self, method: str, url: str) -> errors.APITimeoutError | None:
        """After a CancelledError: the timeout error, when this watch caused it.

        The cancellation is then taken back (Python 3.11+ counts them), so the
        task is not left looking cancelled.
        """
        fired, self._fired = self._fired, None
        if fired is None:
            return None
        uncancel = getattr(fired, "uncancel", None)
        if uncancel is not None:
            uncancel()
        return errors.APITimeoutError(
            f"{method} {url}: no data for {self._limit} s", method=method, url=url
        )


@attrs.define(slots=True)
class StreamedResponse:
    """A response whose body is read chunk by chunk, with errors translated.

    ``stall_limit`` bounds each wait for the next bytes (None: no limit).
    """

    status: int
    headers: CIMultiDictProxy[str]
    _response: aiohttp.ClientResponse
    _method: str
    _url: str
    _watch: _StallWatch | None

    async def read(self) -> bytes:
        try:
            self._waiting()
            return await self._response.read()
        except asyncio.CancelledError:
            self._raise_if_stalled()
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _raise_translated(exc, self._method, self._url)

    def release(self) -> None:
        """Give the connection back (or close it, when the body was not read to the end)."""
        if self._watch is not None:
            self._watch.stop()
        self._response.release()

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The body as it arrives, in pieces of at most ``size`` bytes."""
        reader = self._response.content
        watch = self._watch
        try:
            while True:
                if watch is not None:
                    watch.waiting()
                # readany hands over each received buffer as it is; iter_chunked
                # would copy every byte to re-cut the stream into equal pieces.
                chunk = await reader.readany()
                if watch is not None:
                    watch.received()
                if not chunk:
                    return
                if len(chunk) <= size:
                    yield chunk
                else:
                    for start in range(0, len(chunk), size):
                        yield chunk[start : start + size]
        except asyncio.CancelledError:
            self._raise_if_stalled()
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _raise_translated(exc, self._method, self._url)

    def _waiting(self) -> None:
        if self._watch is not None:
            self._watch.waiting()

    def _raise_if_stalled(self) -> None:
        if self._watch is not None:
            error = self._watch.timed_out(self._method, self._url)
            if error is not None:
                raise error from None


def _raise_translated(exc: BaseException, method: str, url: str) -> NoReturn:
    """Raise the exception-tree equivalent of an aiohttp or asyncio failure."""
    error: errors.AsyncVideosError
    if isinstance(exc, asyncio.TimeoutError):  # includes aiohttp.ServerTimeoutError
        error = errors.APITimeoutError(f"{method} {url} timed out", method=method, url=url)
        error.request_sent = not isinstance(exc, _CONNECT_TIMEOUT)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = errors.APIConnectionError(
            f"Cannot connect to {url}: {exc.strerror or exc}", method=method, url=url
        )
        # Nothing reached the server, so even a POST may be retried; but a
        # certificate that does not verify will not verify on the next try.
        error.request_sent = isinstance(exc, _TLS_FAILURES)
        error.retry_can_help = not isinstance(exc, aiohttp.ClientConnectorCertificateError)
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = errors.APIResponseValidationError(
            f"Malformed HTTP response from {method} {url}: {exc.message}",
            status_code=exc.status or None,
        )
    else:
        reason = str(exc) or type(exc).__name__
        error = errors.APIConnectionError(
            f"Connection error on {method} {url}: {reason}", method=method, url=url
        )
    raise error from exc


class Transport:
    """Sends requests over one aiohttp session and its one connection pool.

    A session passed in is borrowed: used, never closed. Otherwise the session
    is created on first use (inside the running loop) and closed by ``close()``.
    """

    def __init__(
        self, base_url: str, *, session: aiohttp.ClientSession | None, max_connections: int
    ) -> None:
        self._base_url = base_url
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._state = _State.OPEN

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def url(self, request: Request) -> str:
        url = self._base_url + request.path
        if request.query:
            url += "?" + urlencode(request.query)
        return url

    def _get_session(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise RuntimeError("This AsyncVideos client is closed; create a new one")
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            session = self._session = aiohttp.ClientSession(connector=connector)
        elif session.closed:
            raise RuntimeError("The aiohttp.ClientSession given to AsyncVideos is closed")
        return session

    def _data(self, request: Request) -> aiohttp.FormData | bytes | None:
        if request.form_fields is None:
            return request.json_body
        form = aiohttp.FormData()
        for name, value in request.form_fields.items():
            form.add_field(name, value)
        for part in request.form_files:
            form.add_field(
                part.name, part.data, filename=part.filename, content_type=part.content_type
            )
        return form

    async def send(self, request: Request, timeout: aiohttp.ClientTimeout) -> Response:
        """Send one attempt and read its whole body."""
        session = self._get_session()
        url = self.url(request)
        try:
            async with session.request(
                request.method,
                URL(url, encoded=True),
                headers=request.headers,
                data=self._data(request),
                timeout=timeout,
                allow_redirects=request.method == "GET",
            ) as resp:
                body = await resp.read()
                return Response(resp.status, resp.headers, body)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _raise_translated(exc, request.method, url)

    async def open(
        self, request: Request, timeout: aiohttp.ClientTimeout, stall_limit: float | None
    ) -> StreamedResponse:
        """Send a GET and return once the headers are in; the caller must
        ``release()`` the response. ``stall_limit`` bounds each wait for bytes,
        the headers' included."""
        session = self._get_session()
        url = self.url(request)
        watch = None if stall_limit is None else _StallWatch(stall_limit)
        try:
            if watch is not None:
                watch.waiting()
            resp = await session.request(
                request.method, URL(url, encoded=True), headers=request.headers, timeout=timeout
            )
        except BaseException as exc:
            if watch is not None:
                watch.stop()
                if isinstance(exc, asyncio.CancelledError):
                    error = watch.timed_out(request.method, url)
                    if error is not None:
                        raise error from None
            if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
                _raise_translated(exc, request.method, url)
            raise
        if watch is not None:
            watch.received()
        return StreamedResponse(resp.status, resp.headers, resp, request.method, url, watch)

    async def close(self) -> None:
        """Close the session if this transport opened it; idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_session and self._session is not None:
            await self._session.close()
