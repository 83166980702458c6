"""The one place that calls aiohttp.

It owns (or borrows) the session, sends one attempt of a ``Request``, and
translates every aiohttp and asyncio failure into the exception tree, keeping
the original as ``__cause__``. Retries, headers and meaning live elsewhere.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Mapping
from typing import NoReturn
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


@attrs.define(slots=True)
class StreamedResponse:
    """A response whose body is read chunk by chunk, with errors translated."""

    status: int
    headers: CIMultiDictProxy[str]
    _response: aiohttp.ClientResponse
    _method: str
    _url: str

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _raise_translated(exc, self._method, self._url)

    def release(self) -> None:
        """Give the connection back (or close it, when the body was not read to the end)."""
        self._response.release()

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The body as it arrives, in pieces of at most ``size`` bytes."""
        try:
            # iter_any hands over each received buffer as it is; iter_chunked
            # would copy every byte to re-cut the stream into equal pieces.
            async for chunk in self._response.content.iter_any():
                if len(chunk) <= size:
                    yield chunk
                else:
                    for start in range(0, len(chunk), size):
                        yield chunk[start : start + size]
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _raise_translated(exc, self._method, self._url)


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

    async def open(self, request: Request, timeout: aiohttp.ClientTimeout) -> StreamedResponse:
        """Send a GET and return once the headers are in; the caller must
        ``release()`` the response when done with its body."""
        session = self._get_session()
        url = self.url(request)
        try:
            resp = await session.request(
                request.method, URL(url, encoded=True), headers=request.headers, timeout=timeout
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _raise_translated(exc, request.method, url)
        return StreamedResponse(resp.status, resp.headers, resp, request.method, url)

    async def close(self) -> None:
        """Close the session if this transport opened it; idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_session and self._session is not None:
            await self._session.close()
