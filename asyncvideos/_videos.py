"""``AsyncVideos``: one thin method per endpoint of the Videos API.

Each method checks its arguments (before any I/O), describes the request, and
reads the answer into a model; the machinery is in ``_client.py``, the loops
in ``_pagination.py``, ``_waiting.py`` and ``_download.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    MutableSequence,
)
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, TypeVar

import attrs

from . import _validate as check
from ._client import (
    BaseClient,
    CallOptions,
    PostOptions,
    RawResponse,
    RequestOptions,
    _form_values,
    with_raw,
)
from ._config import NOT_GIVEN, NotGiven, TimeoutSetting
from ._download import (
    ContentStream,
    Digest,
    OpenBody,
    ProgressCallback,
    check_whole_body,
    target_path,
    write_atomically,
)
from ._errors import APIResponseValidationError
from ._http import Response, StreamedResponse
from ._models import (
    DEFAULT_WAITING_STATUSES,
    Character,
    DeletedVideo,
    Video,
    VideoPage,
)
from ._pagination import FetchPage, first_jobs, iterate_items, iterate_pages
from ._protocol import FormFile, poll_after, resource_path
from ._uploads import FileInput, check_file_input, creation_fields, read_file
from ._waiting import Fetch, Job, Observe, OnProgress, WaitResult, wait_for, wait_many

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .ledger._flow import Send
    from .ledger._request import PaidRequest
    from .ledger._resume import Write
    from .ledger._store import LedgerStore

logger = logging.getLogger("asyncvideos")
T = TypeVar("T")
_Raw: TypeAlias = Callable[..., Awaitable[RawResponse[T]]]
Order: TypeAlias = Literal["asc", "desc"]
"""Listing order by creation time: ``"asc"`` (oldest first, the default) or ``"desc"``."""
Variant: TypeAlias = Literal["video", "thumbnail", "spritesheet"]
"""Which asset of a job the content methods fetch: the MP4 ``"video"`` (the
default), a WebP ``"thumbnail"`` or a JPEG ``"spritesheet"``."""
VideoRef: TypeAlias = str | Video
"""A job, named by its id or given as the ``Video`` a call returned (its ``id``
is used; ``wait`` also starts from its known state)."""
DEFAULT_PAGE_SIZE = 20
DEFAULT_ALL_PAGE_SIZE = 100


class WaitOptions(TypedDict, total=False):
    """The options ``wait``, ``create_and_wait`` and ``wait_many`` share.

    ``wait_timeout``: seconds for the whole wait (None, the default: no
    limit). ``poll_interval``: seconds between polls when the server sends no
    hint (default 1 s), and the floor under a hint shorter than 0.1 s.
    ``on_progress(video)``: called (sync or async) when a
    job's status or progress changes. ``waiting_statuses``: the statuses that
    mean "not done yet". ``request_timeout``, ``max_retries``,
    ``extra_headers``, ``extra_query``: as for any request, applied to each
    poll (``request_timeout`` is what ``timeout`` is on every other method).

    ``timeout`` is the old name of ``wait_timeout`` here, kept for existing
    callers with a ``DeprecationWarning``: on every other method ``timeout``
    bounds one request, so on a wait it read as the per-poll limit.
    """

    wait_timeout: float | None
    timeout: float | None
    poll_interval: float | None
    on_progress: OnProgress | None
    waiting_statuses: Iterable[str]
    request_timeout: TimeoutSetting
    max_retries: int
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, str] | None


_WAIT_OPTIONS = frozenset(WaitOptions.__annotations__)
#: The wait options that are per-request options under another name.
_AS_REQUEST_OPTIONS = {
    "request_timeout": "timeout",
    "max_retries": "max_retries",
    "extra_headers": "extra_headers",
    "extra_query": "extra_query",
}


@attrs.frozen(slots=True)
class _WaitPlan:
    """The checked arguments shared by ``wait``, ``create_and_wait`` and ``wait_many``."""

    waiting: frozenset[str]
    timeout: float | None
    poll_interval: float | None
    on_progress: OnProgress | None
    options: CallOptions


class AsyncVideos(BaseClient):
    """Asyncio client for the Videos API (OpenAI, or any compatible ``base_url``).

    Use it as ``async with AsyncVideos() as videos:`` (or call ``close()``).
    Every request method takes, for that call alone, ``timeout`` (seconds, an
    ``aiohttp.ClientTimeout`` or None), ``max_retries``, ``extra_headers`` and
    ``extra_query``; POST methods also take ``idempotency_key`` and
    ``extra_body``. ``videos.with_raw_response.<method>(...)`` returns the
    response's status, headers and request id along with the parsed result.
    """

    _one_page_hinted = False  # list()'s "there are more pages" hint, given once per client
    _over_limit_hinted = False  # "the server sent more than limit", once per client

    @property
    def with_raw_response(self) -> VideosWithRawResponse:
        """The request methods, each returning a ``RawResponse`` (``parse()`` gives
        the model, with ``status_code``, ``headers``, ``request_id``, ``retries``)."""
        return VideosWithRawResponse(self)

    # -- reading jobs ------------------------------------------------------

    async def retrieve(
        self,
        video: VideoRef,
        **options: Unpack[RequestOptions],
    ) -> Video:
        """``GET /videos/{id}``: the job's current state."""
        return await self._on_job("GET", "retrieve", video, options, Video)

    def list(
        self,
        *,
        limit: int | NotGiven = NOT_GIVEN,
        order: Order = "asc",
        after: str | None = None,
        all: bool = False,
        prefetch: int = 0,
        **options: Unpack[RequestOptions],
    ) -> AsyncGenerator[Video, None]:
        """Jobs, oldest first by default: **one page** (20 jobs unless ``limit``
        says otherwise), or with ``all=True`` every job, page after page.

        Unlike openai-python's ``list()``, ``async for v in videos.list()``
        does not page through everything: pass ``all=True`` for that. When a
        ``list()`` without ``limit`` ends on a page that says ``has_more``, a
        one-time hint is logged (WARNING, on the ``asyncvideos`` logger).

        Nothing is fetched until the first job is asked for; with ``all=True``
        the next page is fetched only when the current one is used up (pages
        of 100 unless ``limit`` says otherwise). A failure raises with
        ``error.resume_after``: pass it back as ``after=`` to continue.
        ``prefetch=1`` (with ``all=True``) requests the next page while the
        current one is consumed: worth it when the loop body awaits or works.
        """
        check.boolean(all, "all")
        if check.integer(prefetch, "prefetch", low=0, high=1) and not all:
            raise ValueError("prefetch=1 needs all=True: a single page has no next page")
        default = DEFAULT_ALL_PAGE_SIZE if all else DEFAULT_PAGE_SIZE
        fetch = self._page_fetcher(
            default if limit is NOT_GIVEN else limit, order, after, self._options("list", options)
        )
        if all:
            return iterate_items(
                fetch, after=after, prefetch=prefetch, max_empty_pages=self._max_empty_pages
            )
        return _one_page(fetch, after, self._hint_one_page if limit is NOT_GIVEN else None)

    def _hint_one_page(self, listed: int) -> None:
        """Once per client: a bare ``list()`` stopped at a page that has more after it."""
        if self._one_page_hinted:
            return
        self._one_page_hinted = True
        logger.warning(
            "list() gave one page (%d jobs) and the server has more: pass all=True to "
            "walk every page, or limit= to ask for one page on purpose "
            "(this hint is logged once per client)",
            listed,
        )

    def _hint_over_limit(self, most: int, sent: int) -> None:
        """Once per client: a server sent more jobs than the page's ``limit``."""
        if self._over_limit_hinted:
            return
        self._over_limit_hinted = True
        logger.warning(
            "Asked for at most %d jobs a page; the server sent %d: the page holds the "
            "first %d and the listing goes on after them (the server, or a gateway in "
            "front of it, ignores limit; this is logged once per client)",
            most,
            sent,
            most,
        )

    async def list_page(
        self,
        *,
        limit: int = 20,
        order: Order = "asc",
        after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> VideoPage:
        """``GET /videos``: one page, with its cursors."""
        fetch = self._page_fetcher(limit, order, after, self._options("list_page", options))
        return await fetch(after)

    def pages(
        self,
        *,
        limit: int | NotGiven = NOT_GIVEN,
        order: Order = "asc",
        after: str | None = None,
        prefetch: int = 0,
        **options: Unpack[RequestOptions],
    ) -> AsyncGenerator[VideoPage, None]:
        """Every page, lazily, as ``list(all=True)`` walks them: for checkpointing
        ``page.last_id`` between pages. ``prefetch=1`` requests the next page
        while the current one is used."""
        check.integer(prefetch, "prefetch", low=0, high=1)
        fetch = self._page_fetcher(
            DEFAULT_ALL_PAGE_SIZE if limit is NOT_GIVEN else limit,
            order,
            after,
            self._options("pages", options),
        )
        return iterate_pages(
            fetch, after=after, prefetch=prefetch, max_empty_pages=self._max_empty_pages
        )

    def _page_fetcher(
        self, limit: object, order: object, after: object, options: CallOptions
    ) -> FetchPage:
        base_query = {
            "limit": str(check.limit(limit)),
            "order": check.choice(order, "order", check.ORDERS),
        }
        check.optional_id(after, "after")
        # The limit sent: the caller's extra_query may override it.
        sent = options.extra_query.get("limit", base_query["limit"])
        most = int(sent) if sent.isascii() and sent.isdigit() and int(sent) > 0 else None

        async def fetch(cursor: str | None) -> VideoPage:
            query = base_query if cursor is None else {**base_query, "after": cursor}
            page, _ = await self._fetch(
                "GET", "/videos", options, VideoPage, "list_page", query=query
            )
            if most is not None and len(page.data) > most:
                self._hint_over_limit(most, len(page.data))
                page = first_jobs(page, most)
            return page

        return fetch

    # -- creating jobs -----------------------------------------------------

    async def create(
        self,
        prompt: str,
        *,
        model: str | None = None,
        seconds: int | str | None = None,
        size: str | None = None,
        input_reference: FileInput | Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[PostOptions],
    ) -> Video:
        """``POST /videos``: start a (paid) generation job. Only the arguments given are sent.

        ``seconds`` is 4, 8 or 12 (an int, or a str of digits): another length
        is a ``ValueError`` before any request, since the API refuses it (a
        gateway that allows others takes ``extra_body={"seconds": "10"}``). The
        job's ``Video.seconds`` comes back as the API's string, ``"8"``.
        ``input_reference`` is a file (path, bytes or binary file object), sent
        as multipart/form-data, or ``{"image_url": ...}`` / ``{"file_id": ...}``,
        sent as JSON. Retries reuse one ``Idempotency-Key``, so a retry never
        creates a second job.
        """
        fields, upload = creation_fields(prompt, model, seconds, size, input_reference)
        call = self._options("create", options, idempotency_key=idempotency_key)
        return await self._send_create(fields, upload, call)

    async def _send_create(
        self, fields: dict[str, Any], upload: object, call: CallOptions
    ) -> Video:
        if upload is not None:
            part = await read_file(upload, "input_reference", part="input_reference")
            return await self._paid(
                "create", "/videos", call, fields, part=part, file_path=_path_of(upload)
            )
        return await self._paid("create", "/videos", call, fields)

    async def _paid(
        self,
        operation: Literal["create", "remix", "edit", "extend"],
        path: str,
        call: CallOptions,
        fields: dict[str, Any],
        *,
        part: FormFile | None = None,
        file_path: str | None = None,
        video_id: str | None = None,
    ) -> Video:
        """Send a paid POST: as it is, or through the job ledger when there is one."""
        if self._journal is None:
            if part is None:
                return await self._post_job(
                    path, call, operation, video_id=video_id, json_body=fields
                )
            return await self._post_job(
                path, call, operation, form_fields=fields, form_files=(part,)
            )
        from .ledger._request import PaidRequest

        journal = await self._ready_journal()
        extra = call.extra_body
        if part is None:
            request = PaidRequest(
                operation, path, json={**fields, **extra}, source_video_id=video_id
            )
        else:
            form = {**fields, **_form_values(extra)} if extra else fields
            request = PaidRequest(
                operation, path, form=form, file=part, file_path=file_path, source_video_id=video_id
            )
        key = call.idempotency_key
        assert key is not None  # every POST's options carry one
        return await journal.create(request, key, self._sender(call), self._retriever(call))

    async def _post_job(
        self, path: str, options: CallOptions, operation: str, **request: Any
    ) -> Video:
        """POST a (paid) job and read the new job, whose id must be usable in a path:
        else an ``APIResponseValidationError`` that carries what the server returned
        and the ``idempotency_key``, to reconcile the job with, before any other request."""
        video = await self._call("POST", path, options, Video, operation, **request)
        try:
            check.server_id(video)
        except APIResponseValidationError as error:
            error.idempotency_key = options.idempotency_key
            raise
        return video

    def _sender(self, call: CallOptions) -> Send:
        """How the ledger sends a paid request: with ``call``'s options and its key."""
        # extra_body is merged into the request already.
        plain = call if not call.extra_body else attrs.evolve(call, extra_body={})

        async def send(request: PaidRequest, key: str) -> Video:
            options = plain
            if key != plain.idempotency_key:  # a resend from resume(): the entry's key
                options = attrs.evolve(plain, idempotency_key=key)
            files = () if request.file is None else (request.file,)
            if request.file is None:
                return await self._post_job(
                    request.path,
                    options,
                    request.operation,
                    video_id=request.source_video_id,
                    json_body=request.json,
                )
            return await self._post_job(
                request.path,
                options,
                request.operation,
                form_fields=request.form,
                form_files=files,
            )

        return send

    def _retriever(self, call: CallOptions) -> Callable[[str], Awaitable[Video]]:
        """How the ledger reads a job: with ``call``'s options, no key, no body."""

        async def retrieve(video_id: str) -> Video:
            plain = attrs.evolve(call, idempotency_key=None, extra_body={})  # rarely needed
            path = check.video_path(video_id)
            return await self._call("GET", path, plain, Video, "retrieve", video_id=video_id)

        return retrieve

    def _newest(self, since: datetime) -> AsyncGenerator[Video, None]:
        return _newest(self.list(all=True, order="desc"), since)

    @property
    def ledger(self) -> LedgerStore | None:
        """The job ledger given to the constructor (opened from its URL), or None:
        ``videos.ledger.entries(state=...)``, ``get(key)``, ``resolve(key, video_id=...)``."""
        return None if self._journal is None else self._journal.store

    async def remix(
        self,
        video: VideoRef,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[PostOptions],
    ) -> Video:
        """``POST /videos/{id}/remix``: a new job from a completed one and a new prompt."""
        video_id = check.video_id(video)
        path = check.video_path(video_id, suffix="/remix")
        body = {"prompt": check.prompt(prompt)}
        call = self._options("remix", options, idempotency_key=idempotency_key)
        return await self._paid("remix", path, call, body, video_id=video_id)

    async def edit(
        self,
        video: VideoRef | FileInput,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[PostOptions],
    ) -> Video:
        """``POST /videos/edits``: edit a job (id or ``Video``) or an uploaded video
        file (a ``pathlib.Path``, bytes or binary file object; a str is an id)."""
        fields = {"prompt": check.prompt(prompt)}
        call = self._options("edit", options, idempotency_key=idempotency_key)
        return await self._post_with_source("/videos/edits", video, fields, call, "edit")

    async def extend(
        self,
        video: VideoRef | FileInput,
        prompt: str,
        seconds: int | str,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[PostOptions],
    ) -> Video:
        """``POST /videos/extensions``: continue a job (or an uploaded video) by ``seconds``:
        4, 8, 12, 16 or 20 (another length is a ``ValueError`` before any request)."""
        fields = {
            "prompt": check.prompt(prompt),
            "seconds": check.seconds(seconds),
        }
        call = self._options("extend", options, idempotency_key=idempotency_key)
        return await self._post_with_source("/videos/extensions", video, fields, call, "extend")

    async def _post_with_source(
        self,
        path: str,
        video: object,
        fields: dict[str, Any],
        options: CallOptions,
        operation: Literal["edit", "extend"],
    ) -> Video:
        if isinstance(video, (str, Video)):
            video_id = check.checked_video_id(video)
            body = {"video": {"id": video_id}, **fields}
            return await self._paid(operation, path, options, body, video_id=video_id)
        check_file_input(video, "video", paths_as_str=False)
        part = await read_file(video, "video", part="video")
        return await self._paid(
            operation, path, options, fields, part=part, file_path=_path_of(video)
        )

    # -- characters --------------------------------------------------------

    async def create_character(
        self,
        name: str,
        video: FileInput,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[PostOptions],
    ) -> Character:
        """``POST /videos/characters``: a reusable character from a video file."""
        fields = {"name": check.text(name, "name", max_length=80)}
        check_file_input(video, "video")
        call = self._options("create_character", options, idempotency_key=idempotency_key)
        part = await read_file(video, "video", part="video")
        return await self._call(
            "POST",
            "/videos/characters",
            call,
            Character,
            "create_character",
            form_fields=fields,
            form_files=(part,),
        )

    async def retrieve_character(
        self,
        character_id: str,
        **options: Unpack[RequestOptions],
    ) -> Character:
        """``GET /videos/characters/{id}``."""
        path = resource_path("videos/characters", character_id, "character_id")
        call = self._options("retrieve_character", options)
        return await self._call("GET", path, call, Character, "retrieve_character")

    # -- deleting ----------------------------------------------------------

    async def delete(
        self,
        video: VideoRef,
        **options: Unpack[RequestOptions],
    ) -> DeletedVideo:
        """``DELETE /videos/{id}``: remove a job and its stored assets."""
        return await self._on_job("DELETE", "delete", video, options, DeletedVideo)

    async def _on_job(
        self, method: str, operation: str, video: object, options: Mapping[str, Any], model: type[T]
    ) -> T:
        """A request to ``/videos/{id}`` for the public method ``operation``."""
        video_id = check.video_id(video)
        call = self._options(operation, options)
        path = check.video_path(video_id)
        data, _ = await self._fetch(method, path, call, model, operation, video_id=video_id)
        return data

    # -- content -----------------------------------------------------------

    @staticmethod
    def _content_request(video: object, variant: object) -> tuple[str, dict[str, str]]:
        path = check.video_path(video, suffix="/content")
        if variant is NOT_GIVEN:
            return path, {}
        return path, {"variant": check.choice(variant, "variant", check.VARIANTS)}

    async def download_content(
        self,
        video: VideoRef,
        *,
        variant: Variant | NotGiven = NOT_GIVEN,
        **options: Unpack[RequestOptions],
    ) -> bytes:
        """``GET /videos/{id}/content``, whole in memory: for thumbnails and other
        small assets. Use ``download()`` or ``iter_content()`` for videos.
        A body of the wrong media type for the variant, or a part of the body
        (a 206) where the whole was asked for, raises ``ContentMismatchError``."""
        call = self._options("download_content", options)
        path, query = self._content_request(video, variant)
        variant_asked = query.get("variant")

        def check_body(response: Response) -> None:
            check_whole_body(variant_asked, response.status, response.headers, len(response.body))

        return await self._bytes(
            path,
            call,
            "download_content",
            video_id=check.video_id(video),
            query=query,
            check=check_body,
        )

    def iter_content(
        self,
        video: VideoRef,
        *,
        variant: Variant | NotGiven = NOT_GIVEN,
        chunk_size: int = 256 * 1024,
        **options: Unpack[RequestOptions],
    ) -> AsyncGenerator[bytes, None]:
        """The content body as chunks of at most ``chunk_size`` bytes, never whole
        in memory. A dropped connection is resumed with ``Range`` where the server
        allows it (up to ``max_retries`` times), else raised; a resume answered
        with other bytes or a changed content raises ``ContentMismatchError``."""
        stream = self._content_stream(
            "iter_content", video, variant, chunk_size, options, may_restart=False
        )
        return self._iter_chunks(stream)

    @staticmethod
    async def _iter_chunks(stream: ContentStream) -> AsyncGenerator[bytes, None]:
        async with stream:
            async for _, chunk, _ in stream.pieces():
                yield chunk

    def open_content(
        self,
        video: VideoRef,
        *,
        variant: Variant | NotGiven = NOT_GIVEN,
        chunk_size: int = 256 * 1024,
        **options: Unpack[RequestOptions],
    ) -> AbstractAsyncContextManager[ContentStream]:
        """The content body, opened: ``async with videos.open_content(id) as body:``
        gives ``body.content_length`` (the whole size, or None when the server
        did not say) and ``body.content_type`` before any byte is read, then
        ``async for chunk in body`` yields the chunks, resumed as by
        ``iter_content()``. For a service that passes the content on with its
        headers. The connection is given back when the block exits."""
        return self._content_stream(
            "open_content", video, variant, chunk_size, options, may_restart=False
        )

    def _content_stream(
        self,
        method: str,
        video: object,
        variant: object,
        chunk_size: object,
        options: RequestOptions | CallOptions,
        *,
        may_restart: bool,
    ) -> ContentStream:
        call = options if isinstance(options, CallOptions) else self._options(method, options)
        path, query = self._content_request(video, variant)
        return ContentStream(
            self._body_opener(path, query, call, check.video_id(video)),
            variant=query.get("variant"),
            chunk_size=check.integer(chunk_size, "chunk_size", low=1),
            max_resumes=call.max_retries,
            may_restart=may_restart,
            max_bytes=self._max_download_bytes,
        )

    async def download(
        self,
        video: VideoRef,
        path: str | os.PathLike[str],
        *,
        variant: Variant | NotGiven = NOT_GIVEN,
        overwrite: bool = False,
        on_progress: ProgressCallback | None = None,
        chunk_size: int = 256 * 1024,
        **options: Unpack[RequestOptions],
    ) -> Path:
        """Stream the content to ``path``: whole and checked, or not there at all.

        Missing folders are created; the body goes to a temporary file beside
        ``path`` that is renamed into place only when complete (and removed on
        failure or cancellation). A dropped connection resumes with ``Range``
        (and ``If-Range``, so both parts are one version of the content) when
        the server accepts ranges, else starts over, up to ``max_retries``
        times; a resume answered with other bytes starts over too. A body of
        another size than announced, or of the wrong media type for the
        variant, raises ``ContentMismatchError``.
        ``on_progress(done_bytes, total_bytes_or_None)`` may be sync or async.
        An existing file raises ``FileExistsError`` unless ``overwrite``; only
        a regular file is replaced (keeping its permissions), anything else at
        ``path`` (a directory, FIFO, device) is a ``ValueError``.
        """
        call = self._options("download", options)
        check.callback(on_progress, "on_progress")
        if self._journal is None:
            stream = self._content_stream(
                "download", video, variant, chunk_size, call, may_restart=True
            )
            target = target_path(path, overwrite)
            return await self._write(video, stream, target, overwrite, on_progress)
        # Through the ledger: a recorded, whole file is not fetched again.
        return await self._ledgered_download(
            video, path, variant, overwrite, on_progress, chunk_size, call
        )

    async def _write(
        self,
        video: object,
        stream: ContentStream,
        target: Path,
        overwrite: bool,
        on_progress: ProgressCallback | None,
        digest: Digest | None = None,
    ) -> Path:
        with self._span("download", check.video_id(video)) as span:
            try:
                async with stream:
                    return await write_atomically(
                        stream.pieces(),
                        target,
                        on_progress=on_progress,
                        overwrite=overwrite,
                        digest=digest,
                    )
            finally:
                if span is not None:
                    span.set_attribute("asyncvideos.download.bytes", stream.received)
                    span.set_attribute("asyncvideos.download.resumes", stream.resumes)

    async def _ledgered_download(
        self,
        video: VideoRef,
        path: str | os.PathLike[str],
        variant: object,
        overwrite: bool,
        on_progress: ProgressCallback | None,
        chunk_size: object,
        call: CallOptions,
    ) -> Path:
        from .ledger._resume import absolute
        from .ledger._resume import download as download_through

        video_id = check.checked_video_id(video)
        _, query = self._content_request(video_id, variant)
        check.integer(chunk_size, "chunk_size", low=1)
        given = target_path(path, True)  # checks the argument; existence is decided below
        journal = await self._ready_journal()
        entry = await journal.store.find(video_id)
        ours = entry is not None and entry.target == absolute(given)
        target = target_path(path, overwrite or ours)
        stream = self._content_stream(
            "download", video, variant, chunk_size, call, may_restart=True
        )
        if entry is None:
            return await self._write(video, stream, target, overwrite, on_progress)
        write = self._writer(chunk_size, call, on_progress)
        return await download_through(
            journal, entry, target, query.get("variant", "video"), overwrite, write
        )

    def _writer(
        self, chunk_size: object, call: CallOptions, on_progress: ProgressCallback | None
    ) -> Write:
        """How the ledger writes a job's content to a file, hashing it as it goes."""

        async def write(
            video_id: str, variant: str, target: Path, overwrite: bool, digest: Digest
        ) -> Path:
            chosen: Variant | NotGiven = NOT_GIVEN if variant == "video" else variant  # type: ignore[assignment]
            stream = self._content_stream(
                "download", video_id, chosen, chunk_size, call, may_restart=True
            )
            return await self._write(video_id, stream, target, overwrite, on_progress, digest)

        return write

    def _body_opener(
        self, path: str, query: dict[str, str], options: CallOptions, video_id: str
    ) -> OpenBody:
        def open_body(
            offset: int, if_range: str | None
        ) -> AbstractAsyncContextManager[StreamedResponse]:
            return self._stream(
                path,
                options,
                video_id=video_id,
                query=query,
                range_start=offset,
                if_range=if_range,
            )

        return open_body

    # -- waiting -----------------------------------------------------------

    def _poll_fetcher(
        self, video_id: str, options: CallOptions, gate: asyncio.Semaphore | None = None
    ) -> Fetch:
        path = check.video_path(video_id)

        async def fetch() -> tuple[Video, float | None]:
            video, headers = await self._fetch(
                "GET", path, options, Video, "retrieve", video_id=video_id, gate=gate
            )
            return video, poll_after(headers)

        return fetch

    def _wait_plan(self, method: str, given: Mapping[str, Any]) -> _WaitPlan:
        """Check the wait options of the public ``method`` before any request."""
        for name in given:
            if name not in _WAIT_OPTIONS:
                raise TypeError(f"{method}() got an unexpected keyword argument {name!r}")
        request = {
            option: given[name]
            for name, option in _AS_REQUEST_OPTIONS.items()
            if name in given and not (given[name] is None and name.startswith("extra_"))
        }
        return _WaitPlan(
            waiting=check.statuses(given.get("waiting_statuses", DEFAULT_WAITING_STATUSES)),
            timeout=_wait_timeout(method, given),
            poll_interval=check.optional_seconds(given.get("poll_interval"), "poll_interval"),
            on_progress=check.callback(given.get("on_progress"), "on_progress"),
            options=self._options(method, request, timeout_name="request_timeout"),
        )

    async def wait(
        self,
        video: VideoRef,
        *,
        raise_on_failure: bool = False,
        **wait: Unpack[WaitOptions],
    ) -> Video:
        """Poll a job until it leaves ``waiting_statuses``; return its final state.

        The interval is the server's ``openai-poll-after-ms`` when it sends one
        (at least 0.1 s, or ``poll_interval`` when that is shorter), else
        ``poll_interval``, else 1 s. ``wait_timeout`` bounds the whole wait
        (``WaitTimeoutError`` carries the last state seen); ``request_timeout``
        bounds each poll. With ``raise_on_failure``, a failed job raises
        ``VideoFailedError``. ``on_progress(video)`` (sync or async) is called
        when the status or progress changes. Each poll goes through the retry
        policy. A ``Video`` that is already finished is returned without a request.
        See ``WaitOptions`` for every option.
        """
        video_id = check.checked_video_id(video)
        plan = self._wait_plan("wait", wait)
        raise_on_failure = check.boolean(raise_on_failure, "raise_on_failure")
        return await self._wait_one(video_id, plan, raise_on_failure, _as_video(video))

    async def _wait_one(
        self,
        video_id: str,
        plan: _WaitPlan,
        raise_on_failure: bool,
        start: Video | None,
        known: tuple[str, str | None] | None = None,
    ) -> Video:
        fetch = self._poll_fetcher(video_id, plan.options)
        if self._journal is not None:
            fetch = self._journal.recording(fetch, video_id, known)
        return await wait_for(
            fetch,
            video_id=video_id,
            waiting=plan.waiting,
            timeout=plan.timeout,
            poll_interval=plan.poll_interval,
            on_progress=plan.on_progress,
            raise_on_failure=raise_on_failure,
            start=start,
            webhooks=self._webhooks,
            fallback_interval=self._webhook_fallback,
            observe=self._observe_wait(),
        )

    def _observe_wait(self) -> Observe | None:
        """A ``videos.wait`` span per job's wait, when tracing."""
        telemetry = self._live_telemetry()
        return None if telemetry is None else telemetry.waiting

    async def create_and_wait(
        self,
        prompt: str,
        *,
        model: str | None = None,
        seconds: int | str | None = None,
        size: str | None = None,
        input_reference: FileInput | Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, object] | None = None,
        raise_on_failure: bool = False,
        **wait: Unpack[WaitOptions],
    ) -> Video:
        """``create()`` then ``wait()``; ``wait_timeout`` bounds the wait,
        ``request_timeout`` each request (the create's included)."""
        fields, upload = creation_fields(prompt, model, seconds, size, input_reference)
        plan = self._wait_plan("create_and_wait", wait)
        raise_on_failure = check.boolean(raise_on_failure, "raise_on_failure")
        post = self._options(
            "create_and_wait",
            {} if extra_body is None else {"extra_body": extra_body},
            idempotency_key=idempotency_key,
        )
        create_call = attrs.evolve(
            plan.options, idempotency_key=post.idempotency_key, extra_body=post.extra_body
        )
        with self._span("create_and_wait"):
            created = await self._send_create(fields, upload, create_call)
            known = None
            if self._journal is not None:
                assert create_call.idempotency_key is not None
                known = (create_call.idempotency_key, created.status)
            return await self._wait_one(created.id, plan, raise_on_failure, created, known)

    def wait_many(
        self,
        videos: Iterable[VideoRef] | AsyncIterable[VideoRef],
        *,
        concurrency: int = 16,
        **wait: Unpack[WaitOptions],
    ) -> AsyncGenerator[WaitResult, None]:
        """Wait on many jobs together; yield a ``WaitResult`` per job as it finishes.

        At most ``concurrency`` polls are in flight at once, over the client's
        one connection pool. A job whose polls fail (a 404, say) is reported
        with ``result.error`` and never stops the others; when ``wait_timeout``
        (for the whole run) passes, each unfinished job is reported with a
        ``WaitTimeoutError``. Every job given is reported exactly once.
        Breaking out of the loop cancels the remaining polls. An exception
        raised by ``on_progress`` is that job's ``result.error``. ``videos`` may
        be an async iterable (a queue, say): each job is waited on from when it
        arrives, and the loop ends once the iterable is exhausted and every
        job is reported; a bad id in it raises then.
        """
        source = videos if isinstance(videos, AsyncIterable) else None
        if isinstance(videos, (str, Video)) or not isinstance(videos, (Iterable, AsyncIterable)):
            raise TypeError("videos must be an iterable of video ids or Video objects")
        given = [] if isinstance(videos, AsyncIterable) else list(videos)
        # A str is the caller's (checked now); a Video's id is the server's (see _job_of).
        ids = [
            None if isinstance(video, Video) else check.checked_video_id(video, "videos[]")
            for video in given
        ]
        plan = self._wait_plan("wait_many", wait)
        # The gate bounds each attempt, not each poll: a job waiting out a
        # Retry-After between its attempts does not hold a slot.
        gate = asyncio.Semaphore(check.integer(concurrency, "concurrency", low=1))

        journal = self._journal

        def job(video_id: str, video: object) -> Job:
            fetch = self._poll_fetcher(video_id, plan.options, gate)
            if journal is not None:
                fetch = journal.recording(fetch, video_id)
            return (video_id, fetch, _as_video(video))

        async def arriving(source: AsyncIterable[object]) -> AsyncIterator[Job]:
            async for video in source:
                yield _job_of(video, job)

        return wait_many(
            [
                job(video_id, video) if video_id is not None else _job_of(video, job)
                for video_id, video in zip(ids, given, strict=True)
            ]
            if source is None
            else arriving(source),
            waiting=plan.waiting,
            timeout=plan.timeout,
            poll_interval=plan.poll_interval,
            on_progress=plan.on_progress,
            webhooks=self._webhooks,
            fallback_interval=self._webhook_fallback,
            observe=self._observe_wait(),
        )

    def resume(
        self,
        *,
        concurrency: int = 16,
        download_dir: str | os.PathLike[str] | None = None,
        **wait: Unpack[WaitOptions],
    ) -> AsyncGenerator[WaitResult, None]:
        """Re-attach to every unfinished job of the ledger; yield a ``WaitResult`` per
        entry as it finishes, as ``wait_many`` does (``result.key`` is its key).

        An ``intent`` (a create whose answer was never recorded) is reconciled by
        the client's ``reconcile`` policy; a ``created`` job is waited on; a
        completed one is downloaded where its target was recorded (by an earlier
        ``download()``), or into ``download_dir`` when given. An ``ambiguous``
        entry is reported with its ``AmbiguousCreateError``, content that expired
        first with ``ContentExpiredError``. ``timeout`` bounds the whole run; at
        most ``concurrency`` polls (and downloads) are in flight. Needs a ledger.
        """
        plan = self._wait_plan("resume", wait)
        gate = asyncio.Semaphore(check.integer(concurrency, "concurrency", low=1))
        folder = None
        if download_dir is not None:
            if not isinstance(download_dir, (str, os.PathLike)) or not str(download_dir).strip():
                raise TypeError("download_dir must be a path (str or os.PathLike) or None")
            folder = Path(download_dir)
        if self._journal is None:
            raise ValueError("resume() needs a ledger: AsyncVideos(ledger=...)")
        from .ledger._resume import resume as resume_entries

        calls = _ResumeCalls(self, plan, gate)
        return resume_entries(self._journal, calls, timeout=plan.timeout, download_dir=folder)

    async def _wait_recorded(
        self,
        video_id: str,
        key: str,
        status: str | None,
        plan: _WaitPlan,
        gate: asyncio.Semaphore,
        seen: MutableSequence[Video],
    ) -> Video:
        """One job's wait for ``resume()``: statuses recorded, polls through ``gate``."""
        journal = self._journal
        assert journal is not None
        fetch = journal.recording(
            self._poll_fetcher(video_id, plan.options, gate), video_id, (key, status)
        )

        async def polled() -> tuple[Video, float | None]:
            video, hint = await fetch()
            seen.append(video)
            return video, hint

        return await wait_for(
            polled,
            video_id=video_id,
            waiting=plan.waiting,
            timeout=None,
            poll_interval=plan.poll_interval,
            on_progress=plan.on_progress,
            raise_on_failure=False,
            webhooks=self._webhooks,
            fallback_interval=self._webhook_fallback,
            observe=self._observe_wait(),
        )


