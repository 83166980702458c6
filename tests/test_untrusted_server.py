"""The guarantees hold against a hostile server: each test runs one on loopback.

Redirects never carry credentials to another origin (nor from https to http);
memory stays bounded whatever a body holds or a header claims; a listing
cannot spin; the key is in no error, cause or message; a server cannot force
instant retries; and the client refuses, clearly, to hop event loops.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import logging
import ssl
import subprocess
import sys
import textwrap
import time
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conditions import until

from asyncvideos import (
    APIResponseValidationError,
    AsyncVideos,
    AsyncVideosError,
    InternalServerError,
    PaginationError,
    QuotaExceededError,
    RedirectError,
    ResponseTooLargeError,
)
from asyncvideos._retry import MIN_WAIT, RetryDetails, retry_waits_enabled

KEY = "sk-untrusted-CANARY-0123456789abcdef"
ORG, PROJECT = "org-CANARY-org", "proj-CANARY-project"
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
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """A hostile ``aiohttp.web`` app on loopback that records what reaches it."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.runner: web.AppRunner | None = None
        self.origin = ""

    def route(self, method: str, path: str, handler: Handler) -> None:
        async def recorded(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.method, request.raw_path, dict(request.headers)))
            return await handler(request)

        self.app.router.add_route(method, path, recorded)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = self.runner.addresses[0][1]
        scheme = "https" if ssl_context else "http"
        self.origin = f"{scheme}://127.0.0.1:{port}"
        return self.origin

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def servers() -> AsyncIterator[Callable[[], Server]]:
    """Makes hostile servers; every one is stopped at the end of the test."""
    made: list[Server] = []

    def make() -> Server:
        made.append(Server())
        return made[-1]

    yield make
    for server in made:
        await server.stop()


def client(base_url: str, **kwargs: object) -> AsyncVideos:
    settings: dict[str, object] = {
        "api_key": KEY,
        "base_url": base_url + "/v1",
        "organization": ORG,
        "project": PROJECT,
        "default_headers": {"X-Tenant": "CANARY-tenant"},
    }
    settings.update(kwargs)
    return AsyncVideos(**settings)  # type: ignore[arg-type]


def error_texts(error: BaseException) -> list[str]:
    """Every text an error can show: message, repr, args, body, the cause chain, traceback."""
    texts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current), repr(current.args)]
        texts.append(repr(getattr(current, "body", None)))
        texts.append(repr(getattr(current, "headers", None)))
        texts.append(repr(getattr(current, "request_info", None)))
        current = current.__cause__ or current.__context__
    return texts


def assert_no_key(error: BaseException) -> None:
    for text in error_texts(error):
        assert KEY not in text
        assert KEY[10:30] not in text


def json_response(data: object, **kwargs: object) -> web.Response:
    return web.json_response(data, **kwargs)  # type: ignore[arg-type]


