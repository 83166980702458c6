"""Hostile and wrong input is refused before any I/O, or sent exactly as meant.

Ids are the one piece of caller input that lands in a URL path, so they get a
property-based test: any string either fails the argument check (no request is
made) or travels as exactly one percent-encoded path segment that the server
decodes back to the same string. Every other bad argument is in a table: each
raises ``ValueError``/``TypeError`` (``FileExistsError`` for an existing
download target) naming the argument, and the fake records no request.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asyncvideos import AsyncVideos, NotFoundError
from asyncvideos.testing import FakeVideosAPI

# Every async test here shares the module's event loop with the shared fake.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")

# One fake server and one client for the whole module, so hypothesis examples are cheap.


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_api() -> AsyncIterator[FakeVideosAPI]:
    async with FakeVideosAPI(content_sizes={"thumbnail": 64}) as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_client(shared_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    async with shared_api.client(max_retries=0) as videos:
        yield videos


# Every unicode category, including surrogates (Cs): a lone surrogate has no UTF-8
# form, so it cannot be sent in a URL at all and must be refused by the argument
# check rather than blow up in the encoder. Path-significant pieces are mixed in.
_PIECES = st.sampled_from(["/", "?", "#", "%", "%2F", "..", ".", " ", "\\", ";", "&", "=", "+"])
IDS = st.lists(st.one_of(st.text(max_size=12), _PIECES), max_size=6).map("".join)

HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


async def _outcome(call: Awaitable[T]) -> tuple[T | None, Exception | None]:
    """The result or the exception of a call, for asserting outside an except block."""
    try:
        return await call, None
    except Exception as error:
        return None, error


@in_module_loop
@HYPOTHESIS
@given(video_id=IDS)
@example(video_id="a/b")
@example(video_id="../characters/char_1")
@example(video_id="..")
@example(video_id="%2e%2e")
@example(video_id="x?limit=1#frag")
@example(video_id="\ud800")
@example(video_id="\x00")
@example(video_id=" ")
@example(video_id="🎬 ünïcødé")
async def test_any_id_is_refused_or_sent_as_one_segment(
    shared_api: FakeVideosAPI, shared_client: AsyncVideos, video_id: str
) -> None:
    """An id is refused before I/O or reaches exactly /v1/videos/{id} and round-trips."""
    shared_api.clear_requests()
    try:
        stored = shared_api.add_videos({"id": video_id})
    except (UnicodeError, ValueError):
        stored = []  # the fake cannot even hold it; the client must still refuse it
    try:
        video, error = await _outcome(shared_client.retrieve(video_id))
    finally:
        if stored:
            shared_api.remove_video(video_id)
    if error is not None:
        assert isinstance(error, (ValueError, TypeError)), repr(error)
        assert "video" in str(error)
        assert shared_api.requests == []
        return
    assert video is not None
    assert video.id == video_id
    (request,) = shared_api.requests
    assert request.method == "GET"
    assert request.path == "/v1/videos/" + video_id
    segments = request.raw_path.split("/")
    assert segments[:3] == ["", "v1", "videos"]
    assert len(segments) == 4, request.raw_path  # the id is exactly one segment
    assert request.query == {}  # '?' and '#' never start a query or fragment


@in_module_loop
@HYPOTHESIS
@given(video_id=IDS)
async def test_ids_keep_their_route_for_sub_resources(
    shared_api: FakeVideosAPI, shared_client: AsyncVideos, video_id: str
) -> None:
    """``/content`` after any id stays that id's content route (or the id is refused)."""
    shared_api.clear_requests()
    data, error = await _outcome(shared_client.download_content(video_id, variant="thumbnail"))
    if isinstance(error, (ValueError, TypeError)):
        assert "video" in str(error)
        assert shared_api.requests == []
        return
    # No such job: the fake's own 404, from the content route, not "Invalid URL".
    assert isinstance(error, NotFoundError), repr(error)
    assert error.code == "video_not_found"
    assert data is None
    (request,) = shared_api.requests
    segments = request.raw_path.split("/")
    assert len(segments) == 5
    assert segments[4] == "content"
    assert request.path == f"/v1/videos/{video_id}/content"


# -- the table of bad arguments ----------------------------------------------------

Call = Callable[[AsyncVideos, Path], Any]


def _case(call: Call, error: type[BaseException], names: str, id: str) -> Any:
    return pytest.param(call, error, names, id=id)


