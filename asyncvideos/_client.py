"""The client's lifecycle and request machinery, shared by every endpoint.

``BaseClient`` resolves settings, builds headers (the one place where a header
is set), runs each request through the retry policy, and turns a response into
JSON or a typed error. ``AsyncVideos`` in ``_videos.py`` adds one thin method
per endpoint on top.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

import aiohttp
import attrs

from . import _errors as errors
from ._config import (
    NOT_GIVEN,
    USER_AGENT,
    ApiKey,
    AuthScheme,
    NotGiven,
    TimeoutSetting,
    check_headers,
    check_max_retries,
    check_str_mapping,
    check_timeout,
    resolve_settings,
)
from ._http import StreamedResponse, Transport
from ._protocol import (
    FormFile,
    Request,
    decode_json,
    dumps,
    mask_secret,
    redact,
    status_error,
)
from ._retry import call_with_retries

if TYPE_CHECKING:
    pass

DEFAULT_MAX_CONNECTIONS = 100


class RequestOptions(TypedDict, total=False):
    """The per-call options every request method takes, for that call alone.

    ``timeout``: seconds, an ``aiohttp.ClientTimeout`` or None (no limit), per
    attempt. ``max_retries``: 0 to 100. ``extra_headers`` / ``extra_query``:
    added to (and overriding) the client's defaults.
    """

    timeout: TimeoutSetting
    max_retries: int
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, str] | None


@attrs.frozen(slots=True)
class CallOptions:
    """The per-call settings of one request, checked before any I/O."""

    timeout: aiohttp.ClientTimeout
    max_retries: int
    extra_headers: Mapping[str, str]
    extra_query: Mapping[str, str]
    idempotency_key: str | None = None


class BaseClient:
    """Settings, one connection pool, and the request/retry machinery."""

    def __init__(
        self,
        *,
        api_key: ApiKey | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: TimeoutSetting | NotGiven = NOT_GIVEN,
        max_retries: int = 2,
        session: aiohttp.ClientSession | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        auth_scheme: AuthScheme = "bearer",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._settings = resolve_settings(
            api_key=api_key,
            base_url=base_url,
            organization=organization,
            project=project,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            default_query=default_query,
            auth_scheme=auth_scheme,
        )
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if type(max_connections) is not int or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
        self._transport = Transport(
            self._settings.base_url, session=session, max_connections=max_connections
        )
        self._static_headers = self._build_static_headers()
        self._default_options = CallOptions(
            timeout=self._settings.timeout,
            max_retries=self._settings.max_retries,
            extra_headers={},
            extra_query=self._settings.default_query,
        )

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Any:
        if self._transport.closed:
            raise RuntimeError("This AsyncVideos client is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool this client opened (a borrowed session is left open)."""
        await self._transport.close()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def __repr__(self) -> str:
        key = self._settings.api_key
        shown = mask_secret(key) if isinstance(key, str) else "<callable>"
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={shown!r})"

    # -- headers -----------------------------------------------------------

    def _build_static_headers(self) -> dict[str, str]:
        settings = self._settings
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if settings.organization:
            headers["OpenAI-Organization"] = settings.organization
        if settings.project:
            headers["OpenAI-Project"] = settings.project
        headers.update(settings.default_headers)
        return headers

    async def _api_key(self) -> str:
        key = self._settings.api_key
        if isinstance(key, str):
            return key
        value = key()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise TypeError("the api_key callable must return a non-empty str")
        return value

    def _headers(self, options: CallOptions, key: str, *, json_body: bool) -> dict[str, str]:
        headers = dict(self._static_headers)
        if self._settings.auth_scheme == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers["api-key"] = key
        if json_body:
            headers["Content-Type"] = "application/json"
        if options.idempotency_key is not None:
            headers["Idempotency-Key"] = options.idempotency_key
        if options.extra_headers:
            headers.update(options.extra_headers)
        return headers

    # -- options -----------------------------------------------------------

    def _options(
        self,
        *,
        timeout: TimeoutSetting | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        idempotency_key: str | NotGiven | None = NOT_GIVEN,
        timeout_name: str = "timeout",
    ) -> CallOptions:
        """Check the per-call options; the fast path reuses the client's defaults."""
        if (
            timeout is NOT_GIVEN
            and max_retries is NOT_GIVEN
            and extra_headers is None
            and extra_query is None
            and idempotency_key is NOT_GIVEN
        ):
            return self._default_options
        defaults = self._default_options
        if idempotency_key is NOT_GIVEN:
            key: str | None = None
        elif idempotency_key is None:
            key = uuid.uuid4().hex
        else:
            if not isinstance(idempotency_key, str):
                raise TypeError(
                    f"idempotency_key must be a str, got {type(idempotency_key).__name__}"
                )
            if not idempotency_key.strip():
                raise ValueError("idempotency_key must be a non-empty str")
            key = idempotency_key
        return CallOptions(
            timeout=(
                defaults.timeout if timeout is NOT_GIVEN else check_timeout(timeout, timeout_name)
            ),
            max_retries=(
                defaults.max_retries if max_retries is NOT_GIVEN else check_max_retries(max_retries)
            ),
            extra_headers=check_headers(extra_headers, "extra_headers"),
            extra_query={**defaults.extra_query, **check_str_mapping(extra_query, "extra_query")},
            idempotency_key=key,
        )

    # -- requests ----------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        options: CallOptions,
        *,
        query: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        form_fields: Mapping[str, str] | None = None,
        form_files: tuple[FormFile, ...] = (),
        headers: Mapping[str, str] | None = None,
        raw: bool = False,
        gate: asyncio.Semaphore | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """Send one request under the retry policy; return (JSON or bytes, headers).

        ``gate``, when given, is held around each attempt (not across the
        waits between attempts), to bound how many are in flight.
        """
        if options.extra_query:
            query = {**(query or {}), **options.extra_query}
        body = None if json_body is None else dumps(json_body)
        idempotent = method != "POST"

        async def attempt() -> tuple[Any, Mapping[str, str]]:
            key = await self._api_key()
            request_headers = self._headers(options, key, json_body=body is not None)
            if headers:
                request_headers.update(headers)
            request = Request(
                method,
                path,
                query or {},
                request_headers,
                body,
                form_fields,
                form_files,
            )
            if gate is None:
                response = await self._transport.send(request, options.timeout)
            else:
                async with gate:
                    response = await self._transport.send(request, options.timeout)
            if not 200 <= response.status < 300:
                error = status_error(response.status, response.headers, response.body)
                raise redact(error, key)
            if raw:
                return response.body, response.headers
            return decode_json(response.status, response.headers, response.body), response.headers

        try:
            return await call_with_retries(
                attempt,
                max_retries=options.max_retries,
                idempotent=idempotent,
                what=f"{method} {path}",
            )
        except errors.AsyncVideosError as error:
            error.idempotency_key = options.idempotency_key
            raise

    @asynccontextmanager
    async def _stream(
        self,
        path: str,
        options: CallOptions,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Open a GET whose body is streamed; opening (up to a 2xx) is retried."""
        if options.extra_query:
            query = {**(query or {}), **options.extra_query}
        # A stream's total time is unbounded by nature: the per-attempt limit
        # bounds each wait for bytes instead (a stall watch, cheaper than
        # aiohttp's per-read timer), so a slow but moving download is not cut.
        stall_limit = options.timeout.sock_read or options.timeout.total
        timeout = attrs.evolve(options.timeout, total=None, sock_read=None)

        async def attempt() -> StreamedResponse:
            key = await self._api_key()
            request_headers = self._headers(options, key, json_body=False)
            if headers:
                request_headers.update(headers)
            request = Request("GET", path, query or {}, request_headers)
            response = await self._transport.open(request, timeout, stall_limit)
            if not 200 <= response.status < 300:
                try:
                    body = await response.read()
                finally:
                    response.release()
                raise redact(status_error(response.status, response.headers, body), key)
            return response

        response = await call_with_retries(
            attempt, max_retries=options.max_retries, idempotent=True, what=f"GET {path}"
        )
        try:
            yield response
        finally:
            response.release()