class TestRedirects:
    """Credentials never follow a redirect to another origin."""

    async def test_same_origin_redirect_is_followed_with_the_same_headers(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound("/v1/videos/video_1/real")

        async def real(request: web.Request) -> web.Response:
            return json_response(JOB)

        api.route("GET", "/v1/videos/video_1", moved)
        api.route("GET", "/v1/videos/video_1/real", real)
        async with client(await api.start()) as videos:
            video = await videos.retrieve("video_1")
        assert video.id == "video_1"
        paths = [path for _, path, _ in api.seen]
        assert paths == ["/v1/videos/video_1", "/v1/videos/video_1/real"]
        assert api.seen[1][2]["Authorization"] == f"Bearer {KEY}"
        assert api.seen[1][2]["OpenAI-Organization"] == ORG

    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    async def test_api_call_redirected_elsewhere_is_refused(
        self, servers: Callable[[], Server], status: int
    ) -> None:
        """A retrieve sent to another origin stops there: nothing reaches that origin."""
        api, other = servers(), servers()
        elsewhere = ""

        async def moved(request: web.Request) -> web.Response:
            return web.Response(
                status=status, headers={"Location": f"{elsewhere}/steal?sig=SECRETSIG"}
            )

        other.route("GET", "/steal", moved)
        api.route("GET", "/v1/videos/video_1", moved)
        elsewhere = await other.start()
        async with client(await api.start()) as videos:
            with pytest.raises(RedirectError) as caught:
                await videos.retrieve("video_1")
        assert other.seen == []
        assert elsewhere in str(caught.value)
        assert "SECRETSIG" not in str(caught.value)
        assert caught.value.status_code == status
        assert_no_key(caught.value)

    @pytest.mark.parametrize("auth_scheme", ["bearer", "api-key"])
    async def test_content_follows_to_another_origin_without_credentials(
        self, servers: Callable[[], Server], auth_scheme: str
    ) -> None:
        """A gateway's 302 to a signed CDN URL is followed, with no identity headers."""
        api, cdn = servers(), servers()
        body = bytes(range(256)) * 64

        async def to_cdn(request: web.Request) -> web.Response:
            location = f"{cdn.origin}/blob?sig=abc%2Fdef"
            return web.Response(status=302, headers={"Location": location})

        async def blob(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="video/mp4")

        api.route("GET", "/v1/videos/video_1/content", to_cdn)
        cdn.route("GET", "/blob", blob)
        await cdn.start()
        async with client(await api.start(), auth_scheme=auth_scheme) as videos:
            got = await videos.download_content(
                "video_1", extra_headers={"X-Extra": "CANARY-extra"}
            )
            streamed = b"".join([chunk async for chunk in videos.iter_content("video_1")])
        assert got == body
        assert streamed == body
        assert len(cdn.seen) == 2
        for _, path_qs, headers in cdn.seen:
            assert path_qs == "/blob?sig=abc%2Fdef"  # the signature arrives byte for byte
            lowered = {name.lower(): value for name, value in headers.items()}
            for name in ("authorization", "api-key", "openai-organization", "openai-project"):
                assert name not in lowered
            assert "x-tenant" not in lowered
            assert "x-extra" not in lowered
            assert not any("CANARY" in value for value in headers.values())

    async def test_post_redirect_is_not_followed(self, servers: Callable[[], Server]) -> None:
        """A paid POST is never re-sent to wherever a redirect points."""
        api = servers()

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect("/v1/videos2")

        api.route("POST", "/v1/videos", moved)
        api.route("POST", "/v1/videos2", moved)
        async with client(await api.start()) as videos:
            with pytest.raises(RedirectError):
                await videos.create("a cat")
        assert [method for method, _, _ in api.seen] == ["POST"]

    async def test_redirect_loop_ends_with_a_clean_error(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def loop(request: web.Request) -> web.Response:
            raise web.HTTPFound("/v1/videos/video_1")

        api.route("GET", "/v1/videos/video_1", loop)
        async with client(await api.start()) as videos:
            with pytest.raises(RedirectError, match="more than 5 redirects") as caught:
                await videos.retrieve("video_1", max_retries=3)
        assert len(api.seen) == 6  # not retried: another try would loop the same way
        assert_no_key(caught.value)

    async def test_a_redirect_without_location_is_refused(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def nowhere(request: web.Request) -> web.Response:
            return web.Response(status=302)

        api.route("GET", "/v1/videos/video_1", nowhere)
        async with client(await api.start()) as videos:
            with pytest.raises(RedirectError, match="without a usable Location"):
                await videos.retrieve("video_1")

    async def test_https_to_http_is_never_followed(
        self, servers: Callable[[], Server], self_signed: tuple[Path, Path]
    ) -> None:
        """Not even for content: the key (or the signed URL) would travel in clear text."""
        cert, key = self_signed
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        api, plain = servers(), servers()
        plain_origin = await plain.start()

        async def downgrade(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{plain_origin}/blob")

        api.route("GET", "/v1/videos/video_1/content", downgrade)
        api.route("GET", "/v1/videos/video_1", downgrade)
        base = await api.start(tls)
        trust = ssl.create_default_context(cafile=str(cert))
        connector = aiohttp.TCPConnector(ssl=trust)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            client(base, session=session) as videos,
        ):
            with pytest.raises(RedirectError, match="from https to plain http"):
                await videos.download_content("video_1")
            with pytest.raises(RedirectError, match="from https to plain http"):
                await videos.retrieve("video_1")
        assert plain.seen == []


class TestBoundedMemory:
    """Bodies are read within a limit counted after decompression."""

    async def test_endless_json_body_is_cut_at_the_limit(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def endless(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"id": "video_1", "pad": "')
            for _ in range(10_000):  # bounded, for the test's sake: 640 MB if all were read
                await response.write(b"x" * 65536)
            return response

        api.route("GET", "/v1/videos/video_1", endless)
        async with client(await api.start(), max_response_bytes=1_000_000) as videos:
            with pytest.raises(ResponseTooLargeError, match="max_response_bytes=1000000"):
                await asyncio.wait_for(videos.retrieve("video_1", max_retries=0), 30)

    async def test_gzip_bomb_is_cut_at_the_limit(self, servers: Callable[[], Server]) -> None:
        api = servers()
        bomb = gzip.compress(b'{"id": "video_1", "pad": "' + b" " * 50_000_000, 9)

        async def compressed(request: web.Request) -> web.Response:
            return web.Response(
                body=bomb,
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )

        api.route("GET", "/v1/videos/video_1", compressed)
        async with client(await api.start(), max_response_bytes=1_000_000) as videos:
            with pytest.raises(ResponseTooLargeError):
                await videos.retrieve("video_1", max_retries=0)

    async def test_a_declared_length_over_the_limit_fails_before_reading(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def big(request: web.Request) -> web.Response:
            return web.Response(body=b"[" + b" " * 5000 + b"]", content_type="application/json")

        api.route("GET", "/v1/videos", big)
        async with client(await api.start(), max_response_bytes=4096) as videos:
            with pytest.raises(ResponseTooLargeError, match="5002 bytes"):
                await videos.list_page()

    @pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
    async def test_compressed_bodies_within_the_limit_are_read(
        self, servers: Callable[[], Server], encoding: str
    ) -> None:
        api = servers()
        data = json.dumps(JOB).encode()
        if encoding == "gzip":
            body = gzip.compress(data) + gzip.compress(b"")  # two members
        elif encoding == "deflate":
            body = zlib.compress(data)
        else:
            squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = squeeze.compress(data) + squeeze.flush()

        async def compressed(request: web.Request) -> web.Response:
            name = "deflate" if encoding == "raw-deflate" else encoding
            return web.Response(
                body=body, headers={"Content-Type": "application/json", "Content-Encoding": name}
            )

        api.route("GET", "/v1/videos/video_1", compressed)
        async with client(await api.start()) as videos:
            video = await videos.retrieve("video_1")
        assert video.id == "video_1"
        assert api.seen[0][2]["Accept-Encoding"] == "gzip, deflate"

    @pytest.mark.parametrize(
        ("encoding", "body"), [("br", b"\x00\x01"), ("gzip", b"not gzip at all")]
    )
    async def test_bad_or_unasked_encodings_are_typed_errors(
        self, servers: Callable[[], Server], encoding: str, body: bytes
    ) -> None:
        api = servers()

        async def odd(request: web.Request) -> web.Response:
            return web.Response(
                body=body,
                headers={"Content-Type": "application/json", "Content-Encoding": encoding},
            )

        api.route("GET", "/v1/videos/video_1", odd)
        async with client(await api.start()) as videos:
            with pytest.raises(APIResponseValidationError):
                await videos.retrieve("video_1", max_retries=0)

    async def test_error_bodies_are_cut_short(self, servers: Callable[[], Server]) -> None:
        """An endless 500 body becomes a 500 error at once, its body cut at 64 KiB."""
        api = servers()

        async def endless_error(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(status=500)
            await response.prepare(request)
            for _ in range(10_000):
                await response.write(b"e" * 65536)
            return response

        api.route("GET", "/v1/videos/video_1", endless_error)
        api.route("GET", "/v1/videos/video_1/content", endless_error)
        async with client(await api.start()) as videos:
            with pytest.raises(InternalServerError) as caught:
                await asyncio.wait_for(videos.retrieve("video_1", max_retries=0), 30)
            assert len(str(caught.value)) < 1000
            with pytest.raises(InternalServerError):
                await asyncio.wait_for(videos.download_content("video_1", max_retries=0), 30)
            with pytest.raises(InternalServerError):
                async for _ in videos.iter_content("video_1", max_retries=0):
                    pass

    @pytest.mark.slow  # about 25 s: with the soak test, out of the default run (CI runs it)
    @pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
    def test_peak_memory_stays_under_100_mib_with_the_default_limit(self) -> None:
        """A 4 GiB gzip bomb and an endless body, each against the default 32 MiB limit,
        in a fresh process whose peak RSS growth is measured."""
        script = textwrap.dedent(
            """
            import asyncio, gzip, zlib
            from aiohttp import web
            from asyncvideos import AsyncVideos, ResponseTooLargeError

            def peak_kib():
                for line in open("/proc/self/status"):
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])

            # 4 GiB of spaces as one gzip stream, compressed piece by piece (about 4 MB).
            squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            block = b" " * (1 << 24)
            bomb = b"".join(squeeze.compress(block) for _ in range(256)) + squeeze.flush()

            async def bombed(request):
                return web.Response(body=bomb, headers={
                    "Content-Type": "application/json", "Content-Encoding": "gzip"})

            async def endless(request):
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(request)
                chunk = b"x" * 65536
                for _ in range(20_000):
                    await response.write(chunk)
                return response

            async def main():
                app = web.Application()
                app.router.add_get("/v1/videos/bomb", bombed)
                app.router.add_get("/v1/videos/endless", endless)
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port = runner.addresses[0][1]
                with open("/proc/self/clear_refs", "w") as refs:
                    refs.write("5")
                before = peak_kib()
                async with AsyncVideos(api_key="sk-x", base_url=f"http://127.0.0.1:{port}/v1",
                                       max_retries=0) as videos:
                    for name in ("bomb", "endless"):
                        try:
                            await videos.retrieve(name)
                        except ResponseTooLargeError:
                            print(name, "too-large")
                print("growth_mib", (peak_kib() - before) / 1024)
                await runner.cleanup()

            asyncio.run(main())
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.split("\n")
        assert "bomb too-large" in lines
        assert "endless too-large" in lines
        growth = float(next(line for line in lines if line.startswith("growth_mib")).split()[1])
        assert growth < 100, growth


def empty_pages(times: list[float] | None = None, then: int | None = None) -> Handler:
    """Empty pages that say has_more, each with a fresh cursor (``c0``, ``c1``, ...),
    as a gateway that filters pages after paging sends them; after ``then`` of
    them, a last page with two jobs. ``times`` records when each request came."""
    counter = iter(range(10**9))

    async def handler(request: web.Request) -> web.Response:
        if times is not None:
            times.append(asyncio.get_running_loop().time())
        n = next(counter)
        if then is not None and n >= then:
            jobs = [{**JOB, "id": "video_a"}, {**JOB, "id": "video_b"}]
            return json_response({"object": "list", "data": jobs, "has_more": False})
        return json_response({"object": "list", "data": [], "has_more": True, "last_id": f"c{n}"})

    return handler


class TestListingCannotSpin:
    async def test_a_run_of_empty_pages_with_has_more_ends(
        self, servers: Callable[[], Server]
    ) -> None:
        """A server sending them forever is followed 100 times (the default), then stopped."""
        api = servers()
        api.route("GET", "/v1/videos", empty_pages())
        async with client(await api.start()) as videos:
            with pytest.raises(PaginationError, match="empty pages") as caught:
                async for _ in videos.list(all=True, after="start"):
                    pass
        assert len(api.seen) == 101
        assert caught.value.resume_after == "c99"
        assert "max_empty_pages=100" in str(caught.value)

    @pytest.mark.parametrize("bound", [0, 5])
    async def test_the_bound_is_settable(self, servers: Callable[[], Server], bound: int) -> None:
        api = servers()
        api.route("GET", "/v1/videos", empty_pages())
        async with client(await api.start(), max_empty_pages=bound) as videos:
            with pytest.raises(PaginationError, match="empty pages") as caught:
                async for _ in videos.list(all=True, after="start"):
                    pass
        assert len(api.seen) == bound + 1
        assert caught.value.resume_after == (f"c{bound - 1}" if bound else "start")

    @pytest.mark.parametrize("prefetch", [0, 1])
    async def test_a_listing_filtered_by_a_gateway_is_followed(
        self, servers: Callable[[], Server], caplog: pytest.LogCaptureFixture, prefetch: int
    ) -> None:
        """30 empty pages in a row, then the tenant's jobs: every job, each empty page
        followed after a pause growing from 0.1 s to 0.5 s (logged; slept unless
        retry waits are off, as in this suite)."""
        api = servers()
        api.route("GET", "/v1/videos", empty_pages(then=30))
        async with client(await api.start()) as videos:
            with caplog.at_level(logging.DEBUG, logger="asyncvideos"):
                found = [v.id async for v in videos.list(all=True, prefetch=prefetch)]
        assert found == ["video_a", "video_b"]
        assert len(api.seen) == 31
        pauses = [r.wait for r in caplog.records if hasattr(r, "empty_pages")]  # type: ignore[attr-defined]
        assert pauses == [0.1, 0.2, 0.4] + [0.5] * 27

    async def test_the_pauses_cost_no_cpu_and_can_be_cancelled(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()
        times: list[float] = []
        api.route("GET", "/v1/videos", empty_pages(times))
        async with client(await api.start()) as videos:
            with retry_waits_enabled():

                async def listing() -> None:
                    async for _ in videos.list(all=True):
                        pass

                cpu = time.process_time()
                task = asyncio.create_task(listing())
                await until(lambda: len(times) == 3, "three empty pages")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                cpu = time.process_time() - cpu
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert gaps[0] >= 0.09
        assert gaps[1] >= 0.19
        assert len(times) == 3
        assert cpu < 0.2  # about 0.3 s of wall time, nearly all of it asleep

    async def test_a_huge_cursor_is_not_quoted_whole(self, servers: Callable[[], Server]) -> None:
        api = servers()

        async def same(request: web.Request) -> web.Response:
            job = {**JOB, "id": "v" * 4000}  # just under MAX_ID_LENGTH
            return json_response({"object": "list", "data": [job], "has_more": True})

        api.route("GET", "/v1/videos", same)
        async with client(await api.start()) as videos:
            with pytest.raises(PaginationError) as caught:
                async for _ in videos.list(all=True):
                    pass
        assert len(str(caught.value)) < 500


class TestTheKeyIsNowhere:
    async def test_malformed_http_leaves_no_key_in_the_cause(
        self, servers: Callable[[], Server]
    ) -> None:
        """aiohttp's exceptions carry the request headers; the client scrubs them."""

        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: nope {KEY}\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with client(f"http://127.0.0.1:{port}", max_retries=0) as videos:
                with pytest.raises(AsyncVideosError) as caught:
                    await videos.retrieve("video_1")
        finally:
            server.close()
            await server.wait_closed()
        assert caught.value.__cause__ is not None
        assert_no_key(caught.value)

    async def test_a_2xx_body_echoing_the_key_is_masked(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def echo(request: web.Request) -> web.Response:
            auth = request.headers["Authorization"]
            return json_response({**JOB, "status": {"bad": auth}, "created_at": auth})

        api.route("GET", "/v1/videos/video_1", echo)
        async with client(await api.start()) as videos:
            with pytest.raises(APIResponseValidationError) as caught:
                await videos.retrieve("video_1")
        assert_no_key(caught.value)

    async def test_a_non_json_2xx_echoing_the_key_is_masked(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def echo(request: web.Request) -> web.Response:
            return web.Response(text=f"<html>{request.headers['Authorization']}</html>")

        api.route("GET", "/v1/videos/video_1", echo)
        async with client(await api.start()) as videos:
            with pytest.raises(APIResponseValidationError) as caught:
                await videos.retrieve("video_1")
        assert_no_key(caught.value)

    async def test_an_error_header_echoing_the_key_is_masked(
        self, servers: Callable[[], Server]
    ) -> None:
        api = servers()

        async def echo(request: web.Request) -> web.Response:
            return json_response(
                {"error": {"message": f"bad key {KEY}"}},
                status=401,
                headers={"X-Echo": request.headers["Authorization"]},
            )

        api.route("GET", "/v1/videos/video_1", echo)
        async with client(await api.start()) as videos:
            with pytest.raises(AsyncVideosError) as caught:
                await videos.retrieve("video_1")
        assert_no_key(caught.value)

    async def test_a_huge_message_is_capped(self, servers: Callable[[], Server]) -> None:
        api = servers()

        async def shout(request: web.Request) -> web.Response:
            return json_response({"error": {"message": "x" * 60_000}}, status=400)

        api.route("GET", "/v1/videos/video_1", shout)
        async with client(await api.start()) as videos:
            with pytest.raises(AsyncVideosError) as caught:
                await videos.retrieve("video_1")
        assert len(str(caught.value)) < 2200


class TestRetryWaitsHaveAFloor:
    @pytest.mark.parametrize(
        "headers",
        [
            {"retry-after": "0"},
            {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
            {"retry-after-ms": "1e-300"},
        ],
    )
    async def test_the_server_cannot_force_instant_retries(
        self, servers: Callable[[], Server], headers: dict[str, str]
    ) -> None:
        api = servers()

        async def busy(request: web.Request) -> web.Response:
            return json_response({"error": {"message": "slow down"}}, status=429, headers=headers)

        api.route("GET", "/v1/videos/video_1", busy)
        waits: list[float] = []

        def record(details: RetryDetails) -> None:
            waits.append(details.wait)

        async with client(await api.start(), on_retry=record) as videos:
            with pytest.raises(AsyncVideosError):
                await videos.retrieve("video_1", max_retries=3)
        assert len(waits) == 3
        assert min(waits) >= MIN_WAIT


class TestGatewayQuota:
    async def test_a_quota_inside_a_rewritten_error_is_recognised(
        self, servers: Callable[[], Server]
    ) -> None:
        """LiteLLM sends ``code: "429"`` and the upstream's error inside the message."""
        api = servers()
        upstream = json.dumps({"error": {"code": "insufficient_quota", "message": "quota"}})

        async def wrapped(request: web.Request) -> web.Response:
            return json_response(
                {"error": {"message": f"litellm.RateLimitError: {upstream}", "code": "429"}},
                status=429,
            )

        api.route("GET", "/v1/videos/video_1", wrapped)
        async with client(await api.start()) as videos:
            with pytest.raises(QuotaExceededError):
                await videos.retrieve("video_1", max_retries=3)
        assert len(api.seen) == 1


class TestEventLoops:
    def test_a_client_used_in_a_second_loop_says_so(self) -> None:
        async def use(videos: AsyncVideos) -> None:
            await videos.list_page()

        async def build() -> AsyncVideos:
            return AsyncVideos(api_key=KEY, base_url="http://127.0.0.1:9/v1", max_retries=0)

        videos = asyncio.run(build())
        with pytest.raises(AsyncVideosError):
            asyncio.run(use(videos))  # connection refused: the loop is now bound
        with pytest.raises(RuntimeError, match="one client per event loop"):
            asyncio.run(use(videos))
        asyncio.run(videos.close())


class TestPlainHttpWarning:
    @pytest.mark.parametrize(
        ("host", "warns"),
        [("127.0.0.2", False), ("[::1]", False), ("localhost", False), ("10.0.0.1", True)],
    )
    def test_all_of_loopback_is_loopback(
        self, host: str, warns: bool, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="asyncvideos")
        AsyncVideos(api_key=KEY, base_url=f"http://{host}:8000/v1")
        assert any("plain http" in record.message for record in caplog.records) is warns


class TestDeletedIsABoolean:
    @pytest.mark.parametrize("value", ["false", 0, None, "true"])
    async def test_a_non_boolean_deleted_is_a_typed_error(
        self, servers: Callable[[], Server], value: object
    ) -> None:
        api = servers()

        async def deleted(request: web.Request) -> web.Response:
            return json_response({"id": "video_1", "object": "video.deleted", "deleted": value})

        api.route("DELETE", "/v1/videos/video_1", deleted)
        async with client(await api.start()) as videos:
            with pytest.raises(APIResponseValidationError, match="'deleted' should be a boolean"):
                await videos.delete("video_1")
