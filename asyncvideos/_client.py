"""The client's lifecycle and request machinery, shared by every endpoint.

``BaseClient`` resolves settings, prepares each request (the one place where
a header is set and a URL is built, and where the request is given the
credentials to mask in what comes back), runs it through the retry policy, and
turns the response into data or a typed error.
``AsyncVideos`` in ``_videos.py`` adds one thin method per endpoint on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypedDict, TypeVar

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import _errors as errors
from . import _validate as check
from ._budget import BudgetStore, SharedPacer, budget_name
from ._callbacks import call_back
from ._config import (
    NOT_GIVEN,
    USER_AGENT,
    ApiKey,
    AuthScheme,
    NotGiven,
    TimeoutSetting,
    resolve_settings,
)
from ._convert import decode
from ._cost import parse_budget
from ._http import MAX_ERROR_BODY, Response, StreamedResponse, Transport, shown_url
from ._masking import mask_secret, masker
from ._pacing import Pacer, check_max_rate
from ._protocol import (
    FormFile,
    Request,
    cap_message,
    dumps,
    query_string,
    request_id,
    request_url,
    status_error,
)
from ._retry import OnRetry, RetryDetails, call_with_retries
from ._telemetry import Telemetry, load_telemetry, status_class
from ._webhooks import WebhookReceiver, check_fallback_interval, check_receiver

if TYPE_CHECKING:
    from ._models import Video
    from .ledger._flow import Journal, OnCreated, Reconcile
    from .ledger._store import LedgerStore

logger = logging.getLogger("asyncvideos")
DEFAULT_MAX_CONNECTIONS = 100
#: How many of the keys an ``api_key`` callable returned are masked in what a
#: server sends (the newest first): a server may echo a key it was sent before.
KEYS_REMEMBERED = 4
#: Headers whose values are credentials, wherever the caller set them.
_CREDENTIAL_HEADERS = frozenset({"authorization", "api-key"})
T = TypeVar("T")
P = ParamSpec("P")
_Client = TypeVar("_Client", bound="BaseClient")
R = TypeVar("R", Response, StreamedResponse)
_JSON_ACCEPT = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
_JSON_PORTABLE: Mapping[str, str] = CIMultiDictProxy(
    CIMultiDict({"User-Agent": USER_AGENT, **_JSON_ACCEPT})
)
# Content is asked for unencoded, so that byte ranges mean the same on a resume,
# and as the media type of its variant (what a server that negotiates sends).
_VIDEO_ACCEPT = {
    "Accept": "video/*, application/octet-stream;q=0.9, */*;q=0.8",
    "Accept-Encoding": "identity",
}
_IMAGE_ACCEPT = {
    "Accept": "image/*, application/octet-stream;q=0.9, */*;q=0.8",
    "Accept-Encoding": "identity",
}


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


class PostOptions(RequestOptions, total=False):
    """``RequestOptions`` plus, for methods that POST, ``extra_body``: fields merged
    into the JSON body (or added as form fields), for what a gateway needs."""

    extra_body: Mapping[str, object] | None


_REQUEST_OPTIONS = frozenset(RequestOptions.__annotations__)
_POST_OPTIONS = frozenset(PostOptions.__annotations__)


@attrs.frozen(slots=True)
class CallOptions:
    """The per-call settings of one request, checked before any I/O."""

    timeout: aiohttp.ClientTimeout
    max_retries: int
    extra_headers: Mapping[str, str]
    extra_query: Mapping[str, str]
    idempotency_key: str | None = None
    extra_body: Mapping[str, object] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class RawResponse(Generic[T]):
    """A successful response with its metadata, from ``videos.with_raw_response``.

    ``parse()`` gives what the plain method returns; ``request_id`` is the id
    to quote to the provider's support; ``retries`` how many were taken.
    """

    status_code: int
    headers: Mapping[str, str]
    retries: int
    _parsed: T

    @property
    def request_id(self) -> str | None:
        return request_id(self.headers)

    def parse(self) -> T:
        return self._parsed


@attrs.define(slots=True)
class _Seen:
    """The last successful response of a call made through ``with_raw_response``."""

    status: int = 0
    headers: Mapping[str, str] = attrs.field(factory=dict)
    retries: int = 0

    def record(self, response: Response | StreamedResponse, retries: int) -> None:
        self.status, self.headers, self.retries = response.status, response.headers, retries


_raw_capture: ContextVar[_Seen | None] = ContextVar("asyncvideos_raw_capture", default=None)


def with_raw(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[RawResponse[T]]]:
    """``method`` returning a ``RawResponse`` of the last response it received."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> RawResponse[T]:
        seen = _Seen()
        token = _raw_capture.set(seen)
        try:
            parsed = await method(*args, **kwargs)
        finally:
            _raw_capture.reset(token)
        return RawResponse(seen.status, seen.headers, seen.retries, parsed)

    return call


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
        max_connections: int = 100,
        # The largest JSON body read into memory (after decompression): a page of
        # 100 jobs is about 60 KiB, so this leaves room for any real response.
        max_response_bytes: int = 32 * 1024 * 1024,
        on_retry: OnRetry | None = None,
        webhooks: WebhookReceiver | None = None,
        webhook_fallback_interval: float = 60.0,
        max_requests_per_second: float | None = None,
        pacing: bool = True,
        max_download_bytes: int | None = None,
        max_empty_pages: int = 100,
        ledger: LedgerStore | str | None = None,
        reconcile: Reconcile = "raise",
        on_created: OnCreated | None = None,
        clock_skew: float = 300.0,
    ) -> None:
        """Every argument is keyword-only; a bad one is a ValueError or TypeError
        naming it, at construction.

        Args:
            api_key: The key (default ``$OPENAI_API_KEY``): a str, or a callable,
                sync or async, returning one before each request.
            base_url: Any OpenAI-compatible endpoint (default ``$OPENAI_BASE_URL``,
                then ``$OPENAI_API_BASE``, then ``https://api.openai.com/v1``).
            organization: Sent as ``OpenAI-Organization`` (default ``$OPENAI_ORG_ID``).
            project: Sent as ``OpenAI-Project`` (default ``$OPENAI_PROJECT_ID``).
            timeout: Each attempt's limit: seconds, an ``aiohttp.ClientTimeout`` or
                None for none. ``NOT_GIVEN``: 600 s, 5 s of it to open a socket.
            max_retries: Retries of a failed request, 0 to 100.
            session: An ``aiohttp.ClientSession`` of yours: used, never closed.
            default_headers: Headers sent with every request.
            default_query: Query parameters sent with every request.
            auth_scheme: ``"bearer"`` (``Authorization: Bearer``) or ``"api-key"``
                (an ``api-key`` header, as Azure OpenAI wants).
            max_connections: The size of the client's one connection pool.
            max_response_bytes: The largest body read into memory, counted after
                decompression; past it, ``ResponseTooLargeError``.
            on_retry: Given a ``RetryDetails`` before each retry's wait.
            webhooks: A ``WebhookReceiver``: waits end on its verified events.
            webhook_fallback_interval: With ``webhooks``, seconds between the polls
                that catch an event that was lost.
            max_requests_per_second: A hard cap on the request rate.
            pacing: Space requests by the server's ``x-ratelimit-*`` headers and
                pause the whole client on a 429 (``False``: each task on its own).
        """
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
            max_response_bytes=max_response_bytes,
        )
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        check.integer(max_connections, "max_connections", low=1)
        # How many empty pages saying has_more a listing follows in a row (a
        # gateway may filter pages after paging); see _pagination.
        self._max_empty_pages = check.integer(max_empty_pages, "max_empty_pages", low=0)
        # A ceiling on streamed content (download, iter_content, open_content):
        # off by default, since a video's size has no natural bound.
        self._max_download_bytes = (
            None
            if max_download_bytes is None
            else check.integer(max_download_bytes, "max_download_bytes", low=1)
        )
        check.callback(on_retry, "on_retry")
        self._on_retry = on_retry
        # Waits finish on this receiver's events, polling only as a fallback.
        self._webhooks = check_receiver(webhooks)
        self._webhook_fallback = check_fallback_interval(webhook_fallback_interval)
        # One rate budget for every request and task of this client (see _pacing),
        # or of the fleet's when a shared store is given (_share_rate_budget).
        self._max_rate = check_max_rate(max_requests_per_second)
        self._adaptive = check.boolean(pacing, "pacing")
        self._pacer: Pacer | SharedPacer = Pacer(
            max_requests_per_second=self._max_rate, adaptive=self._adaptive
        )
        self._transport = Transport(
            session=session,
            max_connections=max_connections,
            max_response_bytes=self._settings.max_response_bytes,
        )
        self._identity_headers = self._build_identity_headers()
        # The headers of most requests, with the key they were made for (_plain_headers).
        self._plain: tuple[str, Mapping[str, str]] | None = None
        # The secrets masked in every response's text: the key (the last few a
        # callable returned) and any credential among the default headers.
        self._header_secrets = _credential_values(self._identity_headers)
        key = self._settings.api_key
        # A str key is read without a call; a callable is called per attempt.
        self._static_key = key if isinstance(key, str) else None
        self._keys: tuple[str, ...] = (key,) if isinstance(key, str) else ()
        self._masker = masker(self._keys + self._header_secrets)
        # What parsing one body may build (_cost.py): a multiple of its byte limit.
        self._budget = parse_budget(self._settings.max_response_bytes)
        self._telemetry = load_telemetry()
        self._telemetry_checked = 0.0
        server = URL(self._settings.base_url)
        # What each request's URL is built on (request_url), parsed once.
        self._base = URL(self._settings.base_url, encoded=True)
        self._server_attributes = {"server.address": server.host, "server.port": server.port}
        self._default_options = CallOptions(
            timeout=self._settings.timeout,
            max_retries=self._settings.max_retries,
            extra_headers={},
            extra_query=self._settings.default_query,
        )
        # The job ledger: None (and nothing of it imported) unless one is given.
        self._journal: Journal | None = None
        self._fleet: contextlib.AsyncExitStack | None = None
        if ledger is not None or reconcile != "raise" or on_created is not None:
            from .ledger._config import make_journal

            self._journal = make_journal(
                ledger,
                reconcile=reconcile,
                on_created=on_created,
                clock_skew=clock_skew,
                newest=self._newest,
            )
        elif clock_skew != 300.0:
            raise ValueError("clock_skew= needs a ledger: AsyncVideos(ledger=...)")

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self: _Client) -> _Client:
        if self._transport.closed:
            raise RuntimeError("This AsyncVideos client is closed; create a new one")
        if self._journal is not None:
            await self._ready_journal()  # a ledger that cannot be opened fails here
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool this client opened (a borrowed session is left
        open), and the ledger it opened from a URL (a ledger object is left open)."""
        try:
            if self._fleet is not None:
                fleet, self._fleet = self._fleet, None
                await fleet.aclose()
            if self._journal is not None:
                await self._journal.close()
        finally:
            await self._transport.close()

    async def _ready_journal(self) -> Journal:
        """The ledger, opened, with this client's webhook events recorded in it."""
        journal = self._journal
        if journal is None:
            raise ValueError("this needs a ledger: AsyncVideos(ledger=...)")
        if self._transport.closed:
            raise RuntimeError("This AsyncVideos client is closed; create a new one")
        store = await journal.ready()
        if self._webhooks is not None:
            journal.listen(self._webhooks)
        # A fleet's ledger (PostgreSQL) also shares the rate budget and the webhook
        # events between the processes on it; known by this hook, so that nothing
        # of it (no driver) is imported here.
        join = getattr(store, "_join_fleet", None)
        if join is not None and self._fleet is None:
            self._fleet = contextlib.AsyncExitStack()
            await join(self, self._fleet)
        return journal

    def _newest(self, since: datetime) -> AsyncIterator[Video]:
        """The server's jobs, newest first, down to about ``since`` (for the ledger)."""
        raise NotImplementedError

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

    def _share_rate_budget(self, store: BudgetStore, name: str | None = None) -> None:
        """Take request turns from the fleet's budget in ``store`` (see ``_budget``)
        instead of this client's own; a ledger on a shared database does this.

        ``name`` identifies the budget in the store; by default a hash of the base
        URL and the key (a callable key needs a name: it is not known yet).
        """
        if name is None:
            key = self._settings.api_key
            if not isinstance(key, str):
                raise TypeError("a shared rate budget for a callable api_key needs a name")
            name = budget_name(self.base_url, key)
        self._pacer = SharedPacer(
            store, name, max_requests_per_second=self._max_rate, adaptive=self._adaptive
        )

    # -- options -----------------------------------------------------------

    def _options(
        self,
        method: str,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | NotGiven | None = NOT_GIVEN,
        timeout_name: str = "timeout",
    ) -> CallOptions:
        """Check the per-call options of the public ``method``; the fast path
        reuses the client's defaults."""
        if not options and idempotency_key is NOT_GIVEN:
            return self._default_options
        allowed = _REQUEST_OPTIONS if idempotency_key is NOT_GIVEN else _POST_OPTIONS
        for name in options:
            if name not in allowed:
                raise TypeError(f"{method}() got an unexpected keyword argument {name!r}")
        defaults = self._default_options
        timeout = options.get("timeout", NOT_GIVEN)
        max_retries = options.get("max_retries", NOT_GIVEN)
        return CallOptions(
            timeout=(
                defaults.timeout if timeout is NOT_GIVEN else check.timeout(timeout, timeout_name)
            ),
            max_retries=(
                defaults.max_retries if max_retries is NOT_GIVEN else check.max_retries(max_retries)
            ),
            extra_headers=check.headers(options.get("extra_headers"), "extra_headers"),
            extra_query={
                **defaults.extra_query,
                **check.str_mapping(options.get("extra_query"), "extra_query"),
            },
            idempotency_key=_idempotency_key(idempotency_key),
            extra_body=_extra_body(options.get("extra_body")),
        )

    # -- preparing requests ------------------------------------------------

    def _build_identity_headers(self) -> dict[str, str]:
        settings = self._settings
        headers = {"User-Agent": USER_AGENT}
        if settings.organization:
            headers["OpenAI-Organization"] = settings.organization
        if settings.project:
            headers["OpenAI-Project"] = settings.project
        headers.update(settings.default_headers)
        return headers

    async def _api_key(self) -> str:
        """The key the ``api_key`` callable gives for this attempt (a str key is
        ``_static_key``, read without a call)."""
        key = self._settings.api_key
        assert not isinstance(key, str)  # a str key is _static_key
        value = await call_back(key)
        if not isinstance(value, str) or not value:
            raise TypeError("the api_key callable must return a non-empty str")
        keys = self._keys
        if not keys or value != keys[0]:
            self._keys = (value, *(k for k in keys if k != value))[:KEYS_REMEMBERED]
            self._masker = masker(self._keys + self._header_secrets)
        return value

    def _prepare(
        self,
        method: str,
        path: str,
        options: CallOptions,
        key: str,
        *,
        query: Mapping[str, str] | None = None,
        json_body: bytes | None = None,
        form_fields: Mapping[str, str] | None = None,
        form_files: tuple[FormFile, ...] = (),
        range_start: int = 0,
        if_range: str | None = None,
    ) -> Request:
        """The one request-preparation step: the URL with its query, and every header."""
        content = method == "GET" and path.endswith("/content")
        if options.extra_query:
            query = {**(query or {}), **options.extra_query}
        url = request_url(self._base, path, query_string(query) if query else "")
        if not (
            content
            or json_body is not None
            or form_fields is not None
            or options.idempotency_key is not None
            or options.extra_headers
        ):
            # No body and no header of its own (a GET or DELETE of JSON with the
            # client's options: most requests), so the same headers every time.
            return Request(method, url, self._plain_headers(key), _JSON_PORTABLE, self._masker)
        if not content:
            accept = _JSON_ACCEPT
        elif query and query.get("variant", "video") != "video":
            accept = _IMAGE_ACCEPT
        else:
            accept = _VIDEO_ACCEPT
        # Only these may follow a redirect to another origin (a signed CDN URL).
        portable = {"User-Agent": USER_AGENT, **accept}
        if range_start:
            portable["Range"] = f"bytes={range_start}-"
            if if_range is not None:
                portable["If-Range"] = if_range
        headers = self._headers(key, portable)
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        if options.idempotency_key is not None:
            headers["Idempotency-Key"] = options.idempotency_key
        secrets = self._masker
        if options.extra_headers:
            headers.update(options.extra_headers)
            extra = _credential_values(options.extra_headers)
            if extra:
                secrets = masker(secrets.secrets + extra)
        return Request(
            method,
            url,
            headers,
            portable,
            secrets,
            json_body,
            form_fields,
            form_files,
            cross_origin_redirects=content,
            content=content,
        )

    def _headers(self, key: str, portable: Mapping[str, str]) -> dict[str, str]:
        """The identity headers, then ``portable``, then the credential."""
        headers = {**self._identity_headers, **portable}
        if self._settings.auth_scheme == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers["api-key"] = key
        return headers

    def _plain_headers(self, key: str) -> Mapping[str, str]:
        """The headers of a JSON request that adds none of its own, made once per key
        (a callable's key may change) and handed to aiohttp as they are."""
        made = self._plain
        if made is None or made[0] != key:
            headers = CIMultiDictProxy(CIMultiDict(self._headers(key, _JSON_PORTABLE)))
            made = self._plain = (key, headers)
        return made[1]

    def _body(self, options: CallOptions, json_body: Mapping[str, Any] | None) -> bytes | None:
        if json_body is None:
            return None
        return dumps({**json_body, **options.extra_body} if options.extra_body else json_body)

    # -- sending -----------------------------------------------------------

    async def _fetch(
        self,
        method: str,
        path: str,
        options: CallOptions,
        model: type[T],
        operation: str,
        *,
        video_id: str | None = None,
        query: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        form_fields: Mapping[str, str] | None = None,
        form_files: tuple[FormFile, ...] = (),
        gate: asyncio.Semaphore | None = None,
    ) -> tuple[T, Mapping[str, str]]:
        """Send one request under the retry policy; return its body read as
        ``model``, and its headers.

        ``operation`` (the public method) names the call's span; ``gate``, when
        given, is held around each attempt, not across the waits between them.
        """
        body = self._body(options, json_body)
        if form_fields is not None and options.extra_body:
            form_fields = {**form_fields, **_form_values(options.extra_body)}
        call = _Call(method, path, operation, video_id, options)

        async def attempt() -> tuple[T, Response]:
            key = self._static_key or await self._api_key()
            request = self._prepare(
                method,
                path,
                options,
                key,
                query=query,
                json_body=body,
                form_fields=form_fields,
                form_files=form_files,
            )
            if gate is None:
                response = await self._send(request, options.timeout)
            else:
                async with gate:
                    response = await self._send(request, options.timeout)
            status, headers = response.status, response.headers
            data = decode(
                response.body, model, status_code=status, headers=headers, budget=self._budget
            )
            return data, response

        data, response = await self._retried(attempt, call)
        return data, response.headers

    async def _call(
        self,
        method: str,
        path: str,
        options: CallOptions,
        model: type[T],
        operation: str,
        **request: Any,
    ) -> T:
        """``_fetch`` without the headers."""
        data, _ = await self._fetch(method, path, options, model, operation, **request)
        return data

    async def _bytes(
        self,
        path: str,
        options: CallOptions,
        operation: str,
        *,
        video_id: str | None = None,
        query: Mapping[str, str] | None = None,
        check: Callable[[Response], None] | None = None,
    ) -> bytes:
        """A GET whose 2xx body is returned as bytes (within the size limit);
        ``check`` may refuse a 2xx response by raising."""
        call = _Call("GET", path, operation, video_id, options)

        async def attempt() -> tuple[bytes, Response]:
            key = self._static_key or await self._api_key()
            request = self._prepare("GET", path, options, key, query=query)
            response = await self._send(request, options.timeout)
            if not 200 <= response.status < 300:
                raise status_error(response.status, response.headers, response.body)
            if check is not None:
                check(response)
            return response.body, response

        body, _ = await self._retried(attempt, call)
        return body

    async def _send(self, request: Request, timeout: aiohttp.ClientTimeout) -> Response:
        """Send one attempt when the pacer gives it its turn (at once when nothing limits)."""
        if self._pacer.engaged:
            remaining = await self._await_turn(request, timeout.total)
            if remaining is not None:
                timeout = attrs.evolve(timeout, total=remaining)
        response = await self._transport.send(request, timeout)
        self._pacer.after_response(response.status, response.headers, response.body)
        return response

    async def _await_turn(self, request: Request, limit: float | None) -> float | None:
        """Wait for the pacer's turn within the attempt's ``limit`` (seconds, None: no
        limit); return what is left of it, for the request itself.

        The wait counts inside the caller's timeout: past it, ``APITimeoutError``
        with nothing sent, and not retried, since a new attempt would only queue
        again for a turn the pacer already knows is not due (see
        ``Pacer.before_request`` for why a timeout and not a ``RateLimitError``).
        """
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        turn = await self._pacer.before_request(deadline)
        if deadline is None:
            return None
        remaining = deadline - loop.time()
        if turn and remaining > 0:
            return remaining
        shown = shown_url(request.url)
        error = errors.APITimeoutError(
            f"{request.method} {shown}: not sent within the {limit:g} s timeout, waiting "
            "for this client's turn under the server's rate limit (its x-ratelimit-* "
            "headers or a 429 pause)",
            method=request.method,
            url=shown,
        )
        error.request_sent = False
        error.retry_can_help = False
        raise error

    async def _retried(
        self,
        attempt: Callable[[], Awaitable[tuple[T, R]]],
        call: _Call,
    ) -> tuple[T, R]:
        """Run ``attempt`` under the retry policy: in the call's span when tracing,
        logged at DEBUG, and captured for ``with_raw_response``; every error
        leaves with its message capped."""
        seen = _raw_capture.get()
        telemetry = self._live_telemetry()
        if telemetry is None and seen is None and not logger.isEnabledFor(logging.DEBUG):
            # Nothing to record: the first attempt runs bare, and the retry
            # policy is entered only once it has failed.
            try:
                return await attempt()
            except errors.AsyncVideosError as error:
                failed = error
            return await self._attempts(attempt, call, self._on_retry, failed)
        tally = _Tally(self._on_retry, telemetry)
        started = time.monotonic()
        outcome: Response | StreamedResponse | errors.AsyncVideosError | None = None
        span_context = (
            nullcontext(None)
            if telemetry is None
            else telemetry.span(f"videos.{call.operation}", self._span_attributes(call))
        )
        try:
            with span_context as span:
                try:
                    timed = tally.timed(attempt, call.method)
                    result, response = await self._attempts(timed, call, tally)
                    outcome = response
                except errors.AsyncVideosError as error:
                    outcome = error
                    raise
                finally:
                    if span is not None:
                        _annotate(span, outcome, tally.retries)
        finally:
            _log_request(call, outcome, tally.retries, time.monotonic() - started)
        if seen is not None:
            seen.record(response, tally.retries)
        return result, response

    @staticmethod
    async def _attempts(
        attempt: Callable[[], Awaitable[tuple[T, R]]],
        call: _Call,
        on_retry: OnRetry | None,
        failed: errors.AsyncVideosError | None = None,
    ) -> tuple[T, R]:
        try:
            return await call_with_retries(
                attempt,
                max_retries=call.options.max_retries,
                idempotent=call.method != "POST",
                method=call.method,
                path=call.path,
                on_retry=on_retry,
                failed=failed,
            )
        except errors.AsyncVideosError as error:
            error.idempotency_key = call.options.idempotency_key
            raise cap_message(error) from error.__cause__

    def _live_telemetry(self) -> Telemetry | None:
        """The telemetry, once the application has set a provider.

        Until then the check is repeated at most once a second per client: it
        costs more than the rest of a request's bookkeeping.
        """
        telemetry = self._telemetry
        if telemetry is None or telemetry.is_live:
            return telemetry
        now = time.monotonic()
        if now < self._telemetry_checked:
            return None
        self._telemetry_checked = now + 1.0
        return telemetry.live()

    def _span(self, operation: str, video_id: str | None = None) -> AbstractContextManager[Any]:
        """A span around a call made of several requests (None when not tracing)."""
        telemetry = self._live_telemetry()
        if telemetry is None:
            return nullcontext(None)
        attributes = {} if video_id is None else {"asyncvideos.video.id": video_id}
        return telemetry.span(f"videos.{operation}", attributes)

    def _span_attributes(self, call: _Call) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "http.request.method": call.method,
            **self._server_attributes,
        }
        if call.video_id is not None:
            attributes["asyncvideos.video.id"] = call.video_id
        return attributes

    @asynccontextmanager
    async def _stream(
        self,
        path: str,
        options: CallOptions,
        *,
        video_id: str | None = None,
        query: Mapping[str, str] | None = None,
        range_start: int = 0,
        if_range: str | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Open a GET whose body is streamed; opening (up to a 2xx) is retried.

        ``range_start`` asks for the body from that byte on, ``if_range`` only
        if the content is still the version that validator names.
        """
        # A stream's total time is unbounded by nature: the per-attempt limit
        # bounds each wait for bytes instead (a stall watch, cheaper than
        # aiohttp's per-read timer), so a slow but moving download is not cut.
        stall_limit = options.timeout.sock_read or options.timeout.total
        timeout = attrs.evolve(options.timeout, total=None, sock_read=None)
        call = _Call("GET", path, "open_content", video_id, options)

        async def attempt() -> tuple[StreamedResponse, StreamedResponse]:
            key = self._static_key or await self._api_key()
            request = self._prepare(
                "GET", path, options, key, query=query, range_start=range_start, if_range=if_range
            )
            if self._pacer.engaged:
                # As for the first bytes: the stall limit bounds the wait for a turn.
                await self._await_turn(request, stall_limit)
            response = await self._transport.open(request, timeout, stall_limit)
            if not 200 <= response.status < 300:
                try:
                    body = await response.read(MAX_ERROR_BODY)
                finally:
                    response.release()
                self._pacer.after_response(response.status, response.headers, body)
                raise status_error(response.status, response.headers, body)
            self._pacer.after_response(response.status, response.headers)
            return response, response

        response, _ = await self._retried(attempt, call)
        try:
            yield response
        except errors.AsyncVideosError as error:
            raise cap_message(error) from error.__cause__
        finally:
            response.release()


def _credential_values(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The secrets of the credential headers among ``headers``: the token after a
    scheme (``Bearer``, ``Basic``), or the whole value."""
    found = []
    for name, value in headers.items():
        if name.lower() in _CREDENTIAL_HEADERS:
            secret = value.strip().partition(" ")[2].strip() or value.strip()
            if secret:
                found.append(secret)
    return tuple(found)


def _idempotency_key(value: str | NotGiven | None) -> str | None:
    if value is NOT_GIVEN:
        return None
    if value is None:
        return uuid.uuid4().hex
    if not isinstance(value, str):
        raise TypeError(f"idempotency_key must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError("idempotency_key must be a non-empty str")
    return value


def _extra_body(value: object) -> dict[str, object]:
    """Fields for the body: a str-keyed mapping whose values JSON can carry."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"extra_body must be a mapping, got {type(value).__name__}")
    result = dict(value)
    for name in result:
        if not isinstance(name, str) or not name:
            raise TypeError(f"extra_body keys must be non-empty str, got {name!r}")
    try:
        dumps(result)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"extra_body must hold JSON values only: {exc}") from None
    return result


def _form_values(extra: Mapping[str, object]) -> dict[str, str]:
    """``extra_body`` as multipart fields: scalars as text, anything nested as JSON."""
    fields = {}
    for name, value in extra.items():
        if isinstance(value, str):
            fields[name] = value
        elif isinstance(value, bool):
            fields[name] = "true" if value else "false"
        elif isinstance(value, (int, float)) or value is None:
            fields[name] = "" if value is None else str(value)
        else:
            fields[name] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return fields


@attrs.define(slots=True)
class _Call:
    """One request: what it is (for its span and log line), and its options."""

    method: str
    path: str
    operation: str
    video_id: str | None
    options: CallOptions


@attrs.define(slots=True)
class _Tally:
    """Counts a call's retries for its span, log line and metrics, and passes each on."""

    on_retry: OnRetry | None
    telemetry: Telemetry | None
    retries: int = 0

    def __call__(self, details: RetryDetails) -> None:
        self.retries = details.retry
        if self.telemetry is not None:
            reason = type(details.error).__name__
            self.telemetry.retries.add(1, {"asyncvideos.retry.reason": reason})
        if self.on_retry is not None:
            self.on_retry(details)

    def timed(
        self, attempt: Callable[[], Awaitable[tuple[T, R]]], method: str
    ) -> Callable[[], Awaitable[tuple[T, R]]]:
        """``attempt``, each run recorded in the request-duration histogram."""
        telemetry = self.telemetry
        if telemetry is None:
            return attempt

        async def timed_attempt() -> tuple[T, R]:
            started = time.monotonic()
            status: int | None = None
            try:
                result = await attempt()
                status = result[1].status
                return result
            except errors.AsyncVideosError as error:
                status = getattr(error, "status_code", None)
                raise
            finally:
                labels = {
                    "http.request.method": method,
                    "asyncvideos.status_class": status_class(status),
                }
                telemetry.request_duration.record(time.monotonic() - started, labels)

        return timed_attempt


def _annotate(span: Any, outcome: object, retries: int) -> None:
    span.set_attribute("asyncvideos.retries", retries)
    if isinstance(outcome, (Response, StreamedResponse)):
        status, headers = outcome.status, outcome.headers
    elif isinstance(outcome, errors.APIStatusError):
        status, headers = outcome.status_code, outcome.headers
    else:
        return
    span.set_attribute("http.response.status_code", status)
    found = request_id(headers)
    if found:
        span.set_attribute("asyncvideos.request_id", found)


def _log_request(call: _Call, outcome: object, retries: int, elapsed: float) -> None:
    """One DEBUG line per request (after its retries), with structured ``extra`` fields."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    status: int | None = None
    found: str | None = None
    if isinstance(outcome, (Response, StreamedResponse)):
        status, found = outcome.status, request_id(outcome.headers)
    elif isinstance(outcome, errors.APIStatusError):
        status, found = outcome.status_code, outcome.request_id
    logger.debug(
        "%s %s -> %s in %.3f s (%d retries, request id %s)",
        call.method,
        call.path,
        status if status is not None else type(outcome).__name__,
        elapsed,
        retries,
        found,
        extra={
            "method": call.method,
            "path": call.path,
            "status": status,
            "request_id": found,
            "retries": retries,
            "elapsed": elapsed,
        },
    )
