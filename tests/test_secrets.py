"""The API key never leaks, and the transport is safe by default.

A recognisable canary key is used against the fake; after a mix of successes,
401s, retries, timeouts and dropped connections, the key (and a wrong key
tried on purpose) must appear in no repr, no exception message or traceback
(chained causes included), no attribute of an error, and no log record at
DEBUG level. Only the masked form (``sk-...90``) may be shown.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import asyncvideos
from asyncvideos import (
    APIConnectionError,
    APITimeoutError,
    AsyncVideos,
    AsyncVideosError,
    AuthenticationError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)
from asyncvideos.testing import FakeVideosAPI, Fault

KEY = "sk-SECRET-canary-1234567890"
WRONG_KEY = "sk-WRONG-canary-0987654321"
# Any of these in any text is a leak; the masked form shows 3 + 2 characters only.
CANARIES = (KEY, WRONG_KEY, "SECRET-canary", "WRONG-canary", "1234567890", "0987654321")
LOGGERS = ("", "asyncvideos", "aiohttp", "aiohttp.client", "aiohttp.server", "backoff")


def leaks(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary in text]


def error_texts(error: BaseException) -> Iterator[str]:
    """Everything an error shows when printed, logged or inspected, causes included."""
    yield "".join(traceback.format_exception(error))
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield repr(current)
        yield str(current)
        yield repr(getattr(current, "__dict__", {}))
        yield repr(current.args)
        current = current.__cause__ or current.__context__


@pytest.fixture
def capture_all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    for record in caplog.records:
        yield record.getMessage()
        yield repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            yield from error_texts(record.exc_info[1])


@pytest.fixture
async def secret_api() -> AsyncIterator[FakeVideosAPI]:
    async with FakeVideosAPI(api_key=KEY, speed=100.0, poll_after_ms=10) as fake:
        yield fake


async def run_a_mix(api: FakeVideosAPI, auth_scheme: str) -> list[BaseException]:
    """Successes, retries, timeouts, drops, 401s, rate limits; returns the errors raised."""
    errors: list[BaseException] = []

    async def expect(call: Any) -> None:
        try:
            await call
        except AsyncVideosError as error:
            errors.append(error)

    (done,) = api.seed(1)
    async with AsyncVideos(
        api_key=KEY, base_url=api.base_url, max_retries=2, auth_scheme=auth_scheme
    ) as videos:
        # Successes, some after a retried 500, a drop and a cut body.
        api.inject(Fault(status=500), times=1)
        api.inject(Fault(drop=True), times=1)
        api.inject(Fault(truncate=True), times=1)
        await videos.retrieve(done)
        assert [v.id async for v in videos.list(all=True)] == [done]
        await videos.download_content(done, variant="thumbnail")
        created = await videos.create("a canary", seconds=4)
        await videos.wait(created, wait_timeout=30)
        # Failures: retries used up, a timeout, a long rate limit, a dropped POST.
        api.inject(Fault(status=503), times=3)
        await expect(videos.retrieve(done))
        api.inject(Fault(delay=0.5), times=1)
        await expect(videos.retrieve(done, timeout=0.05, max_retries=0))
        api.inject(Fault(status=429, headers={"retry-after": "600"}), times=1)
        await expect(videos.retrieve(done))
        api.inject(Fault(drop=True), times=1)
        await expect(videos.create("dropped", max_retries=0))
        await expect(videos.retrieve("video_missing"))
    # A wrong key: the server's 401 (which masks it) and everything around it.
    async with AsyncVideos(
        api_key=WRONG_KEY, base_url=api.base_url, max_retries=2, auth_scheme=auth_scheme
    ) as wrong:
        await expect(wrong.retrieve(done))
        await expect(wrong.create("nope"))
        for text in (repr(wrong), str(wrong)):
            assert not leaks(text), text
    return errors


@pytest.mark.parametrize("auth_scheme", ["bearer", "api-key"])
async def test_the_key_appears_nowhere(
    secret_api: FakeVideosAPI, capture_all_logs: pytest.LogCaptureFixture, auth_scheme: str
) -> None:
    """Not in a repr, an error, a traceback, a cause's attributes or a DEBUG log line."""
    errors = await run_a_mix(secret_api, auth_scheme)
    kinds = {type(error) for error in errors}
    assert {InternalServerError, APITimeoutError, RateLimitError, APIConnectionError} <= kinds
    assert AuthenticationError in kinds
    for error in errors:
        for text in error_texts(error):
            assert not leaks(text), text
    for text in log_texts(capture_all_logs):
        assert not leaks(text), text
    assert capture_all_logs.records, "retries should have been logged"
    # The fake's request log shows the headers masked.
    header = "authorization" if auth_scheme == "bearer" else "api-key"
    assert any(KEY in (r.headers.get(header) or "") for r in secret_api.requests)
    for request in secret_api.requests:
        assert not leaks(repr(request)), repr(request)


async def test_the_canary_check_can_fail(secret_api: FakeVideosAPI) -> None:
    """The detector itself: the raw key, or a request's raw headers, are caught."""
    assert leaks(f"Authorization: Bearer {KEY}")
    async with AsyncVideos(api_key=KEY, base_url=secret_api.base_url) as videos:
        await videos.list_page()
    assert leaks(str(secret_api.requests[0].headers))