@attrs.frozen
class _ResumeCalls:
    """What ``resume()`` needs of the client: its default options, one gate."""

    client: AsyncVideos
    plan: _WaitPlan
    gate: asyncio.Semaphore

    @property
    def send(self) -> Send:
        return self.client._sender(self.client._options("resume", {}, idempotency_key=None))

    @property
    def retrieve(self) -> Callable[[str], Awaitable[Video]]:
        return self.client._retriever(self.client._default_options)

    @property
    def write(self) -> Write:
        write = self.client._writer(256 * 1024, self.client._default_options, None)
        gate = self.gate

        async def gated(
            video_id: str, variant: str, target: Path, overwrite: bool, digest: Digest
        ) -> Path:
            async with gate:
                return await write(video_id, variant, target, overwrite, digest)

        return gated

    async def wait(
        self, video_id: str, key: str, status: str | None, seen: MutableSequence[Video]
    ) -> Video:
        return await self.client._wait_recorded(video_id, key, status, self.plan, self.gate, seen)


async def _newest(
    listing: AsyncGenerator[Video, None], since: datetime
) -> AsyncGenerator[Video, None]:
    """Jobs of a newest-first listing down to ``since`` (jobs of no known time too)."""
    async with contextlib.aclosing(listing) as jobs:
        async for video in jobs:
            if video.created_at is not None and video.created_at < since:
                return
            yield video


