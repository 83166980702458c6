"""``AsyncVideos``: one thin method per endpoint of the Videos API.

Each method checks its arguments (before any I/O), describes the request, and
reads the answer into a model; the machinery is in ``_client.py``, the loops
in ``_pagination.py``, ``_waiting.py`` and ``_download.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from . import _validate as check
from ._client import BaseClient, CallOptions, RequestOptions
from ._config import NOT_GIVEN, NotGiven, TimeoutSetting
from ._convert import structure
from ._download import ProgressCallback, read_content, write_atomically
from ._http import StreamedResponse
from ._models import (
    DEFAULT_WAITING_STATUSES,
    Character,
    DeletedVideo,
    Video,
    VideoPage,
)
from ._pagination import FetchPage, iterate_items, iterate_pages
from ._protocol import FormFile, path_segment, poll_after
from ._uploads import (
    FileInput,
    check_file_input,
    check_reference_mapping,
    read_file,
)
from ._waiting import OnProgress, WaitResult, wait_for, wait_many

if TYPE_CHECKING:
    from typing_extensions import Unpack

Order = Literal["asc", "desc"]
Variant = Literal["video", "thumbnail", "spritesheet"]
VideoRef = str | Video
DEFAULT_PAGE_SIZE = 20
DEFAULT_ALL_PAGE_SIZE = 100
DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_WAIT_CONCURRENCY = 16


class AsyncVideos(BaseClient):
    """Asyncio client for the Videos API (OpenAI, or any compatible ``base_url``).

    Use it as ``async with AsyncVideos() as videos:`` (or call ``close()``).
    Every request method takes, for that call alone, ``timeout`` (seconds, an
    ``aiohttp.ClientTimeout`` or None), ``max_retries``, ``extra_headers`` and
    ``extra_query``; POST methods also take ``idempotency_key``.
    """

    async def __aenter__(self) -> AsyncVideos:
        await super().__aenter__()
        return self

    # -- reading jobs ------------------------------------------------------

    async def retrieve(
        self,
        video: VideoRef,
        **options: Unpack[RequestOptions],
    ) -> Video:
        """``GET /videos/{id}``: the job's current state."""
        path = check.video_path(video)
        call = self._options(**options)
        data, _ = await self._request("GET", path, call)
        return structure(data, Video)

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
        """Jobs, oldest first by default: one page, or with ``all=True`` every job.

        Nothing is fetched until the first job is asked for; with ``all=True``
        the next page is fetched only when the current one is used up (pages
        of 100 unless ``limit`` says otherwise). A failure raises with
        ``error.resume_after``: pass it back as ``after=`` to continue.
        ``prefetch=1`` (with ``all=True``) requests the next page while the
        current one is consumed: worth it when the loop body awaits or works.
        """
        if not isinstance(all, bool):
            raise TypeError(f"all must be a bool, got {type(all).__name__}")
        if check.integer(prefetch, "prefetch", low=0, high=1) and not all:
            raise ValueError("prefetch=1 needs all=True: a single page has no next page")
        default = DEFAULT_ALL_PAGE_SIZE if all else DEFAULT_PAGE_SIZE
        fetch = self._page_fetcher(
            default if limit is NOT_GIVEN else limit,
            order,
            after,
            self._options(**options),
        )
        if all:
            return iterate_items(fetch, after=after, prefetch=prefetch)
        return self._one_page(fetch, after)

    async def _one_page(self, fetch: FetchPage, after: str | None) -> AsyncGenerator[Video, None]:
        page = await fetch(after)
        for video in page.data:
            yield video

    async def list_page(
        self,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        order: Order = "asc",
        after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> VideoPage:
        """``GET /videos``: one page, with its cursors."""
        fetch = self._page_fetcher(
            limit,
            order,
            after,
            self._options(**options),
        )
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
            self._options(**options),
        )
        return iterate_pages(fetch, after=after, prefetch=prefetch)

    def _page_fetcher(
        self, limit: object, order: object, after: object, options: CallOptions
    ) -> FetchPage:
        base_query = {
            "limit": str(check.limit(limit)),
            "order": check.choice(order, "order", check.ORDERS),
        }
        check.optional_id(after, "after")

        async def fetch(cursor: str | None) -> VideoPage:
            query = base_query if cursor is None else {**base_query, "after": cursor}
            data, _ = await self._request("GET", "/videos", options, query=query)
            return structure(data, VideoPage)

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
        **options: Unpack[RequestOptions],
    ) -> Video:
        """``POST /videos``: start a (paid) generation job. Only the arguments given are sent.

        ``input_reference`` is a file (path, bytes or binary file object), sent
        as multipart/form-data, or ``{"image_url": ...}`` / ``{"file_id": ...}``,
        sent as JSON. Retries reuse one ``Idempotency-Key``, so a retry never
        creates a second job.
        """
        fields, upload = _creation(prompt, model, seconds, size, input_reference)
        call = self._options(idempotency_key=idempotency_key, **options)
        return await self._send_create(fields, upload, call)

    async def _send_create(
        self, fields: dict[str, Any], upload: object, call: CallOptions
    ) -> Video:
        if upload is not None:
            part = await read_file(upload, "input_reference", part="input_reference")
            return await self._post_form("/videos", call, fields, part)
        return await self._post_json("/videos", call, fields)

    async def remix(
        self,
        video: VideoRef,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Video:
        """``POST /videos/{id}/remix``: a new job from a completed one and a new prompt."""
        path = check.video_path(video) + "/remix"
        body = {"prompt": check.prompt(prompt)}
        call = self._options(idempotency_key=idempotency_key, **options)
        return await self._post_json(path, call, body)

    async def edit(
        self,
        video: VideoRef | FileInput,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Video:
        """``POST /videos/edits``: edit a job (id or ``Video``) or an uploaded video
        file (a ``pathlib.Path``, bytes or binary file object; a str is an id)."""
        fields = {"prompt": check.prompt(prompt)}
        call = self._options(idempotency_key=idempotency_key, **options)
        return await self._post_with_source("/videos/edits", video, fields, call)

    async def extend(
        self,
        video: VideoRef | FileInput,
        prompt: str,
        seconds: int | str,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Video:
        """``POST /videos/extensions``: continue a job (or an uploaded video) by ``seconds``."""
        fields = {"prompt": check.prompt(prompt), "seconds": check.seconds(seconds)}
        call = self._options(idempotency_key=idempotency_key, **options)
        return await self._post_with_source("/videos/extensions", video, fields, call)

    async def _post_with_source(
        self, path: str, video: object, fields: dict[str, Any], options: CallOptions
    ) -> Video:
        if isinstance(video, (str, Video)):
            source_id = check.video_id(video)
            path_segment(source_id, "video")  # same id rules as everywhere else
            return await self._post_json(path, options, {"video": {"id": source_id}, **fields})
        check_file_input(video, "video", paths_as_str=False)
        part = await read_file(video, "video", part="video")
        return await self._post_form(path, options, fields, part)

    async def _post_json(self, path: str, options: CallOptions, body: Mapping[str, Any]) -> Video:
        data, _ = await self._request("POST", path, options, json_body=body)
        return structure(data, Video)

    async def _post_form(
        self, path: str, options: CallOptions, fields: Mapping[str, str], part: FormFile
    ) -> Video:
        data, _ = await self._request("POST", path, options, form_fields=fields, form_files=(part,))
        return structure(data, Video)

    # -- characters --------------------------------------------------------

    async def create_character(
        self,
        name: str,
        video: FileInput,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Character:
        """``POST /videos/characters``: a reusable character from a video file."""
        fields = {"name": check.text(name, "name", max_length=80)}
        check_file_input(video, "video")
        call = self._options(idempotency_key=idempotency_key, **options)
        part = await read_file(video, "video", part="video")
        data, _ = await self._request(
            "POST", "/videos/characters", call, form_fields=fields, form_files=(part,)
        )
        return structure(data, Character)

    async def retrieve_character(
        self,
        character_id: str,
        **options: Unpack[RequestOptions],
    ) -> Character:
        """``GET /videos/characters/{id}``."""
        path = "/videos/characters/" + path_segment(character_id, "character_id")
        call = self._options(**options)
        data, _ = await self._request("GET", path, call)
        return structure(data, Character)

    # -- deleting ----------------------------------------------------------

    async def delete(
        self,
        video: VideoRef,
        **options: Unpack[RequestOptions],
    ) -> DeletedVideo:
        """``DELETE /videos/{id}``: remove a job and its stored assets."""
        path = check.video_path(video)
        call = self._options(**options)
        data, _ = await self._request("DELETE", path, call)
        return structure(data, DeletedVideo)

    # -- content -----------------------------------------------------------

    @staticmethod
    def _content_request(video: object, variant: object) -> tuple[str, dict[str, str]]:
        path = check.video_path(video) + "/content"
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
        small assets. Use ``download()`` or ``iter_content()`` for videos."""
        call = self._options(**options)
        path, query = self._content_request(video, variant)
        body, _ = await self._request(
            "GET", path, call, query=query, headers={"Accept": "*/*"}, raw=True
        )
        assert isinstance(body, bytes)
        return body

    def iter_content(
        self,
        video: VideoRef,
        *,
        variant: Variant | NotGiven = NOT_GIVEN,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **options: Unpack[RequestOptions],
    ) -> AsyncGenerator[bytes, None]:
        """The content body as chunks of at most ``chunk_size`` bytes, never whole
        in memory. A dropped connection is resumed with ``Range`` where the server
        allows it (up to ``max_retries`` times), else raised."""
        call = self._options(**options)
        path, query = self._content_request(video, variant)
        check.integer(chunk_size, "chunk_size", low=1)
        return self._iter_chunks(path, query, call, chunk_size)

    async def _iter_chunks(
        self, path: str, query: dict[str, str], options: CallOptions, chunk_size: int
    ) -> AsyncGenerator[bytes, None]:
        chunks = read_content(
            self._body_opener(path, query, options),
            chunk_size=chunk_size,
            max_resumes=options.max_retries,
            may_restart=False,
        )
        try:
            async for _, chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    async def download(
        self,
        video: VideoRef,
        path: str | os.PathLike[str],
        *,
        variant: Variant | NotGiven = NOT_GIVEN,
        overwrite: bool = False,
        on_progress: ProgressCallback | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **options: Unpack[RequestOptions],
    ) -> Path:
        """Stream the content to ``path``: whole, or not there at all.

        Missing folders are created; the body goes to a temporary file beside
        ``path`` that is renamed into place only when complete (and removed on
        failure or cancellation). A dropped connection resumes with ``Range``
        when the server accepts ranges, else starts over, up to ``max_retries``
        times. ``on_progress(done_bytes, total_bytes_or_None)`` may be sync or
        async. An existing file raises ``FileExistsError`` unless ``overwrite``.
        """
        call = self._options(**options)
        request_path, query = self._content_request(video, variant)
        target = _target_path(path, overwrite)
        check.integer(chunk_size, "chunk_size", low=1)
        check.callback(on_progress, "on_progress")
        sizes: list[int | None] = []
        chunks = read_content(
            self._body_opener(request_path, query, call),
            chunk_size=chunk_size,
            max_resumes=call.max_retries,
            may_restart=True,
            sizes=sizes,
        )
        return await write_atomically(
            chunks, target, sizes=sizes, on_progress=on_progress, overwrite=overwrite
        )

    def _body_opener(self, path: str, query: dict[str, str], options: CallOptions) -> Any:
        def open_body(offset: int) -> AbstractAsyncContextManager[StreamedResponse]:
            headers = {"Accept": "*/*"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            return self._stream(path, options, query=query, headers=headers)

        return open_body

    # -- waiting -----------------------------------------------------------

    def _poll_fetcher(
        self, video_id: str, options: CallOptions, gate: asyncio.Semaphore | None = None
    ) -> Any:
        path = "/videos/" + path_segment(video_id, "video")

        async def fetch() -> tuple[Video, float | None]:
            data, headers = await self._request("GET", path, options, gate=gate)
            return structure(data, Video), poll_after(headers)

        return fetch

    async def wait(
        self,
        video: VideoRef,
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
        on_progress: OnProgress | None = None,
        raise_on_failure: bool = False,
        waiting_statuses: Iterable[str] = DEFAULT_WAITING_STATUSES,
        request_timeout: TimeoutSetting | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
    ) -> Video:
        """Poll a job until it leaves ``waiting_statuses``; return its final state.

        The interval is the server's ``openai-poll-after-ms`` when it sends one,
        else ``poll_interval``, else 1 s. ``timeout`` bounds the whole wait
        (``WaitTimeoutError`` carries the last state seen); ``request_timeout``
        bounds each poll. With ``raise_on_failure``, a failed job raises
        ``VideoFailedError``. ``on_progress(video)`` (sync or async) is called
        when the status or progress changes. Each poll goes through the retry
        policy. A ``Video`` that is already finished is returned without a request.
        """
        video_id = check.video_id(video)
        poll_call = self._options(
            timeout=request_timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout_name="request_timeout",
        )
        return await wait_for(
            self._poll_fetcher(video_id, poll_call),
            video_id=video_id,
            waiting=check.statuses(waiting_statuses),
            timeout=check.optional_seconds(timeout, "timeout"),
            poll_interval=check.optional_seconds(poll_interval, "poll_interval"),
            on_progress=_checked_callback(on_progress, "on_progress"),
            raise_on_failure=check.boolean(raise_on_failure, "raise_on_failure"),
            start=_as_video(video),
        )

    async def create_and_wait(
        self,
        prompt: str,
        *,
        model: str | None = None,
        seconds: int | str | None = None,
        size: str | None = None,
        input_reference: FileInput | Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        poll_interval: float | None = None,
        on_progress: OnProgress | None = None,
        raise_on_failure: bool = False,
        waiting_statuses: Iterable[str] = DEFAULT_WAITING_STATUSES,
        request_timeout: TimeoutSetting | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
    ) -> Video:
        """``create()`` then ``wait()``; ``timeout`` bounds the wait, ``request_timeout``
        each request."""
        fields, upload = _creation(prompt, model, seconds, size, input_reference)
        waiting = check.statuses(waiting_statuses)
        wait_timeout = check.optional_seconds(timeout, "timeout")
        interval = check.optional_seconds(poll_interval, "poll_interval")
        check.callback(on_progress, "on_progress")
        check.boolean(raise_on_failure, "raise_on_failure")
        create_call = self._options(
            timeout=request_timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_query=extra_query,
            idempotency_key=idempotency_key,
            timeout_name="request_timeout",
        )
        poll_call = attrs.evolve(create_call, idempotency_key=None)
        created = await self._send_create(fields, upload, create_call)
        return await wait_for(
            self._poll_fetcher(created.id, poll_call),
            video_id=created.id,
            waiting=waiting,
            timeout=wait_timeout,
            poll_interval=interval,
            on_progress=on_progress,
            raise_on_failure=bool(raise_on_failure),
            start=created,
        )

    def wait_many(
        self,
        videos: Iterable[VideoRef],
        *,
        concurrency: int = DEFAULT_WAIT_CONCURRENCY,
        timeout: float | None = None,
        poll_interval: float | None = None,
        on_progress: OnProgress | None = None,
        waiting_statuses: Iterable[str] = DEFAULT_WAITING_STATUSES,
        request_timeout: TimeoutSetting | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[WaitResult, None]:
        """Wait on many jobs together; yield a ``WaitResult`` per job as it finishes.

        At most ``concurrency`` polls are in flight at once, over the client's
        one connection pool. A job whose polls fail (a 404, say) is reported
        with ``result.error`` and never stops the others; when ``timeout``
        (for the whole run) passes, each unfinished job is reported with a
        ``WaitTimeoutError``. Every job given is reported exactly once.
        Breaking out of the loop cancels the remaining polls.
        """
        if isinstance(videos, (str, Video)) or not isinstance(videos, Iterable):
            raise TypeError("videos must be an iterable of video ids or Video objects")
        given = list(videos)
        ids = [check.video_id(video, "videos[]") for video in given]
        for video_id in ids:
            path_segment(video_id, "videos[]")
        options = self._options(
            timeout=request_timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout_name="request_timeout",
        )
        # The gate bounds each attempt, not each poll: a job waiting out a
        # Retry-After between its attempts does not hold a slot.
        gate = asyncio.Semaphore(check.integer(concurrency, "concurrency", low=1))
        return wait_many(
            [
                (video_id, self._poll_fetcher(video_id, options, gate), _as_video(video))
                for video_id, video in zip(ids, given, strict=True)
            ],
            waiting=check.statuses(waiting_statuses),
            timeout=check.optional_seconds(timeout, "timeout"),
            poll_interval=check.optional_seconds(poll_interval, "poll_interval"),
            on_progress=_checked_callback(on_progress, "on_progress"),
        )


def _creation(
    prompt: object, model: object, seconds: object, size: object, input_reference: object
) -> tuple[dict[str, Any], object]:
    """Check create()'s arguments; return the fields to send and the file to upload."""
    fields: dict[str, Any] = {"prompt": check.prompt(prompt)}
    if model is not None:
        fields["model"] = check.model(model)
    if seconds is not None:
        fields["seconds"] = check.seconds(seconds)
    if size is not None:
        fields["size"] = check.size(size)
    upload = None
    if isinstance(input_reference, Mapping):
        fields["input_reference"] = check_reference_mapping(input_reference, "input_reference")
    elif input_reference is not None:
        check_file_input(input_reference, "input_reference")
        upload = input_reference
    return fields, upload


def _as_video(value: object) -> Video | None:
    """The job's known state when the caller passed a ``Video``, not just an id."""
    return value if isinstance(value, Video) else None


def _checked_callback(value: Any, name: str) -> Any:
    check.callback(value, name)
    return value


def _target_path(path: object, overwrite: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
    target = Path(path)
    if not str(path).strip():
        raise ValueError("path must not be empty")
    if target.is_dir():
        raise ValueError(f"path is a directory: {str(target)!r}; give a file path")
    if target.exists() and not overwrite:
        raise FileExistsError(f"path {str(target)!r} exists; pass overwrite=True to replace it")
    return target
