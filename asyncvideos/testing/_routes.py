"""The endpoints of the fake Videos API: routing on raw path segments, and the handlers.

Routing is done here, from ``request.raw_path``, not by aiohttp's router: how that
router treats an encoded slash has changed across aiohttp releases (3.14 matches on the
encoded path; older ones decoded ``%2F`` first, so ``/v1/videos/a%2Fcontent`` could reach
the content endpoint of ``a``), and we support aiohttp 3.9 onwards. Here each raw
segment is decoded exactly once, so an id is always exactly one segment.

Handlers take a :class:`RecordedRequest` and return a :class:`Reply`; errors are raised
as :class:`ApiError` and rendered in the OpenAI shape. Validation lives in
``_validate``; the job store in ``_jobs``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import attrs

from ._content import CONTENT_TYPES, VARIANTS, ContentSource, parse_range
from ._faults import error_body
from ._jobs import JobStore
from ._recording import RecordedRequest, mask_secret
from ._validate import (
    ApiError,
    body_params,
    check_limit,
    check_prompt,
    check_seconds,
    create_fields,
    video_reference,
)

__all__ = ["Reply", "Router", "Settings"]


@attrs.define
class Reply:
    """A response before it is written: status, headers and a body (bytes or a stream)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)
    source: ContentSource | None = None  # streamed instead of body, bytes [start, end)
    start: int = 0
    end: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start if self.source is not None else len(self.body)

    def chunks(self) -> Iterator[bytes]:
        if self.source is not None:
            return self.source.chunks(self.start, self.end)
        return iter([self.body] if self.body else [])

    @classmethod
    def json(cls, status: int, data: Any, headers: Mapping[str, str] | None = None) -> Reply:
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        return cls(status, json.dumps(data).encode(), all_headers)

    @classmethod
    def error(cls, exc: ApiError) -> Reply:
        body = error_body(exc.message, exc.type, exc.param, exc.code)
        return cls(exc.status, body, {"Content-Type": "application/json", **exc.headers})


@attrs.define
class Settings:
    """The fake's configuration that the endpoints read."""

    api_key: str
    require_auth: bool
    poll_after_ms: int | None
    content_sizes: Mapping[str, int]
    accept_ranges: bool


Handler = Callable[[RecordedRequest, list[str]], Reply]
#: A path segment that holds an id (any non-empty segment); other entries are literal.
ID = None
#: (method, the segments after ``/v1/videos``, the endpoint): the first match wins.
_ROUTES: tuple[tuple[str, tuple[str | None, ...], str], ...] = (
    ("GET", (), "list_videos"),
    ("POST", (), "create_video"),
    ("POST", ("edits",), "create_edit"),
    ("POST", ("extensions",), "create_extension"),
    ("POST", ("characters",), "create_character"),
    ("GET", ("characters", ID), "get_character"),
    ("GET", (ID,), "retrieve_video"),
    ("DELETE", (ID,), "delete_video"),
    ("GET", (ID, "content"), "download_content"),
    ("POST", (ID, "remix"), "remix_video"),
)


def _matches(pattern: tuple[str | None, ...], segments: list[str]) -> bool:
    if len(pattern) != len(segments):
        return False
    return all(
        segment != "" if expected is ID else segment == expected
        for expected, segment in zip(pattern, segments, strict=True)
    )