def _path_of(value: object) -> str | None:
    """The absolute path of an upload given as one (for the ledger to read it again)."""
    if isinstance(value, (str, os.PathLike)):
        return os.path.abspath(value)  # (a getcwd, not blocking I/O)
    return None


class VideosWithRawResponse:
    """``AsyncVideos.with_raw_response``: each request method returns a ``RawResponse``."""

    # Each takes the plain method's arguments. The attributes are declared with
    # ``...`` for the arguments, so that every type checker reads one type.
    def __init__(self, videos: AsyncVideos) -> None:
        self.retrieve: _Raw[Video] = with_raw(videos.retrieve)
        self.list_page: _Raw[VideoPage] = with_raw(videos.list_page)
        self.create: _Raw[Video] = with_raw(videos.create)
        self.remix: _Raw[Video] = with_raw(videos.remix)
        self.edit: _Raw[Video] = with_raw(videos.edit)
        self.extend: _Raw[Video] = with_raw(videos.extend)
        self.create_character: _Raw[Character] = with_raw(videos.create_character)
        self.retrieve_character: _Raw[Character] = with_raw(videos.retrieve_character)
        self.delete: _Raw[DeletedVideo] = with_raw(videos.delete)
        self.download_content: _Raw[bytes] = with_raw(videos.download_content)