BAD_CALLS = [
    # ids
    _case(lambda v, p: v.retrieve(123), TypeError, "video", "retrieve-int"),
    _case(lambda v, p: v.retrieve(""), ValueError, "video", "retrieve-empty"),
    _case(lambda v, p: v.retrieve("  "), ValueError, "video", "retrieve-blank"),
    _case(lambda v, p: v.retrieve(".."), ValueError, "video", "retrieve-dotdot"),
    _case(lambda v, p: v.retrieve("a\nb"), ValueError, "video", "retrieve-newline"),
    _case(lambda v, p: v.retrieve("a\ud800"), ValueError, "video", "retrieve-surrogate"),
    _case(lambda v, p: v.delete(object()), TypeError, "video", "delete-object"),
    _case(lambda v, p: v.retrieve_character(""), ValueError, "character_id", "character-empty"),
    _case(lambda v, p: v.retrieve_character(7), TypeError, "character_id", "character-int"),
    # listing
    _case(lambda v, p: v.list_page(limit=0), ValueError, "limit", "list_page-limit-0"),
    _case(lambda v, p: v.list_page(limit=101), ValueError, "limit", "list_page-limit-101"),
    _case(lambda v, p: v.list_page(limit=True), TypeError, "limit", "list_page-limit-bool"),
    _case(lambda v, p: v.list_page(order="sideways"), ValueError, "order", "list_page-order"),
    _case(lambda v, p: v.list_page(order=None), TypeError, "order", "list_page-order-none"),
    _case(lambda v, p: v.list(after=""), ValueError, "after", "list-after-empty"),
    _case(lambda v, p: v.list(after=5), TypeError, "after", "list-after-int"),
    _case(lambda v, p: v.list(all="yes"), TypeError, "all", "list-all-str"),
    _case(lambda v, p: v.pages(limit="10"), TypeError, "limit", "pages-limit-str"),
    # creating
    _case(lambda v, p: v.create(""), ValueError, "prompt", "create-empty-prompt"),
    _case(lambda v, p: v.create(None), TypeError, "prompt", "create-none-prompt"),
    _case(lambda v, p: v.create("x" * 32_001), ValueError, "prompt", "create-long-prompt"),
    _case(lambda v, p: v.create("p", seconds=0), ValueError, "seconds", "create-seconds-0"),
    _case(lambda v, p: v.create("p", seconds=True), TypeError, "seconds", "create-seconds-bool"),
    _case(lambda v, p: v.create("p", seconds="4.5"), ValueError, "seconds", "create-seconds-str"),
    _case(lambda v, p: v.create("p", size="big"), ValueError, "size", "create-size"),
    _case(lambda v, p: v.create("p", model=""), ValueError, "model", "create-model-empty"),
    _case(
        lambda v, p: v.create("p", input_reference=p / "missing.png"),
        ValueError,
        "input_reference",
        "create-missing-file",
    ),
    _case(
        lambda v, p: v.create("p", input_reference=b""),
        ValueError,
        "input_reference",
        "create-empty-bytes",
    ),
    _case(
        lambda v, p: v.create("p", input_reference={"url": "x"}),
        ValueError,
        "input_reference",
        "create-reference-key",
    ),
    _case(
        lambda v, p: v.create("p", input_reference=3.5),
        TypeError,
        "input_reference",
        "create-reference-float",
    ),
    _case(
        lambda v, p: v.create("p", idempotency_key=""),
        ValueError,
        "idempotency_key",
        "create-idempotency-empty",
    ),
    _case(lambda v, p: v.remix("vid", ""), ValueError, "prompt", "remix-empty-prompt"),
    _case(lambda v, p: v.remix(None, "p"), TypeError, "video", "remix-none-video"),
    _case(lambda v, p: v.edit(12, "p"), TypeError, "video", "edit-int-video"),
    _case(lambda v, p: v.extend("vid", "p", -1), ValueError, "seconds", "extend-seconds"),
    _case(lambda v, p: v.create_character("", b"v"), ValueError, "name", "character-name"),
    _case(lambda v, p: v.create_character("n" * 81, b"v"), ValueError, "name", "character-long"),
    _case(lambda v, p: v.create_character("n", 123), TypeError, "video", "character-video"),
    # content
    _case(
        lambda v, p: v.download_content("vid", variant="gif"),
        ValueError,
        "variant",
        "content-variant",
    ),
    _case(lambda v, p: v.iter_content("vid", chunk_size=0), ValueError, "chunk_size", "iter-chunk"),
    _case(lambda v, p: v.open_content("vid", variant="hd"), ValueError, "variant", "open-variant"),
    _case(lambda v, p: v.download("vid", 123), TypeError, "path", "download-path-int"),
    _case(lambda v, p: v.download("vid", ""), ValueError, "path", "download-path-empty"),
    _case(lambda v, p: v.download("vid", p), ValueError, "path", "download-path-dir"),
    _case(
        lambda v, p: v.download("vid", p / "exists.mp4"),
        FileExistsError,
        "overwrite",
        "download-exists",
    ),
    _case(
        lambda v, p: v.download("vid", p / "x.mp4", overwrite="yes"),
        TypeError,
        "overwrite",
        "download-overwrite",
    ),
    _case(
        lambda v, p: v.download("vid", p / "x.mp4", on_progress=5),
        TypeError,
        "on_progress",
        "download-progress",
    ),
    # waiting
    _case(lambda v, p: v.wait("vid", timeout=0), ValueError, "timeout", "wait-timeout-0"),
    _case(
        lambda v, p: v.wait("vid", poll_interval=-1),
        ValueError,
        "poll_interval",
        "wait-poll-interval",
    ),
    _case(
        lambda v, p: v.wait("vid", waiting_statuses="queued"),
        TypeError,
        "waiting_statuses",
        "wait-statuses-str",
    ),
    _case(
        lambda v, p: v.wait("vid", waiting_statuses=[]),
        ValueError,
        "waiting_statuses",
        "wait-statuses-empty",
    ),
    _case(
        lambda v, p: v.wait("vid", request_timeout=-1),
        ValueError,
        "request_timeout",
        "wait-request-timeout",
    ),
    _case(
        lambda v, p: v.create_and_wait("p", request_timeout=0),
        ValueError,
        "request_timeout",
        "create-and-wait-request-timeout",
    ),
    _case(lambda v, p: v.wait_many("vid"), TypeError, "videos", "wait_many-str"),
    _case(lambda v, p: v.wait_many(["ok", ""]), ValueError, "videos[]", "wait_many-empty-id"),
    _case(
        lambda v, p: v.wait_many(["a"], concurrency=0),
        ValueError,
        "concurrency",
        "wait_many-concurrency",
    ),
    # per-call options
    _case(lambda v, p: v.retrieve("vid", timeout=0), ValueError, "timeout", "timeout-0"),
    _case(lambda v, p: v.retrieve("vid", timeout=-1), ValueError, "timeout", "timeout-negative"),
    _case(
        lambda v, p: v.retrieve("vid", timeout=float("nan")), ValueError, "timeout", "timeout-nan"
    ),
    _case(
        lambda v, p: v.retrieve("vid", timeout=float("inf")), ValueError, "timeout", "timeout-inf"
    ),
    _case(lambda v, p: v.retrieve("vid", timeout="5"), TypeError, "timeout", "timeout-str"),
    _case(
        lambda v, p: v.retrieve("vid", timeout=aiohttp.ClientTimeout(total=0)),
        ValueError,
        "timeout.total",
        "timeout-client-timeout",
    ),
    _case(
        lambda v, p: v.retrieve("vid", max_retries=101),
        ValueError,
        "max_retries",
        "max-retries-101",
    ),
    _case(
        lambda v, p: v.retrieve("vid", max_retries=-1),
        ValueError,
        "max_retries",
        "max-retries-negative",
    ),
    _case(
        lambda v, p: v.retrieve("vid", max_retries=True),
        TypeError,
        "max_retries",
        "max-retries-bool",
    ),
    _case(
        lambda v, p: v.retrieve("vid", extra_headers={1: 2}),
        TypeError,
        "extra_headers",
        "headers-int",
    ),
    _case(
        lambda v, p: v.retrieve("vid", extra_headers=[("a", "b")]),
        TypeError,
        "extra_headers",
        "headers-list",
    ),
    _case(
        lambda v, p: v.retrieve("vid", extra_headers={"X-A": "a\r\nX-Injected: 1"}),
        ValueError,
        "extra_headers",
        "headers-crlf-injection",
    ),
    _case(
        lambda v, p: v.retrieve("vid", extra_headers={"Bad Name:": "a"}),
        ValueError,
        "extra_headers",
        "headers-bad-name",
    ),
    _case(
        lambda v, p: v.list_page(extra_query={"a": 1}),
        TypeError,
        "extra_query",
        "query-int-value",
    ),
]


