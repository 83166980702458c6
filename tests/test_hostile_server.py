"""Whatever a server answers, only ``AsyncVideosError`` subclasses come out.

A property test over every public method of ``AsyncVideos``: one hostile
``aiohttp.web`` app (shared by the module, as is the connection pool) answers
each request of an example from a list of hostile answers drawn by hypothesis:
any status, junk ``Location``/``Content-Range``/``Content-Encoding``/request-id/
retry/rate-limit headers, bodies of junk bytes, JSON nested thousands deep, of
the wrong types, with huge numbers, ``NaN``, lone surrogates, invalid UTF-8,
UTF-16, truncated gzip, or cut short by a closed connection. Each call returns
or raises an ``AsyncVideosError`` (a ``wait_many`` result's error is one too);
none hangs; a failed ``download`` leaves no file behind.

100 examples per test by default; CI runs 1,000 (``HYPOTHESIS_PROFILE=thorough``).
Every bare exception this found has a named test in ``tests/test_typed_errors.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asyncvideos import AsyncVideos, AsyncVideosError, WaitFailure

KEY = "sk-hostile-server-0123456789"
in_module_loop = pytest.mark.asyncio(loop_scope="module")
HYPOTHESIS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: A call that has not ended by then hangs: that is a failure too.
CALL_LIMIT = 30.0


@attrs.frozen
class Answer:
    """One hostile response. ``framing``: ``whole`` (as aiohttp frames it),
    ``chunked`` (no length, two writes), ``short`` (a length it does not reach, then
    the connection is closed), ``drop`` (closed before any status line)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    framing: str