async def _one_page(
    fetch: FetchPage, after: str | None, hint: Callable[[int], None] | None
) -> AsyncGenerator[Video, None]:
    page = await fetch(after)
    for video in page.data:
        yield video
    if hint is not None and page.has_more:  # only once the whole page was used
        hint(len(page.data))


def _wait_timeout(method: str, given: Mapping[str, Any]) -> float | None:
    """``wait_timeout=``, or its deprecated old name ``timeout=``, checked."""
    if "timeout" not in given:
        return check.optional_seconds(given.get("wait_timeout"), "wait_timeout")
    if "wait_timeout" in given:
        raise TypeError(f"{method}() takes wait_timeout= or its old name timeout=, not both")
    warnings.warn(
        f"{method}(timeout=...) is deprecated: it bounds the whole wait, so it is called "
        "wait_timeout= now (timeout= on every other method bounds one request; each "
        "poll's limit here is request_timeout=)",
        DeprecationWarning,
        stacklevel=4,  # the caller of wait(), wait_many() or create_and_wait()
    )
    return check.optional_seconds(given["timeout"], "timeout")


def _job_of(video: object, job: Callable[[str, object], Job]) -> Job:
    """The job for one of ``wait_many``'s videos. A ``Video`` whose id (the server's)
    cannot go into a path is reported as that job's failure, the others go on."""
    if not isinstance(video, Video):
        return job(check.checked_video_id(video, "videos[]"), video)
    try:
        return job(check.server_id(video), video)
    except APIResponseValidationError as error:
        failed = error

        async def fail() -> tuple[Video, float | None]:
            raise failed

        return (video.id, fail, video)


def _as_video(value: object) -> Video | None:
    """The job's known state when the caller passed a ``Video``, not just an id."""
    return value if isinstance(value, Video) else None