async def _run(result: Any) -> None:
    """Await a coroutine, or take the first item of an async iterator."""
    if inspect.isawaitable(result):
        await result
    elif hasattr(result, "__anext__"):
        await result.__anext__()


@pytest_asyncio.fixture(loop_scope="module")
async def table_api() -> AsyncIterator[FakeVideosAPI]:
    async with FakeVideosAPI() as fake:
        yield fake


@in_module_loop
@pytest.mark.parametrize(("call", "error", "names"), BAD_CALLS)
async def test_bad_argument_raises_naming_it_before_any_request(
    table_api: FakeVideosAPI, tmp_path: Path, call: Call, error: type[BaseException], names: str
) -> None:
    """Each bad argument raises the right error, naming the argument; nothing is sent."""
    (tmp_path / "exists.mp4").write_bytes(b"old")
    async with table_api.client() as videos:
        with pytest.raises(error) as caught:
            await _run(call(videos, tmp_path))
    assert names in str(caught.value)
    assert table_api.requests == []
    assert (tmp_path / "exists.mp4").read_bytes() == b"old"


def test_the_table_is_broad() -> None:
    """At least 30 cases, over every public method that takes arguments."""
    assert len(BAD_CALLS) >= 30
    public = {
        name
        for name, member in inspect.getmembers(AsyncVideos)
        if not name.startswith("_") and inspect.isfunction(member) and name != "close"
    }
    covered = {
        match
        for param in BAD_CALLS
        for match in re.findall(r"v\.(\w+)\(", inspect.getsource(param.values[0]))
    }
    assert public <= covered, sorted(public - covered)