class Router:
    """Dispatch a recorded request to its endpoint and return the reply."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def dispatch(self, req: RecordedRequest) -> Reply:
        """Authenticate, route and run one request; every error becomes an error reply."""
        try:
            self._authenticate(req)
            handler, args = self._resolve(req)
            return handler(req, args)
        except ApiError as exc:
            return Reply.error(exc)

    def _authenticate(self, req: RecordedRequest) -> None:
        if not self.settings.require_auth:
            return
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
        key = key or req.headers.get("api-key", "").strip()
        # compare_digest: a habit worth showing even in a fake.
        if key and hmac.compare_digest(key.encode(), self.settings.api_key.encode()):
            return
        if not key:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            raise ApiError(401, message, code="invalid_api_key")
        message = (
            f"Incorrect API key provided: {mask_secret(key)}. You can find your API key "
            "at https://platform.openai.com/account/api-keys."
        )
        raise ApiError(401, message, code="invalid_api_key")

    def _resolve(self, req: RecordedRequest) -> tuple[Handler, list[str]]:
        raw = req.raw_path.split("/")
        # HEAD is a GET whose body is left out (when the reply is written).
        wanted = "GET" if req.method == "HEAD" else req.method
        if raw[:3] == ["", "v1", "videos"]:
            segments = raw[3:]
            for method, pattern, name in _ROUTES:
                if method == wanted and _matches(pattern, segments):
                    handler: Handler = getattr(self, name)
                    return handler, [unquote(segment) for segment in segments]
        raise ApiError(404, f"Invalid URL ({req.method} {req.path})")

    # helpers ---------------------------------------------------------------------------

    def _job_headers(self) -> dict[str, str]:
        poll = self.settings.poll_after_ms
        return {} if poll is None else {"openai-poll-after-ms": str(poll)}

    def _existing(self, video_id: str) -> dict[str, Any]:
        job = self.store.get(video_id)
        if job is None:
            raise ApiError(
                404,
                f"Video with id '{video_id}' not found.",
                param="video_id",
                code="video_not_found",
            )
        return job

    def _completed(self, video_id: str, param: str = "video_id") -> dict[str, Any]:
        job = self._existing(video_id)
        if job["status"] != "completed":
            raise ApiError(
                400,
                f"Video '{video_id}' is {job['status']}; only a completed video can be used.",
                param=param,
                code="invalid_video_state",
            )
        return job

    # endpoints -------------------------------------------------------------------------

    def list_videos(self, req: RecordedRequest, _seg: list[str]) -> Reply:
        limit = check_limit(req.query.get("limit", "20"))
        order = req.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ApiError(
                400,
                f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                param="order",
                code="invalid_value",
            )
        after = req.query.get("after") or None
        try:
            data, has_more = self.store.page(order=order, limit=limit, after=after)
        except KeyError:
            raise ApiError(
                400, f"No video found with id '{after}' for 'after'.", param="after"
            ) from None
        return Reply.json(
            200,
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            },
        )

    def create_video(self, req: RecordedRequest, _seg: list[str]) -> Reply:
        params = body_params(req, {"model", "prompt", "input_reference", "seconds", "size"})
        job = self.store.create(create_fields(params))
        return Reply.json(200, job, self._job_headers())

    def retrieve_video(self, _req: RecordedRequest, seg: list[str]) -> Reply:
        return Reply.json(200, self._existing(seg[0]), self._job_headers())

    def delete_video(self, _req: RecordedRequest, seg: list[str]) -> Reply:
        job = self._existing(seg[0])
        if job["status"] not in ("completed", "failed"):
            raise ApiError(
                400,
                f"Video '{seg[0]}' is {job['status']}; only a completed or failed video "
                "can be deleted.",
                param="video_id",
                code="invalid_video_state",
            )
        self.store.remove(seg[0])
        return Reply.json(200, {"id": seg[0], "object": "video.deleted", "deleted": True})

    def remix_video(self, req: RecordedRequest, seg: list[str]) -> Reply:
        source = self._existing(seg[0])  # an unknown path id is a 404 before anything else
        prompt = check_prompt(body_params(req, {"prompt"}))
        source = self._completed(seg[0])
        fields = {
            "object": "video",
            "model": source["model"],
            "prompt": prompt,
            "size": source["size"],
            "seconds": source["seconds"],
            "remixed_from_video_id": source["id"],
        }
        return Reply.json(200, self.store.create(fields), self._job_headers())

    def create_edit(self, req: RecordedRequest, _seg: list[str]) -> Reply:
        params = body_params(req, {"video", "prompt"})
        fields = create_fields({"prompt": params.get("prompt")})
        source_id = video_reference(params)
        source = self._completed(source_id, "video") if source_id else None
        if source is not None:
            fields.update(model=source["model"], size=source["size"], seconds=source["seconds"])
        return Reply.json(200, self.store.create(fields), self._job_headers())

    def create_extension(self, req: RecordedRequest, _seg: list[str]) -> Reply:
        params = body_params(req, {"video", "prompt", "seconds"})
        fields = create_fields({"prompt": params.get("prompt")})
        added = check_seconds(params, required=True, extension=True)
        source_id = video_reference(params)
        source = self._completed(source_id, "video") if source_id else None
        total = int(added)
        if source is not None:
            total += int(source["seconds"]) if str(source["seconds"]).isdigit() else 0
            fields.update(model=source["model"], size=source["size"])
        # For an extension, "seconds" is the stitched total duration (the spec says so).
        fields["seconds"] = str(total)
        return Reply.json(200, self.store.create(fields), self._job_headers())

    def create_character(self, req: RecordedRequest, _seg: list[str]) -> Reply:
        if req.form is None:
            raise ApiError(
                400,
                "This endpoint expects a multipart/form-data body.",
                code="invalid_content_type",
            )
        params = body_params(req, {"video", "name"})
        if not isinstance(params.get("video"), Mapping):
            raise ApiError(
                400,
                "Missing required parameter: 'video' (a file).",
                param="video",
                code="missing_required_parameter",
            )
        name = params.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 80:
            raise ApiError(
                400,
                "Invalid 'name': expected a string of 1 to 80 characters.",
                param="name",
                code="invalid_value",
            )
        character_id = self.store.new_id("char_")
        character = {
            "id": character_id,
            "name": name,
            "created_at": int(self.store.clock.now()),
        }
        self.store.characters[character_id] = character
        return Reply.json(200, character)

    def get_character(self, _req: RecordedRequest, seg: list[str]) -> Reply:
        character = self.store.characters.get(seg[1])
        if character is None:
            raise ApiError(
                404,
                f"Character with id '{seg[1]}' not found.",
                param="character_id",
                code="character_not_found",
            )
        return Reply.json(200, character)

    def download_content(self, req: RecordedRequest, seg: list[str]) -> Reply:
        variant = req.query.get("variant", "video")
        if variant not in VARIANTS:
            raise ApiError(
                400,
                f"Invalid value: '{variant}'. Supported values are: 'video', 'thumbnail', "
                "and 'spritesheet'.",
                param="variant",
                code="invalid_value",
            )
        job = self._existing(seg[0])
        if job["status"] != "completed":
            # The real API answers 404 for content that does not exist (yet); the code
            # lets a caller tell "not ready" from "no such video".
            raise ApiError(
                404,
                f"Video '{seg[0]}' is {job['status']}; its content is not available. Use "
                f"GET /v1/videos/{{video_id}} to check its status.",
                param="video_id",
                code="video_not_ready",
            )
        source = self.content_source(seg[0], variant)
        headers = {"Content-Type": CONTENT_TYPES[variant], "ETag": source.etag}
        if not self.settings.accept_ranges:
            return Reply(200, headers=headers, source=source, end=source.size)
        headers["Accept-Ranges"] = "bytes"
        wanted = parse_range(req.headers.get("range"), source.size)
        if wanted is None:
            return Reply(200, headers=headers, source=source, end=source.size)
        if not wanted.satisfiable:
            raise ApiError(
                416,
                f"Requested range not satisfiable: the asset is {source.size} bytes.",
                param="range",
                code="range_not_satisfiable",
                headers={"Content-Range": f"bytes */{source.size}", "Accept-Ranges": "bytes"},
            )
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end - 1}/{source.size}"
        return Reply(206, headers=headers, source=source, start=wanted.start, end=wanted.end)

    def content_source(self, video_id: str, variant: str) -> ContentSource:
        """The bytes served for ``(video_id, variant)``."""
        return ContentSource(video_id, variant, self.settings.content_sizes[variant])