@pytest.mark.parametrize("auth_scheme", ["bearer", "api-key"])
async def test_a_key_echoed_by_the_server_is_masked(
    secret_api: FakeVideosAPI, auth_scheme: str
) -> None:
    """A gateway that echoes the key in its error body does not leak it through the error."""
    echo = {
        "error": {
            "message": f"Invalid key {KEY}",
            "type": "auth",
            "param": None,
            "code": None,
            "details": [f"key={KEY}"],
        }
    }
    secret_api.inject(Fault(status=401, body=echo), times=1)
    secret_api.inject(Fault(status=404, body=echo), times=2, path=r"/content$")
    async with secret_api.client(auth_scheme=auth_scheme) as videos:
        with pytest.raises(AuthenticationError) as caught:
            await videos.retrieve("video_1")
        with pytest.raises(NotFoundError) as whole:
            await videos.download_content("video_1")
        with pytest.raises(NotFoundError) as streamed:
            [chunk async for chunk in videos.iter_content("video_1")]
    for error in (caught.value, whole.value, streamed.value):
        for text in [*error_texts(error), repr(error.body), repr(error.args)]:
            assert not leaks(text), text
    assert caught.value.message == "Invalid key sk-...90"
    assert caught.value.body["error"]["details"] == ["key=sk-...90"]  # type: ignore[index]


async def test_reprs_of_the_client_and_its_settings(secret_api: FakeVideosAPI) -> None:
    """The client and every object it holds show at most the masked key."""
    async with AsyncVideos(api_key=KEY, base_url=secret_api.base_url) as videos:
        await videos.list_page()
        texts = [repr(videos), str(videos), repr(videos._settings), repr(videos._transport)]
        texts.append(repr(videos._default_options))
        assert "sk-...90" in repr(videos)
    for text in texts:
        assert not leaks(text), text


async def test_a_callable_key_is_not_shown_either(secret_api: FakeVideosAPI) -> None:
    """A key provider is shown as <callable>, and its key never appears."""

    async def provide() -> str:
        return KEY

    async with AsyncVideos(api_key=provide, base_url=secret_api.base_url) as videos:
        assert (await videos.list_page()).data == ()
        assert "<callable>" in repr(videos)
        assert not leaks(repr(videos))


# -- transport ---------------------------------------------------------------------


def test_the_package_never_turns_tls_verification_off() -> None:
    """No source file passes ``ssl=False`` (or the old ``verify_ssl``) to aiohttp."""
    package = Path(asyncvideos.__file__).parent
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert "ssl=False" not in text.replace(" ", ""), path
        assert "verify_ssl" not in text, path


@pytest.fixture
async def https_api(self_signed: tuple[Path, Path]) -> AsyncIterator[str]:
    """A tiny HTTPS server on loopback with the self-signed certificate; yields its base URL."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def empty_page(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [], "has_more": False})

    app = web.Application()
    app.router.add_get("/v1/videos", empty_page)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


class TestTLS:
    """TLS is verified by default; only a caller's own session can loosen it.

    The client builds its connector without ever passing ``ssl=False``: a user who
    must talk to a server with a private certificate passes ``session=`` with a
    connector of their own (a CA bundle in an ``ssl.SSLContext``, or, knowingly,
    ``ssl=False``). There is no client flag that turns verification off.
    """

    async def test_an_untrusted_certificate_is_refused(
        self, https_api: str, capture_all_logs: pytest.LogCaptureFixture
    ) -> None:
        """The client's own connector verifies: a self-signed certificate fails the call."""
        async with AsyncVideos(api_key=KEY, base_url=https_api, max_retries=0) as videos:
            with pytest.raises(APIConnectionError) as caught:
                await asyncio.wait_for(videos.list_page(), 10)
        cause = caught.value.__cause__
        assert isinstance(cause, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError))
        for text in error_texts(caught.value):
            assert not leaks(text), text
        for text in log_texts(capture_all_logs):
            assert not leaks(text), text

    async def test_a_certificate_failure_is_not_retried(self, https_api: str) -> None:
        """A certificate that does not verify will not on the next try: no retries."""
        async with AsyncVideos(api_key=KEY, base_url=https_api, max_retries=3) as videos:
            with pytest.raises(APIConnectionError) as caught:
                await asyncio.wait_for(videos.retrieve("video_1"), 10)
        assert caught.value.retries == 0
        assert caught.value.retry_can_help is False

    async def test_a_callers_session_trusting_the_certificate_works(
        self, https_api: str, self_signed: tuple[Path, Path]
    ) -> None:
        """The counterpart (so the refusal above is about trust): a session that trusts
        the certificate, passed in by the caller, succeeds."""
        cert, _ = self_signed
        trusting = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as session:
            async with AsyncVideos(api_key=KEY, base_url=https_api, session=session) as videos:
                page = await videos.list_page()
            assert page.data == ()
            assert not session.closed  # borrowed, never closed by the client


class TestPlainHttpWarning:
    @pytest.mark.parametrize(
        "base_url", ["http://api.example.com/v1", "http://10.0.0.8:8080/v1", "HTTP://gw.local/v1"]
    )
    def test_plain_http_to_another_host_warns(
        self, base_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The key would travel unencrypted: a warning says so (without the key)."""
        caplog.set_level(logging.WARNING, logger="asyncvideos")
        AsyncVideos(api_key=KEY, base_url=base_url)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unencrypted" in warnings[0].getMessage()
        assert not leaks(warnings[0].getMessage())

    @pytest.mark.parametrize(
        "base_url",
        [
            "http://127.0.0.1:8080/v1",
            "http://localhost/v1",
            "http://[::1]:9000/v1",
            "https://api.example.com/v1",
        ],
    )
    def test_loopback_or_https_does_not_warn(
        self, base_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="asyncvideos")
        AsyncVideos(api_key=KEY, base_url=base_url)
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
