"""Server input never escapes as a bare exception: each case a hostile server can send.

Every answer a server gives ends in a result or in an ``AsyncVideosError``
subclass, never in a ``ValueError``, ``UnicodeError`` or ``RecursionError`` from
yarl, the JSON reader or an argument check: redirect targets that cannot be
followed, JSON nested thousands of levels deep, and ids (of a job just paid for,
or read from a listing) that cannot be put in a path. The property test over
every public method is ``tests/test_hostile_server.py``; each bare exception it
found has its named test here.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from asyncvideos import (
    APIResponseValidationError,
    AsyncVideos,
    AsyncVideosError,
    PaginationError,
    RedirectError,
    WebhookVerificationError,
)
from asyncvideos.testing import sign_webhook
from asyncvideos.webhooks import verify_webhook

KEY = "sk-typed-errors-0123456789"
T = TypeVar("T")


class RawServer:
    """Answers every request with the same raw bytes (a status line and headers that
    no ``aiohttp.web`` app would send), and counts the requests."""

    def __init__(self) -> None:
        self.answer = b""
        self.requests: list[bytes] = []
        self._server: asyncio.AbstractServer | None = None
        self.origin = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.origin = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.origin

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head.split(b"\r\n", 1)[0])
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    server = RawServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _download(videos: AsyncVideos, folder: Path) -> object:
    return await videos.download("video_1", folder / "video.mp4")


async def _iter_content(videos: AsyncVideos, folder: Path) -> object:
    return [chunk async for chunk in videos.iter_content("video_1")]


async def _retrieve(videos: AsyncVideos, folder: Path) -> object:
    return await videos.retrieve("video_1")


async def _download_content(videos: AsyncVideos, folder: Path) -> object:
    return await videos.download_content("video_1")


CALLS: dict[str, Callable[[AsyncVideos, Path], Awaitable[object]]] = {
    "retrieve": _retrieve,
    "download_content": _download_content,
    "iter_content": _iter_content,
    "download": _download,
}


class TestRedirectTargets:
    """A ``Location`` that cannot (or must not) be followed is a ``RedirectError``."""

    @pytest.mark.parametrize("call", CALLS)
    @pytest.mark.parametrize(
        "location",
        [
            b"http://user:secret@{host}/v1/videos/elsewhere",
            b"//user@{host}/v1/videos/elsewhere",
            b"http://:@{host}/v1/videos/elsewhere",
            b"http://127.0.0.1:99999/v1/videos/elsewhere",
            b"http://127.0.0.1:abc/v1/videos/elsewhere",
            b"http://127.0.0.1:0/v1/videos/elsewhere",
            b"http://xn--a.example/blob",
            b"http://xn--zz-bad--.example/blob",
            b"http://\xff\xfe.example/blob",
            b"/v1/videos/\xff\xfe/content",
            b"http://exa mple.example/blob",
            b"http://%zz.example/blob",
            b"http://[::1/blob",
            b"http://" + b"a" * 250 + b"!/blob",
        ],
        ids=[
            "userinfo",
            "userinfo-scheme-relative",
            "empty-userinfo",
            "port-99999",
            "port-abc",
            "port-0",
            "idna-that-does-not-decode",
            "idna-that-does-not-round-trip",
            "non-utf8-host-bytes",
            "non-utf8-path-bytes",
            "space-in-host",
            "percent-in-host",
            "unclosed-ipv6",
            "long-host-that-is-no-name",  # read at once: no backtracking over its labels
        ],
    )
    async def test_a_location_that_cannot_be_followed(
        self, raw: RawServer, tmp_path: Path, location: bytes, call: str
    ) -> None:
        """On the API and on content (which may leave the origin) alike: refused, with
        nothing sent anywhere else, and no file left behind."""
        host = raw.origin.removeprefix("http://").encode()
        target = location.replace(b"{host}", host)
        raw.answer = b"HTTP/1.1 302 Found\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n"
        async with AsyncVideos(api_key=KEY, base_url=raw.origin + "/v1", max_retries=2) as videos:
            with pytest.raises(RedirectError) as caught:
                await CALLS[call](videos, tmp_path)
        assert caught.value.status_code == 302
        assert caught.value.retries == 0  # a refused redirect is not retried
        assert len(raw.requests) == 1  # the target was never asked, the key never sent there
        assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a few entries at most
        assert "secret" not in str(caught.value)

    async def test_the_same_origin_with_userinfo_is_not_followed_with_the_key(
        self, raw: RawServer
    ) -> None:
        """aiohttp would send ``Authorization: Basic`` from the URL, or refuse with a bare
        ``ValueError``: the client refuses first, naming only the origin."""
        host = raw.origin.removeprefix("http://").encode()
        raw.answer = (
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://admin:hunter2@"
            + host
            + b"/v1/videos/video_2\r\nContent-Length: 0\r\n\r\n"
        )
        async with AsyncVideos(
            api_key=KEY, base_url=raw.origin + "/v1", auth_scheme="api-key"
        ) as videos:
            with pytest.raises(RedirectError, match="credentials in its URL") as caught:
                await videos.retrieve("video_1")
        assert raw.origin in str(caught.value)
        assert "hunter2" not in str(caught.value)
        assert "admin" not in str(caught.value)
        assert raw.requests == [b"GET /v1/videos/video_1 HTTP/1.1"]


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


DEPTHS = [600, 990, 5_000, 100_000]


class TestDeepJson:
    """JSON nested far deeper than any answer: a typed error, never a RecursionError."""

    @pytest.fixture
    async def deep(self) -> AsyncIterator[Callable[[int, str, int], Awaitable[AsyncVideos]]]:
        runners: list[web.AppRunner] = []
        clients: list[AsyncVideos] = []

        async def serve(status: int, body: str, depth: int) -> AsyncVideos:
            async def answer(request: web.Request) -> web.Response:
                return web.Response(status=status, text=body, content_type="application/json")

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", answer)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
            clients.append(AsyncVideos(api_key=KEY, base_url=base, max_retries=0))
            return clients[-1]

        yield serve
        for videos in clients:
            await videos.close()
        for runner in runners:
            await runner.cleanup()

    @pytest.mark.parametrize("depth", DEPTHS)
    @pytest.mark.parametrize(
        ("status", "template"),
        [
            (500, '{"error": {"message": "failed", "details": %s}}'),
            (400, '{"error": %s}'),
            (503, "%s"),
        ],
        ids=["inside-an-error", "as-the-error", "as-the-body"],
    )
    async def test_in_an_error_body(
        self, deep: Any, depth: int, status: int, template: str
    ) -> None:
        videos = await deep(status, template % nested(depth), depth)
        with pytest.raises(AsyncVideosError) as caught:
            await videos.retrieve("video_1")
        assert getattr(caught.value, "status_code", None) == status
        assert_usable(caught.value)

    @pytest.mark.parametrize("depth", DEPTHS)
    @pytest.mark.parametrize(
        "template",
        [
            '{"id": "video_1", "progress": %s}',
            '{"id": "video_1", "created_at": %s}',
            '{"id": "video_1", "error": {"code": %s}}',
            '{"id": %s}',
            "%s",
        ],
        ids=["progress", "created_at", "error-code", "id", "whole-body"],
    )
    async def test_in_a_2xx_of_the_wrong_shape(self, deep: Any, depth: int, template: str) -> None:
        videos = await deep(200, template % nested(depth), depth)
        with pytest.raises(APIResponseValidationError) as caught:
            await videos.retrieve("video_1")
        assert_usable(caught.value)

    @pytest.mark.parametrize("depth", DEPTHS)
    async def test_in_a_page(self, deep: Any, depth: int) -> None:
        body = '{"object": "list", "data": [{"id": "v", "progress": %s}], "has_more": false}'
        videos = await deep(200, body % nested(depth), depth)
        with pytest.raises(APIResponseValidationError) as caught:
            await videos.list_page()
        assert_usable(caught.value)

    @pytest.mark.parametrize("depth", DEPTHS)
    async def test_unknown_fields_nested_deep_are_kept_out_of_the_way(
        self, deep: Any, depth: int
    ) -> None:
        """A field the model does not know may be anything: the job is still read (or,
        past what JSON can be parsed to, a typed error)."""
        videos = await deep(200, f'{{"id": "video_1", "extra": {nested(depth)}}}', depth)
        try:
            video = await videos.retrieve("video_1")
        except APIResponseValidationError as error:
            assert_usable(error)
        else:
            assert video.id == "video_1"
            assert repr(video)


class TestDeepWebhooks:
    """The webhook verifier reads bodies from whoever posts them: deep ones too."""

    SECRET = "whsec_" + base64.b64encode(b"typed-errors-webhook-secret").decode()

    @pytest.mark.parametrize("depth", DEPTHS)
    @pytest.mark.parametrize(
        "template",
        [
            "%s",
            '{"id": "evt_1", "type": %s, "created_at": 1760000000}',
            '{"id": "evt_1", "type": "video.completed", "created_at": 1760000000, "data": %s}',
        ],
        ids=["whole-body", "type", "data"],
    )
    def test_a_signed_deep_body_is_a_verification_error(self, depth: int, template: str) -> None:
        secret = self.SECRET
        body = (template % nested(depth)).encode()
        headers = sign_webhook(body, secret, webhook_id="msg_1", timestamp=1760000000)
        with pytest.raises(WebhookVerificationError) as caught:
            verify_webhook(body, headers, secret, tolerance=10**10)
        assert_usable(caught.value)

    @pytest.mark.parametrize("depth", DEPTHS)
    def test_deep_data_beside_a_valid_event(self, depth: int) -> None:
        secret = self.SECRET
        data = f'{{"id": "video_1", "extra": {nested(depth)}}}'
        body = f'{{"id": "evt_1", "type": "x", "created_at": 1760000000, "data": {data}}}'.encode()
        headers = sign_webhook(body, secret, webhook_id="msg_1", timestamp=1760000000)
        try:
            event = verify_webhook(body, headers, secret, tolerance=10**10)
        except WebhookVerificationError as error:
            assert_usable(error)  # past what JSON can be parsed to
        else:
            assert event.video_id == "video_1"


def assert_usable(error: AsyncVideosError) -> None:
    """What an application does with an error works: print it, log its attributes,
    format its traceback (a body kept too deep to repr would break each)."""
    assert str(error)
    assert repr(error)
    repr(vars(error))
    json.dumps(getattr(error, "body", None), default=str)
    assert len(error.message) <= 2_100


BAD_IDS = ["..", ".", "", " ", "a\r\nb", "a\nb", "a/../b\x00", "\ud800", "characters"]
BAD_ID_NAMES = [
    "dotdot",
    "dot",
    "empty",
    "blank",
    "crlf",
    "lf",
    "nul",
    "lone-surrogate",
    "a-collection",
]


class IdServer:
    """Answers every POST with a new job whose id is ``new_id``, every GET of the
    listing with one page holding such a job, and anything else with a 404."""

    def __init__(self) -> None:
        self.new_id: object = "video_new"
        self.seen: list[str] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def job(self) -> dict[str, object]:
        return {"id": self.new_id, "object": "video", "status": "queued", "model": "sora-2"}

    async def _answer(self, request: web.Request) -> web.Response:
        self.seen.append(f"{request.method} {request.path}")
        if request.method == "POST":
            return web.json_response(self.job())
        if request.path == "/v1/videos":
            page = {"object": "list", "data": [self.job()], "has_more": True}
            return web.json_response({**page, "last_id": self.new_id})
        return web.json_response({"error": {"message": "no such job"}}, status=404)


@pytest.fixture
async def ids() -> AsyncIterator[IdServer]:
    server = IdServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _create_and_wait(videos: AsyncVideos) -> object:
    return await videos.create_and_wait("a cat", wait_timeout=5)


async def _create(videos: AsyncVideos) -> object:
    return await videos.create("a cat")


async def _remix(videos: AsyncVideos) -> object:
    return await videos.remix("video_1", "a dog")


async def _edit(videos: AsyncVideos) -> object:
    return await videos.edit("video_1", "a dog")


async def _extend(videos: AsyncVideos) -> object:
    return await videos.extend(b"\0" * 64, "a dog", 4)


CREATES = {
    "create_and_wait": _create_and_wait,
    "create": _create,
    "remix": _remix,
    "edit": _edit,
    "extend": _extend,
}


class TestNewIds:
    """The id of a job just created (and paid for) is checked before anything uses it."""

    @pytest.mark.parametrize("method", CREATES)
    @pytest.mark.parametrize("bad_id", BAD_IDS, ids=BAD_ID_NAMES)
    async def test_an_unusable_new_id_is_a_validation_error_with_the_body(
        self, ids: IdServer, bad_id: str, method: str
    ) -> None:
        """Not the caller-argument ``ValueError`` it was: the error carries what the
        server returned and the ``Idempotency-Key`` to reconcile the job, and no
        request follows the POST."""
        ids.new_id = bad_id
        async with AsyncVideos(api_key=KEY, base_url=ids.base_url) as videos:
            with pytest.raises(
                APIResponseValidationError, match="cannot be used in a URL path"
            ) as caught:
                await CREATES[method](videos)
        assert len(ids.seen) == 1
        assert ids.seen[0].startswith("POST ")
        assert caught.value.body == ids.job()
        assert caught.value.idempotency_key is not None

    @pytest.mark.parametrize("bad_id", [42, None, ["video_1"], {"id": "x"}], ids=str)
    async def test_a_new_id_that_is_not_a_string(self, ids: IdServer, bad_id: object) -> None:
        ids.new_id = bad_id
        async with AsyncVideos(api_key=KEY, base_url=ids.base_url) as videos:
            with pytest.raises(APIResponseValidationError, match="no string 'id'") as caught:
                await videos.create_and_wait("a cat", wait_timeout=5)
        assert ids.seen == ["POST /v1/videos"]
        assert caught.value.body == ids.job()


class TestListedIds:
    """Ids read from a listing, when the library itself puts them in a URL."""

    @pytest.mark.parametrize("bad_id", BAD_IDS, ids=BAD_ID_NAMES)
    async def test_wait_many_reports_a_listed_job_it_cannot_poll(
        self, ids: IdServer, bad_id: str
    ) -> None:
        """``wait_many(videos.list())``: that job's result is the error; nothing is sent
        for it, and a listing's other jobs would go on."""
        ids.new_id = bad_id
        async with AsyncVideos(api_key=KEY, base_url=ids.base_url) as videos:
            listed = await videos.list_page()
            results = [result async for result in videos.wait_many(listed.data, wait_timeout=5)]
            streamed = [r async for r in videos.wait_many(_aiter(listed.data), wait_timeout=5)]
        for result in (*results, *streamed):
            assert not result.ok
            assert isinstance(result.error, APIResponseValidationError)
            assert result.video_id == bad_id
        assert ids.seen == ["GET /v1/videos"]

    @pytest.mark.parametrize("bad_id", BAD_IDS, ids=BAD_ID_NAMES)
    async def test_a_listed_job_passed_back_is_refused_before_any_request(
        self, ids: IdServer, bad_id: str, tmp_path: Path
    ) -> None:
        ids.new_id = bad_id
        async with AsyncVideos(api_key=KEY, base_url=ids.base_url) as videos:
            (job,) = (await videos.list_page()).data
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: videos.retrieve(job),
                lambda: videos.delete(job),
                lambda: videos.wait(job, wait_timeout=5),
                lambda: videos.download_content(job),
                lambda: videos.download(job, tmp_path / "v.mp4"),
                lambda: videos.remix(job, "again"),
                lambda: videos.edit(job, "again"),
                lambda: videos.extend(job, "again", 4),
            ]
            for call in calls:
                with pytest.raises(APIResponseValidationError, match="cannot be used in a URL"):
                    await call()
            with pytest.raises(APIResponseValidationError):
                [chunk async for chunk in videos.iter_content(job)]
        assert ids.seen == ["GET /v1/videos"]
        assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a few entries at most

    async def test_a_cursor_that_cannot_be_sent_back(self, ids: IdServer) -> None:
        """A ``last_id`` with a lone surrogate: a ``PaginationError`` (it was a bare
        ``UnicodeEncodeError`` when the next page was asked for)."""
        ids.new_id = "video_\ud800"
        async with AsyncVideos(api_key=KEY, base_url=ids.base_url) as videos:
            with pytest.raises(PaginationError, match="cannot be sent back") as caught:
                [video async for video in videos.list(all=True)]
        assert caught.value.resume_after is None
        assert ids.seen == ["GET /v1/videos"]

    async def test_the_callers_own_cursor_is_checked_the_same_way(self) -> None:
        async with AsyncVideos(api_key=KEY, base_url="http://127.0.0.1:9/v1") as videos:
            with pytest.raises(ValueError, match="after must be valid Unicode"):
                await videos.list_page(after="x\ud800")


async def _aiter(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
