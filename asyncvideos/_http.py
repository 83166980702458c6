"""The one place that calls aiohttp.

It owns (or borrows) the session, sends one attempt of a ``Request``, follows
redirects by the rules of ``_protocol.redirect_target``, reads bodies within a
size limit (counted after decompression, which happens here), and translates
every aiohttp and asyncio failure into the exception tree in one place,
``_translated``. Retries, headers and meaning live elsewhere.

It is also where server text enters: every response's headers, and every body
read whole as text, go through the request's ``Masker`` here, before anything
reads them, and so do aiohttp's exceptions (which may quote what the server
sent). A content body (a 2xx to a content request) is never altered.
"""

from __future__ import annotations

import asyncio
import enum
import zlib
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import _errors as errors
from ._masking import Masker
from ._protocol import REDIRECT_STATUSES, Request, origin, redirect_target

# aiohttp >= 3.10 tells a connect timeout (nothing was sent) from a read timeout.
_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(aiohttp, "ConnectionTimeoutError", None),) if cls is not None
)
_TLS_FAILURES = (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)
#: An error body is read for its message only: this much is plenty.
MAX_ERROR_BODY = 64 * 1024
MAX_REDIRECTS = 5
#: Decoded bytes handed over at a time while a body is buffered.
_READ_PIECE = 256 * 1024
_EMPTY_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@attrs.define(slots=True)
class Response:
    """A whole response: status, headers and the (decompressed, bounded) body.

    Never changed once made, though not frozen (one is made per attempt: see
    ``Request``).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


class _Decoder:
    """Undoes ``Content-Encoding`` (gzip or deflate) a bounded piece at a time.

    aiohttp's own decompression is switched off so that no single received
    buffer can inflate into more memory than the caller asked for.
    """

    def __init__(self, encoding: str) -> None:
        self._wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(self._wbits)
        self._raw_deflate = encoding == "deflate"

    def feed(self, data: bytes, piece: int, shown: str) -> Iterator[bytes]:
        """The decoded bytes of ``data``, in pieces of at most ``piece`` bytes."""
        try:
            while data:
                out = self._inflate.decompress(data, piece)
                data = self._inflate.unconsumed_tail
                if self._inflate.eof and self._inflate.unused_data:
                    # Another gzip member follows (rare, but legal).
                    data = self._inflate.unused_data + data
                    self._inflate = zlib.decompressobj(self._wbits)
                if out:
                    yield out
        except zlib.error:
            if self._raw_deflate and self._wbits > 0:
                # Some servers send raw deflate under ``deflate``: retry as such once.
                self._wbits = -zlib.MAX_WBITS
                self._inflate = zlib.decompressobj(self._wbits)
                yield from self.feed(data, piece, shown)
                return
            raise errors.APIResponseValidationError(
                f"The body of {shown} is not validly compressed"
            ) from None


def _decoder(headers: Mapping[str, str], request: Request) -> _Decoder | None:
    """The decoder of a body's ``Content-Encoding``, when the request asked for it.

    Content is asked for unencoded (``identity``), JSON as gzip or deflate;
    a body in an encoding that was not asked for is refused before any of it
    is read, so that no compressed body can inflate where none was expected.
    """
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    asked = request.headers.get("Accept-Encoding", "")
    names = {part.split(";", 1)[0].strip().lower() for part in asked.split(",")}
    if encoding in ("gzip", "x-gzip", "deflate") and encoding.removeprefix("x-") in names:
        return _Decoder(encoding)
    raise errors.ContentMismatchError(
        f"The server sent a body in an encoding that was not asked for: {encoding[:40]!r} "
        f"(Accept-Encoding: {asked[:40]!r})"
    )


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


class _Translated:
    """The one place where aiohttp's and asyncio's failures become the exception tree.

    Used as ``with _Translated(request, url):``. The original stays as
    ``__cause__``, scrubbed of the request's headers (aiohttp puts them,
    credentials included, in ``request_info``). A class, not a generator:
    it is entered twice per request.
    """

    __slots__ = ("_request", "_url", "_watch")

    def __init__(self, request: Request, url: URL, watch: _StallWatch | None = None) -> None:
        self._request = request
        self._url = url
        self._watch = watch

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        method = self._request.method
        if isinstance(exc, asyncio.CancelledError):
            if self._watch is not None:
                error = self._watch.timed_out(method, _shown(self._request, self._url))
                if error is not None:
                    raise error from None
        elif isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
            _scrub(exc, self._request)
            raise _translate(exc, method, _shown(self._request, self._url)) from exc


def _translate(exc: BaseException, method: str, url: str) -> errors.AsyncVideosError:
    error: errors.AsyncVideosError
    if isinstance(exc, asyncio.TimeoutError):  # includes aiohttp.ServerTimeoutError
        error = errors.APITimeoutError(f"{method} {url} timed out", method=method, url=url)
        error.request_sent = not isinstance(exc, _CONNECT_TIMEOUT)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = errors.APIConnectionError(
            f"Cannot connect to {url}: {exc.strerror or type(exc).__name__}",
            method=method,
            url=url,
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
    return error


def _scrub(exc: BaseException, request: Request) -> None:
    """Take the request's headers, and any credential quoted back, out of ``exc``.

    aiohttp's parser errors keep what the server sent (a status line, a header
    line, as str or bytes) in their args and attributes: each is masked.
    """
    if isinstance(exc, aiohttp.ClientResponseError):
        info = exc.request_info
        clean = aiohttp.RequestInfo(info.url, info.method, _EMPTY_HEADERS, info.real_url)
        exc.request_info = clean
        exc.history = ()
        exc.headers = None
        exc.args = (clean, ())
    masker = request.masker
    current: BaseException | None = exc
    for _ in range(8):  # the parser's own exceptions may quote what the server sent
        if current is None:
            break
        for name, value in list(vars(current).items()):
            masked = _masked(masker, value)
            if masked is not value:
                setattr(current, name, masked)
        current.args = tuple(_masked(masker, arg) for arg in current.args)
        current = current.__cause__ or current.__context__


def _masked(masker: Masker, value: object) -> object:
    if isinstance(value, str):
        return masker.text(value)
    if isinstance(value, bytes):
        return masker.body(value)
    if isinstance(value, Mapping):  # an aiohttp parser error's headers
        return masker.headers(value)
    return value


def _shown(request: Request, url: URL) -> str:
    """A URL for a message, with the request's credentials masked (a gateway may take
    the key in the path of ``base_url``, a redirect may put it in a path)."""
    return request.masker.text(shown_url(url))


def shown_url(url: URL) -> str:
    """A URL for a message: no query string (a signed URL's query is a credential)."""
    return str(url.with_query(None).with_fragment(None))


class StreamedResponse:
    """A response whose body is read chunk by chunk, with errors translated.

    ``stall_limit`` bounds each wait for the next bytes (None: no limit).
    """

    __slots__ = ("_decoder", "_request", "_response", "_url", "_watch", "headers", "status")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: Request,
        url: URL,
        watch: _StallWatch | None,
        headers: Mapping[str, str],
    ) -> None:
        self.status = response.status
        self.headers = headers  # as the request's masker let them through
        self._response = response
        self._request = request
        self._url = url
        self._watch = watch
        self._decoder: _Decoder | None = None

    async def read(self, limit: int, *, cut: bool = True) -> bytes:
        """The body, up to ``limit`` bytes: past it, the connection is closed and the
        first ``limit`` bytes returned (``cut``) or ``ResponseTooLargeError`` raised.
        Read as text: the request's credentials are masked, unless it is content."""
        return _as_read(self._request, self.status, await self.read_whole(limit, cut=cut))

    async def read_whole(self, limit: int, *, cut: bool = True) -> bytes:
        """``read()``, with the body as it came."""
        body = bytearray()
        async with aclosing(self.chunks(min(limit + 1, _READ_PIECE))) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > limit:
                    self._response.close()
                    if not cut:
                        raise _too_large(self._request, self._url, limit, None)
                    del body[limit:]  # in place: a copy would double the peak
                    break
        return bytes(body)

    def release(self) -> None:
        """Give the connection back (or close it, when the body was not read to the end)."""
        if self._watch is not None:
            self._watch.stop()
        self._response.release()

    async def chunks(self, size: int) -> AsyncGenerator[bytes, None]:
        """The (decoded) body as it arrives, in pieces of at most ``size`` bytes."""
        reader = self._response.content
        watch = self._watch
        with _Translated(self._request, self._url, watch):
            decoder = _decoder(self.headers, self._request)
            where = "" if decoder is None else _shown(self._request, self._url)
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
                if decoder is not None:
                    for piece in decoder.feed(chunk, size, where):
                        yield piece
                elif len(chunk) <= size:
                    yield chunk
                else:
                    for start in range(0, len(chunk), size):
                        yield chunk[start : start + size]