# -- constructor arguments ------------------------------------------------------------

BAD_CONSTRUCTORS = [
    pytest.param({"base_url": "/v1"}, ValueError, "base_url", id="relative-base-url"),
    pytest.param({"base_url": "ftp://example.com/v1"}, ValueError, "base_url", id="ftp-base-url"),
    pytest.param({"base_url": "http://x/v1?a=1"}, ValueError, "base_url", id="base-url-query"),
    pytest.param({"base_url": 5}, TypeError, "base_url", id="base-url-int"),
    pytest.param({"max_retries": -1}, ValueError, "max_retries", id="max-retries-negative"),
    pytest.param({"max_retries": 101}, ValueError, "max_retries", id="max-retries-101"),
    pytest.param({"max_retries": 2.0}, TypeError, "max_retries", id="max-retries-float"),
    pytest.param({"timeout": -1}, ValueError, "timeout", id="timeout-negative"),
    pytest.param({"timeout": 0}, ValueError, "timeout", id="timeout-zero"),
    pytest.param({"timeout": "slow"}, TypeError, "timeout", id="timeout-str"),
    pytest.param({"api_key": ""}, ValueError, "api_key", id="api-key-empty"),
    pytest.param({"api_key": 123}, TypeError, "api_key", id="api-key-int"),
    pytest.param({"auth_scheme": "basic"}, ValueError, "auth_scheme", id="auth-scheme"),
    pytest.param({"organization": 1}, TypeError, "organization", id="organization-int"),
    pytest.param({"session": object()}, TypeError, "session", id="session-object"),
    pytest.param({"max_connections": 0}, ValueError, "max_connections", id="max-connections"),
    pytest.param(
        {"default_headers": {"X": "a\nb"}}, ValueError, "default_headers", id="default-headers"
    ),
    pytest.param({"default_query": {"a": None}}, TypeError, "default_query", id="default-query"),
]


@in_module_loop
@pytest.mark.parametrize(("kwargs", "error", "names"), BAD_CONSTRUCTORS)
async def test_bad_constructor_argument_names_it(
    kwargs: dict[str, Any], error: type[BaseException], names: str
) -> None:
    """Each bad constructor argument raises naming it."""
    arguments: dict[str, Any] = {"api_key": "sk-test-123456789", "base_url": "http://127.0.0.1/v1"}
    arguments.update(kwargs)
    with pytest.raises(error) as caught:
        AsyncVideos(**arguments)
    assert names in str(caught.value)


@in_module_loop
async def test_no_key_anywhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without api_key= and with OPENAI_API_KEY unset, construction fails naming both."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key") as caught:
        AsyncVideos(base_url="http://127.0.0.1/v1")
    assert "OPENAI_API_KEY" in str(caught.value)


@in_module_loop
async def test_an_api_key_callable_returning_junk_fails_before_sending(
    table_api: FakeVideosAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """A key provider that returns a non-string raises TypeError; nothing is sent."""
    caplog.set_level(logging.DEBUG)
    async with AsyncVideos(api_key=lambda: None, base_url=table_api.base_url) as videos:  # type: ignore[arg-type, return-value]
        with pytest.raises(TypeError, match="api_key"):
            await videos.retrieve("vid")
    assert table_api.requests == []