class HostileApp:
    """Answers the n-th request of an example with its n-th answer (the last one
    for every request after)."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.requests = 0
        self.base_url = ""
        self.origin = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.base_url = self.origin + "/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def serve(self, answers: list[Answer]) -> None:
        self.answers, self.requests = answers, 0

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = self.answers[min(self.requests, len(self.answers) - 1)]
        self.requests += 1
        headers = [(name, value.replace("{origin}", self.origin)) for name, value in answer.headers]
        if answer.framing == "drop":
            _hang_up(request)
            return web.Response(status=499)  # never sent: the connection is gone
        if answer.framing == "whole":
            return web.Response(status=answer.status, body=answer.body, headers=headers)
        response = web.StreamResponse(status=answer.status, headers=headers)
        if answer.framing == "short":
            response.content_length = len(answer.body) + 100
        await response.prepare(request)
        half = len(answer.body) // 2
        await response.write(answer.body[:half])
        await response.write(answer.body[half:])
        if answer.framing == "short":
            _hang_up(request)
        else:
            await response.write_eof()
        return response


def _hang_up(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


# -- hostile answers ---------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


DEEP = [nested(depth) for depth in (600, 990, 5_000, 100_000)] + [
    b'{"id": "video_1", "progress": ' + nested(5_000) + b"}",
    b'{"object": "list", "data": [' + nested(990) + b'], "has_more": true}',
    b'{"error": {"message": "x", "details": ' + nested(990) + b"}}",
    b'{"a":' * 3_000 + b"1" + b"}" * 3_000,
]
JOB = {
    "id": "video_1",
    "object": "video",
    "created_at": 1760000000,
    "status": "completed",
    "model": "sora-2",
    "progress": 100,
    "seconds": "4",
    "size": "720x1280",
}
WELL_FORMED = [
    JOB,
    {**JOB, "status": "queued", "progress": 0},
    {**JOB, "status": "failed", "error": {"code": "x", "message": "no"}},
    {"object": "list", "data": [JOB], "has_more": False, "last_id": "video_1"},
    {"object": "list", "data": [JOB], "has_more": True, "last_id": "video_2"},
    {"object": "list", "data": [], "has_more": True},
    {"id": "video_1", "object": "video.deleted", "deleted": True},
    {"id": "char_1", "name": "Cat", "created_at": 1760000000},
    {"error": {"message": "Nope", "code": "invalid_api_key", "type": "auth"}},
    {"error": {"message": "quota", "code": "insufficient_quota"}},
    {"detail": "gateway says no"},
]
STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "..", ".", "a/b", "\ud800", "x\udfff", "a\r\nb", "\x00", "🎬", "%2e%2e"]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    STRINGS,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(STRINGS, inner, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = [
    "id",
    "object",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "model",
    "seconds",
    "size",
    "prompt",
    "error",
    "remixed_from_video_id",
    "data",
    "has_more",
    "last_id",
    "first_id",
    "deleted",
    "name",
]
#: A well-formed body with some fields replaced by anything JSON holds.
RESHAPED = st.tuples(
    st.sampled_from(WELL_FORMED),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4),
).map(lambda pair: {**pair[0], **pair[1]})


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as JSON's readers meet them


JSON_BODIES = st.one_of(
    st.sampled_from(WELL_FORMED).map(_dumps),
    RESHAPED.map(_dumps),
    JSON_VALUES.map(_dumps),
)
BODIES: st.SearchStrategy[tuple[bytes, dict[str, str]]] = st.one_of(
    JSON_BODIES.map(lambda body: (body, {})),
    st.binary(max_size=300).map(lambda body: (body, {})),
    st.sampled_from(DEEP).map(lambda body: (body, {})),
    st.sampled_from(
        [
            b'{"id": "video_1", "progress": 1e999}',
            b'{"id": "video_1", "created_at": 123456789012345678901234567890}',
            b'{"id": "video_1", "created_at": -1e308, "progress": NaN}',
            b'{"id": "video_1", "seconds": Infinity, "size": -Infinity}',
            b'{"id": "\xff\xfe", "status": "\xc3"}',
            b'{"id": "video_1", "prompt": "\\ud800"}',
            b'{"object": "list", "data": [{"id": "\\udfff"}], "has_more": true, '
            b'"last_id": "\\ud800"}',
            b"\xef\xbb\xbf" + _dumps(JOB),
            b"",
        ]
    ).map(lambda body: (body, {})),
    JSON_BODIES.map(lambda body: (body.decode().encode("utf-16"), {})),
    st.tuples(JSON_BODIES, st.integers(min_value=0, max_value=40)).map(
        lambda pair: (
            gzip.compress(pair[0])[: len(gzip.compress(pair[0])) - pair[1]],
            {"Content-Encoding": "gzip"},
        )
    ),
)
#: Where a Location may point: nowhere on the network but this machine.
LOCATIONS = st.one_of(
    st.sampled_from(
        [
            "",
            "/v1/videos/video_1",
            "/v1/videos/video_1/content",
            "{origin}/v1/videos/video_1",
            "{origin}/elsewhere?sig=abc%2F",
            "http://127.0.0.1:1/blob",
            "http://127.0.0.1:99999/x",
            "http://127.0.0.1:abc/x",
            "http://user:pw@127.0.0.1:1/x",
            "//user@127.0.0.1:1/x",
            "http://xn--a.example/x",
            "http://exa mple.example/x",
            "http://%zz.example/x",
            "http://[::1/x",
            "https://127.0.0.1:1/x",
            "ftp://127.0.0.1:1/x",
            "javascript:alert(1)",
            "http:",
            "//",
            "?x=1",
            "#frag",
        ]
    ),
    st.text(max_size=20).map(lambda text: "/v1/videos/" + text),
)
JUNK_VALUES = [
    "",
    "0",
    "-1",
    "1",
    "1e999",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    "TRUE",
    "bytes 0-10/5",
    "bytes */*",
    "bytes 5-2/10",
    "bytes 0-99999999999999999999/1",
    "bytes 0-0/0",
    "bytes=0-",
    "bytes 1-",
    "gzip",
    "br",
    "deflate",
    "identity",
    "gzip, gzip",
    "x-gzip",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Mon, 01 Jan 9999 00:00:00 GMT",
    '"v1"',
    'W/"v1"',
    '"',
    "video/mp4",
    "image/webp",
    "image/jpeg",
    "application/json",
    "text/html; charset=utf-16",
    "multipart/byteranges; boundary=x",
]
VALUES = st.one_of(
    st.sampled_from(JUNK_VALUES),
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.floats().map(str),
)
NAMES = [
    "Content-Range",
    "Content-Encoding",
    "Content-Type",
    "x-request-id",
    "request-id",
    "x-litellm-call-id",
    "apim-request-id",
    "llm_provider-x-request-id",
    "retry-after",
    "retry-after-ms",
    "llm_provider-retry-after",
    "llm_provider-retry-after-ms",
    "x-should-retry",
    "llm_provider-x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "openai-poll-after-ms",
    "ETag",
    "Last-Modified",
    "Accept-Ranges",
    "Content-Disposition",
    "idempotent-replayed",
]
#: A rate budget short enough not to make an example wait (until the pacer's waits
#: count inside a call's own timeout, a budget of a minute would make it sleep).
RESETS = st.sampled_from(["", "junk", "0s", "1ms", "20ms", "-1s", "nan", "1e999s", "5"])
HEADERS = st.tuples(
    st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=5),
    st.one_of(st.none(), LOCATIONS),
    st.one_of(st.none(), RESETS),
)
#: 200 most of all: a 2xx body is where the readers are.
COMMON_STATUSES = [
    200,
    200,
    200,
    200,
    200,
    200,
    200,
    201,
    202,
    204,
    206,
    301,
    302,
    303,
    307,
    308,
    400,
    401,
    403,
    404,
    408,
    409,
    416,
    422,
    429,
    500,
    502,
    503,
    504,
]
REDIRECTS = frozenset({301, 302, 303, 307, 308})
STATUSES = st.one_of(st.sampled_from(COMMON_STATUSES), st.integers(min_value=200, max_value=599))


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    status = draw(STATUSES)
    named, location, reset = draw(HEADERS)
    body, extra = draw(BODIES)
    headers = {**named, **extra}
    if status in REDIRECTS:  # where a redirect leads is most of what it can do wrong
        location = draw(LOCATIONS)
    if location is not None:
        headers["Location"] = location
    if reset is not None:
        headers["x-ratelimit-reset-requests"] = reset
    framing = draw(st.sampled_from(["whole", "whole", "chunked", "short", "drop"]))
    return Answer(status, tuple(headers.items()), body, framing)


ANSWER_LISTS = st.lists(answers(), min_size=1, max_size=3)


# -- the calls ---------------------------------------------------------------------

Call = Callable[[AsyncVideos, Path], Awaitable[object]]


async def _all(items: AsyncIterator[Any], most: int = 50) -> list[Any]:
    taken = []
    async for item in items:
        taken.append(item)
        if len(taken) >= most:
            break
    return taken


async def _open_content(videos: AsyncVideos, folder: Path) -> object:
    async with videos.open_content("video_1") as body:
        return (body.content_length, body.content_type, await _all(aiter(body)))


async def _waited_many(videos: AsyncVideos, folder: Path) -> object:
    results = await _all(
        videos.wait_many(["video_1", "video_2"], wait_timeout=0.05, poll_interval=0.01)
    )
    for result in results:
        if isinstance(result, WaitFailure):
            assert isinstance(result.error, AsyncVideosError), repr(result.error)
    return results


async def _waited_many_listed(videos: AsyncVideos, folder: Path) -> object:
    listed = videos.list(limit=5)
    results = await _all(videos.wait_many(listed, wait_timeout=0.05, poll_interval=0.01))
    for result in results:
        if isinstance(result, WaitFailure):
            assert isinstance(result.error, AsyncVideosError), repr(result.error)
    return results


def _download(variant: str) -> Call:
    async def run(videos: AsyncVideos, folder: Path) -> object:
        target = folder / f"video.{variant}"
        try:
            path = await videos.download("video_1", target, variant=variant)  # type: ignore[arg-type]
        except BaseException:
            left = sorted(folder.iterdir())  # noqa: ASYNC240 - a few entries at most
            assert left == [], f"a failed download left a file behind: {left}"
            raise
        assert sorted(folder.iterdir()) == [target]  # noqa: ASYNC240
        path.unlink()
        return path

    return run


READS: dict[str, Call] = {
    "retrieve": lambda v, f: v.retrieve("video_1"),
    "list": lambda v, f: _all(v.list(limit=5)),
    "list_all": lambda v, f: _all(v.list(all=True, limit=5)),
    "list_all_prefetch": lambda v, f: _all(v.list(all=True, prefetch=1)),
    "list_page": lambda v, f: v.list_page(limit=5, after="video_0"),
    "pages": lambda v, f: _all(v.pages(limit=5), most=10),
    "retrieve_character": lambda v, f: v.retrieve_character("char_1"),
    "delete": lambda v, f: v.delete("video_1"),
    "raw.retrieve": lambda v, f: v.with_raw_response.retrieve("video_1"),
    "raw.list_page": lambda v, f: v.with_raw_response.list_page(),
    "raw.retrieve_character": lambda v, f: v.with_raw_response.retrieve_character("char_1"),
    "raw.delete": lambda v, f: v.with_raw_response.delete("video_1"),
}
WRITES: dict[str, Call] = {
    "create": lambda v, f: v.create("a cat", seconds=4),
    "create_upload": lambda v, f: v.create("a cat", input_reference=b"\x89PNG" + b"\0" * 32),
    "create_image_url": lambda v, f: v.create("a cat", input_reference={"image_url": "https://x"}),
    "remix": lambda v, f: v.remix("video_1", "a dog"),
    "edit": lambda v, f: v.edit("video_1", "a dog"),
    "edit_upload": lambda v, f: v.edit(b"\0" * 64, "a dog"),
    "extend": lambda v, f: v.extend("video_1", "a dog", 4),
    "create_character": lambda v, f: v.create_character("Cat", b"\0" * 64),
    "raw.create": lambda v, f: v.with_raw_response.create("a cat"),
    "raw.remix": lambda v, f: v.with_raw_response.remix("video_1", "a dog"),
    "raw.edit": lambda v, f: v.with_raw_response.edit("video_1", "a dog"),
    "raw.extend": lambda v, f: v.with_raw_response.extend("video_1", "a dog", 8),
    "raw.create_character": lambda v, f: v.with_raw_response.create_character("Cat", b"\0"),
}
CONTENT: dict[str, Call] = {
    "download_content": lambda v, f: v.download_content("video_1"),
    "download_content_thumbnail": lambda v, f: v.download_content("video_1", variant="thumbnail"),
    "iter_content": lambda v, f: _all(v.iter_content("video_1", chunk_size=1024)),
    "open_content": _open_content,
    "download": _download("video"),
    "download_spritesheet": _download("spritesheet"),
    "raw.download_content": lambda v, f: v.with_raw_response.download_content("video_1"),
}
WAITS: dict[str, Call] = {
    "wait": lambda v, f: v.wait("video_1", wait_timeout=0.05, poll_interval=0.01),
    "wait_raising": lambda v, f: v.wait(
        "video_1", wait_timeout=0.05, poll_interval=0.01, raise_on_failure=True
    ),
    "wait_many": _waited_many,
    "wait_many_listed": _waited_many_listed,
    "create_and_wait": lambda v, f: v.create_and_wait(
        "a cat", wait_timeout=0.05, poll_interval=0.01
    ),
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hostile() -> AsyncIterator[HostileApp]:
    app = HostileApp()
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pool() -> AsyncIterator[aiohttp.ClientSession]:
    """One connection pool for every example; each example has a client of its own
    on it, so that nothing one answer taught a client (a rate budget) carries over."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-downloads")