class Transport:
    """Sends requests over one aiohttp session and its one connection pool.

    A session passed in is borrowed: used, never closed. Otherwise the session
    is created on first use (inside the running loop) and closed by ``close()``.
    Either way the client is bound to the event loop it is first used in.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None,
        max_connections: int,
        max_response_bytes: int,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _State.OPEN

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def _get_session(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise RuntimeError("This AsyncVideos client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "This AsyncVideos client belongs to the event loop it was first used in; "
                "create one client per event loop (for example inside the coroutine "
                "that asyncio.run() runs)"
            )
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            # trust_env=False: proxy variables and .netrc are not read (documented).
            session = self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        elif session.closed:
            raise RuntimeError("The aiohttp.ClientSession given to AsyncVideos is closed")
        return session

    @staticmethod
    def _data(request: Request) -> aiohttp.FormData | bytes | None:
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

    async def _open(
        self, request: Request, timeout: aiohttp.ClientTimeout, watch: _StallWatch | None
    ) -> tuple[aiohttp.ClientResponse, URL, Mapping[str, str]]:
        """Send ``request`` and follow its redirects; return the final response, the
        URL to name in messages and the response's headers, masked (what is read
        of them). Credentials never leave the request's origin."""
        session = self._get_session()
        url = request.url
        headers = request.headers
        for _ in range(MAX_REDIRECTS + 1):
            with _Translated(request, url, watch):
                if watch is not None:
                    watch.waiting()
                response = await session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=self._data(request),
                    timeout=timeout,
                    allow_redirects=False,
                    auto_decompress=False,
                )
                if watch is not None:
                    watch.received()
            received = request.masker.headers(response.headers)
            if response.status not in REDIRECT_STATUSES:
                return response, url, received
            response.release()
            if request.method != "GET":
                raise _refused(response, received, f"a redirect of a {request.method} request")
            url, same = redirect_target(
                url, response.status, received, cross_origin=request.cross_origin_redirects
            )
            if not same:
                # Another origin: none of the client's credential or identity headers.
                headers = request.portable_headers
        raise _refused(
            response, received, f"more than {MAX_REDIRECTS} redirects (last: {origin(url)})"
        )

    async def send(self, request: Request, timeout: aiohttp.ClientTimeout) -> Response:
        """Send one attempt and read its whole body, within the size limit."""
        response, shown, headers = await self._open(request, timeout, None)
        status = response.status
        ok = 200 <= status < 300
        limit = self._max_response_bytes if ok else MAX_ERROR_BODY
        declared = headers.get("content-length", "")
        known = "content-encoding" not in headers and declared.isascii() and declared.isdigit()
        if known and ok and int(declared) > limit:
            response.close()
            raise _too_large(request, shown, limit, int(declared))
        try:
            if known and int(declared) <= limit:
                # The common case: aiohttp reads exactly the declared length.
                with _Translated(request, shown):
                    body = await response.read()
            else:
                # An error body is cut at its limit; a 2xx body past it is an error.
                streamed = StreamedResponse(response, request, shown, None, headers)
                body = await streamed.read_whole(limit, cut=not ok)
        except BaseException:
            response.close()
            raise
        finally:
            response.release()
        return Response(status, headers, _as_read(request, status, body))

    async def open(
        self, request: Request, timeout: aiohttp.ClientTimeout, stall_limit: float | None
    ) -> StreamedResponse:
        """Send a GET and return once the headers are in; the caller must
        ``release()`` the response. ``stall_limit`` bounds each wait for bytes,
        the headers' included."""
        watch = None if stall_limit is None else _StallWatch(stall_limit)
        try:
            response, shown, headers = await self._open(request, timeout, watch)
        except BaseException:
            if watch is not None:
                watch.stop()
            raise
        return StreamedResponse(response, request, shown, watch, headers)

    async def close(self) -> None:
        """Close the session if this transport opened it; idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_session and self._session is not None:
            await self._session.close()
            # Let the closed connections' transports finish closing before the
            # caller's loop may end (aiohttp before 3.12 does not wait for them).
            await asyncio.sleep(0)


def _as_read(request: Request, status: int, body: bytes) -> bytes:
    """A body read whole, as the client may read it: masked, unless it is content."""
    if request.content and 200 <= status < 300:
        return body  # the video's bytes, exactly as sent
    return request.masker.body(body)


def _refused(
    response: aiohttp.ClientResponse, headers: Mapping[str, str], what: str
) -> errors.RedirectError:
    response.close()
    return errors.RedirectError(
        f"HTTP {response.status}: refused to follow {what}",
        status_code=response.status,
        headers=headers,
        body=None,
    )


def _too_large(
    request: Request, url: URL, limit: int, declared: int | None
) -> errors.ResponseTooLargeError:
    size = f"{declared} bytes" if declared is not None else "more"
    return errors.ResponseTooLargeError(
        f"The response to {request.method} {_shown(request, url)} is {size}, over the client's "
        f"max_response_bytes={limit}; the connection was closed"
    )