async def check(
    hostile: HostileApp,
    pool: aiohttp.ClientSession,
    folder: Path,
    call: Call,
    served: list[Answer],
) -> None:
    hostile.serve(served)
    async with AsyncVideos(
        api_key=KEY, base_url=hostile.base_url, session=pool, max_retries=1, timeout=10
    ) as videos:
        try:
            await asyncio.wait_for(call(videos, folder), CALL_LIMIT)
        except AsyncVideosError as error:
            failed: AsyncVideosError | None = error
        else:
            failed = None
    # What each example came to (pytest --hypothesis-show-statistics lists them).
    event(type(failed).__name__ if failed is not None else "returned")
    if failed is not None:  # and it can be shown, as an application would
        assert str(failed)
        assert repr(failed)
        assert len(failed.message) <= 2_100


def methods(table: dict[str, Call]) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(table))


@in_module_loop
@HYPOTHESIS
@given(method=methods(READS), served=ANSWER_LISTS)
async def test_reads(
    hostile: HostileApp, pool: aiohttp.ClientSession, folder: Path, method: str, served: Any
) -> None:
    """retrieve, list, list_page, pages, retrieve_character, delete (and raw)."""
    await check(hostile, pool, folder, READS[method], served)


@in_module_loop
@HYPOTHESIS
@given(method=methods(WRITES), served=ANSWER_LISTS)
async def test_writes(
    hostile: HostileApp, pool: aiohttp.ClientSession, folder: Path, method: str, served: Any
) -> None:
    """create, remix, edit, extend, create_character (and raw)."""
    await check(hostile, pool, folder, WRITES[method], served)


@in_module_loop
@HYPOTHESIS
@given(method=methods(CONTENT), served=ANSWER_LISTS)
async def test_content(
    hostile: HostileApp, pool: aiohttp.ClientSession, folder: Path, method: str, served: Any
) -> None:
    """download_content, iter_content, open_content, download (and raw): no file is
    left behind by a download that fails."""
    await check(hostile, pool, folder, CONTENT[method], served)


@in_module_loop
@HYPOTHESIS
@given(method=methods(WAITS), served=ANSWER_LISTS)
async def test_waits(
    hostile: HostileApp, pool: aiohttp.ClientSession, folder: Path, method: str, served: Any
) -> None:
    """wait, wait_many (of ids, and of a listing), create_and_wait."""
    await check(hostile, pool, folder, WAITS[method], served)
