"""Webhook verification and the receiver, against signatures computed here.

Every signature in this file is made by ``sign()`` below, with ``hmac``,
``hashlib`` and ``base64`` directly (Standard Webhooks: base64 of HMAC-SHA256
over ``"{id}.{timestamp}.{body}"``, keyed with the bytes after ``whsec_``), never
by the code under test. The receiver's handler is served by ``aiohttp.web`` on
loopback and reached over real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

import asyncvideos
from asyncvideos import AsyncVideos, AsyncVideosError
from asyncvideos.webhooks import (
    WebhookEvent,
    WebhookReceiver,
    WebhookVerificationError,
    verify_webhook,
)

KEY = b"\x00\x01not-a-real-key-but-32-bytes!\xfe\xff"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another key entirely, 32 bytes!").decode()
# The secret, its base64 part and the raw key must never show in any error text.
CANARIES = (SECRET, SECRET[6:], KEY.decode("latin-1"), KEY.hex())


def event_body(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "evt_abc123",
        "object": "event",
        "created_at": 1760000000,
        "type": "video.completed",
        "data": {"id": "video_123"},
    }
    body.update(changes)
    return json.dumps(body).encode()


def signature(body: bytes, webhook_id: str, timestamp: str, key: bytes = KEY) -> str:
    signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(
    body: bytes,
    *,
    webhook_id: str = "wh_1",
    timestamp: int | None = None,
    key: bytes = KEY,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": ts,
        "webhook-signature": signature(body, webhook_id, ts, key),
    }


def texts(error: BaseException) -> Iterator[str]:
    yield "".join(traceback.format_exception(error))
    current: BaseException | None = error
    while current is not None:
        yield repr(current)
        yield str(current)
        yield repr(current.args)
        current = current.__cause__ or current.__context__


def assert_no_secret(error: BaseException) -> None:
    for text in texts(error):
        for canary in CANARIES:
            assert canary not in text


def rejected(body: bytes, headers: Any, **options: Any) -> WebhookVerificationError:
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(body, headers, SECRET, **options)
    assert_no_secret(caught.value)
    return caught.value


class TestVerify:
    """``verify_webhook()``: a valid event is returned; anything else says why."""

    def test_a_valid_event(self) -> None:
        body = event_body()
        event = verify_webhook(body, sign(body), SECRET)
        assert event == WebhookEvent(
            id="evt_abc123",
            type="video.completed",
            created_at=datetime(2025, 10, 9, 8, 53, 20, tzinfo=timezone.utc),
            video_id="video_123",
        )
        assert event.created_at.tzinfo is not None
        assert event.raw == json.loads(body)

    def test_a_fixed_vector(self) -> None:
        """A vector fixed in the test, with its signature written out: catches a
        signing scheme that drifted in both the test helper and the code."""
        secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
        body = b'{"id":"evt_1","object":"event","created_at":1760000000,"type":"video.failed","data":{"id":"video_9"}}'  # noqa: E501
        mac = hmac.new(
            b"0123456789abcdef0123456789abcdef",
            b"msg_1.1760000000." + body,
            hashlib.sha256,
        ).digest()
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": "1760000000",
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        }
        event = verify_webhook(body, headers, secret, tolerance=10**10)
        assert (event.type, event.video_id) == ("video.failed", "video_9")

    def test_unknown_type_is_kept(self) -> None:
        body = event_body(type="video.something_new", data={"id": "video_7", "more": 1})
        event = verify_webhook(body, sign(body), SECRET)
        assert (event.type, event.video_id) == ("video.something_new", "video_7")

    def test_event_without_data_has_no_video_id(self) -> None:
        body = json.dumps({"id": "evt_2", "type": "batch.completed", "created_at": 1}).encode()
        assert verify_webhook(body, sign(body), SECRET).video_id is None

    def test_headers_in_any_case(self) -> None:
        body = event_body()
        headers = {name.title(): value for name, value in sign(body).items()}
        assert verify_webhook(body, headers, SECRET).id == "evt_abc123"
        assert verify_webhook(body, CIMultiDict(headers), SECRET).id == "evt_abc123"

    def test_bytearray_and_memoryview_bodies(self) -> None:
        body = event_body()
        assert verify_webhook(bytearray(body), sign(body), SECRET).id == "evt_abc123"
        assert verify_webhook(memoryview(body), sign(body), SECRET).id == "evt_abc123"


class TestSignatures:
    """Rotation, tampering and malformed signature headers."""

    @pytest.mark.parametrize("valid_first", [True, False])
    def test_rotation_one_of_two_is_enough(self, valid_first: bool) -> None:
        body = event_body()
        headers = sign(body)
        ts = headers["webhook-timestamp"]
        old = signature(body, "wh_1", ts, b"the previous key, now rotated out")
        good = headers["webhook-signature"]
        headers["webhook-signature"] = f"{good} {old}" if valid_first else f"{old} {good}"
        assert verify_webhook(body, headers, SECRET).id == "evt_abc123"

    def test_rotation_with_neither_valid(self) -> None:
        body = event_body()
        headers = sign(body)
        ts = headers["webhook-timestamp"]
        headers["webhook-signature"] = " ".join(
            signature(body, "wh_1", ts, key) for key in (b"old key", b"older key")
        )
        assert "does not match" in str(rejected(body, headers))

    def test_signed_with_another_secret(self) -> None:
        body = event_body()
        with pytest.raises(WebhookVerificationError, match="does not match"):
            verify_webhook(body, sign(body), OTHER_SECRET)

    @pytest.mark.parametrize(
        "tamper",
        ["body", "id", "timestamp", "signature_bit"],
    )
    def test_tampering(self, tamper: str) -> None:
        body = event_body()
        headers = sign(body)
        if tamper == "body":
            body = body.replace(b"video_123", b"video_124")
        elif tamper == "id":
            headers["webhook-id"] = "wh_2"
        elif tamper == "timestamp":
            headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
        else:
            raw = bytearray(base64.b64decode(headers["webhook-signature"][3:]))
            raw[0] ^= 1
            headers["webhook-signature"] = "v1," + base64.b64encode(bytes(raw)).decode()
        assert "does not match" in str(rejected(body, headers))

    def test_other_versions_are_ignored(self) -> None:
        body = event_body()
        headers = sign(body)
        headers["webhook-signature"] = "v1a,c29tZXRoaW5n " + headers["webhook-signature"]
        assert verify_webhook(body, headers, SECRET).id == "evt_abc123"
        headers["webhook-signature"] = "v1a,c29tZXRoaW5n v2,c29tZXRoaW5n"
        assert "no v1 signature" in str(rejected(body, headers))

    @pytest.mark.parametrize(
        ("header", "value", "words"),
        [
            ("webhook-signature", "", "missing webhook-signature"),
            ("webhook-signature", "   ", "missing webhook-signature"),
            ("webhook-signature", "v1", "'v1,<base64>'"),
            ("webhook-signature", "v1,not base64!", "not valid base64"),
            ("webhook-signature", "v1,@@@@", "not valid base64"),
            ("webhook-signature", " ".join(["v1,AAAA"] * 17), "at most 16"),
            ("webhook-timestamp", "", "missing webhook-timestamp"),
            ("webhook-timestamp", "12a", "not a Unix time"),
            ("webhook-timestamp", "-5", "not a Unix time"),
            ("webhook-timestamp", "1.5", "not a Unix time"),
            ("webhook-timestamp", "١٢٣", "not a Unix time"),  # digits, but not ASCII
            ("webhook-timestamp", "9" * 40, "not a Unix time"),
            ("webhook-id", "", "missing webhook-id"),
        ],
    )
    def test_malformed_headers(self, header: str, value: str, words: str) -> None:
        body = event_body()
        headers = sign(body)
        headers[header] = value
        assert words in str(rejected(body, headers))

    @pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_missing_header(self, header: str) -> None:
        body = event_body()
        headers = sign(body)
        del headers[header]
        assert f"missing {header}" in str(rejected(body, headers))


class TestTimestamps:
    """A timestamp more than ``tolerance`` seconds from now, either way, is refused."""

    def test_stale(self) -> None:
        body = event_body()
        error = rejected(body, sign(body, timestamp=int(time.time()) - 301))
        assert "too old" in str(error)

    def test_future(self) -> None:
        body = event_body()
        error = rejected(body, sign(body, timestamp=int(time.time()) + 301))
        assert "in the future" in str(error)

    def test_within_the_default_tolerance(self) -> None:
        body = event_body()
        for skew in (-290, 290):
            headers = sign(body, timestamp=int(time.time()) + skew)
            assert verify_webhook(body, headers, SECRET).id == "evt_abc123"

    def test_tolerance_changes_it(self) -> None:
        body = event_body()
        headers = sign(body, timestamp=int(time.time()) - 20)
        rejected(body, headers, tolerance=10)
        assert verify_webhook(body, headers, SECRET, tolerance=600).id == "evt_abc123"

    def test_a_stale_signature_is_refused_even_when_valid(self) -> None:
        """Replaying a genuine old request fails on its timestamp."""
        body = event_body()
        headers = sign(body, timestamp=int(time.time()) - 3600)
        assert "too old" in str(rejected(body, headers))


class TestBody:
    """A verified request whose body is not an event is refused too."""

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            (b"not json", "not JSON"),
            (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
            (b"[1, 2]", "not a JSON object"),
            (event_body(id=None), "no 'id'"),
            (event_body(id=""), "no 'id'"),
            (event_body(type=7), "no 'type'"),
            (event_body(object="video"), "'object' is not 'event'"),
            (event_body(created_at="2025-10-09"), "numeric 'created_at'"),
            (event_body(created_at=True), "numeric 'created_at'"),
            (event_body(created_at=10**20), "out of range"),
            (b'{"id": "e", "type": "t", "created_at": NaN}', "out of range"),
            (event_body(data=["video_1"]), "'data' is not an object"),
            (event_body(data={"id": 5}), "'data.id' is not a string"),
            (event_body(data={"id": ""}), "'data.id' is not a string"),
        ],
    )
    def test_not_an_event(self, body: bytes, words: str) -> None:
        assert words in str(rejected(body, sign(body)))


class TestArguments:
    """Bad arguments are TypeError/ValueError naming them; the secret is never shown."""

    @pytest.mark.parametrize(
        ("secret", "exc", "words"),
        [
            (b"whsec_AAAA", TypeError, "secret must be a str"),
            (None, TypeError, "secret must be a str"),
            (SECRET[6:], ValueError, "starting with 'whsec_'"),
            ("whsec_not*base64", ValueError, "must be base64"),
            ("whsec_", ValueError, "empty"),
        ],
    )
    def test_bad_secret(self, secret: Any, exc: type[Exception], words: str) -> None:
        body = event_body()
        for call in (
            lambda: verify_webhook(body, sign(body), secret),
            lambda: WebhookReceiver(secret),
        ):
            with pytest.raises(exc, match=words) as caught:
                call()
            assert not isinstance(caught.value, WebhookVerificationError)
            for text in texts(caught.value):
                assert "not*base64" not in text
                assert SECRET[6:] not in text

    @pytest.mark.parametrize(
        ("args", "kwargs", "exc", "words"),
        [
            (("body", {}), {}, TypeError, "body must be bytes"),
            ((b"{}", [("webhook-id", "x")]), {}, TypeError, "headers must be a mapping"),
            ((b"{}", {}), {"tolerance": -1}, ValueError, "tolerance"),
            ((b"{}", {}), {"tolerance": float("inf")}, ValueError, "tolerance"),
            ((b"{}", {}), {"tolerance": "300"}, TypeError, "tolerance"),
            ((b"{}", {}), {"tolerance": True}, TypeError, "tolerance"),
        ],
    )
    def test_bad_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], exc: type[Exception], words: str
    ) -> None:
        with pytest.raises(exc, match=words):
            verify_webhook(*args, SECRET, **kwargs)

    @pytest.mark.parametrize(
        ("kwargs", "exc", "words"),
        [
            ({"tolerance": -5}, ValueError, "tolerance"),
            ({"remember_events": -1}, ValueError, "remember_events"),
            ({"remember_events": 1.5}, ValueError, "remember_events"),
            ({"remember_seconds": "60"}, TypeError, "remember_seconds"),
            ({"remember_seconds": float("nan")}, ValueError, "remember_seconds"),
            ({"remember_seconds": -1}, ValueError, "remember_seconds"),
        ],
    )
    def test_bad_receiver_options(
        self, kwargs: dict[str, Any], exc: type[Exception], words: str
    ) -> None:
        with pytest.raises(exc, match=words):
            WebhookReceiver(SECRET, **kwargs)

    @pytest.mark.parametrize(
        ("value", "exc"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
    )
    def test_bad_max_queued(self, value: object, exc: type[Exception]) -> None:
        """Checked at the call, before anything is subscribed."""
        receiver = WebhookReceiver(SECRET)
        with pytest.raises(exc, match="max_queued"):
            receiver.events(max_queued=value)  # type: ignore[arg-type]
        assert receiver._subscribers == set()

    @pytest.mark.parametrize(
        ("kwargs", "exc", "words"),
        [
            ({"webhooks": SECRET}, TypeError, "webhooks must be"),
            ({"webhooks": object()}, TypeError, "webhooks must be"),
            ({"webhook_fallback_interval": 0}, ValueError, "webhook_fallback_interval"),
            ({"webhook_fallback_interval": -1.0}, ValueError, "webhook_fallback_interval"),
            ({"webhook_fallback_interval": float("nan")}, ValueError, "webhook_fallback"),
            ({"webhook_fallback_interval": "60"}, TypeError, "webhook_fallback_interval"),
            ({"webhook_fallback_interval": True}, TypeError, "webhook_fallback_interval"),
        ],
    )
    def test_bad_client_options(
        self, kwargs: dict[str, Any], exc: type[Exception], words: str
    ) -> None:
        with pytest.raises(exc, match=words) as caught:
            AsyncVideos(api_key="sk-test", base_url="http://127.0.0.1:9/v1", **kwargs)
        assert SECRET not in str(caught.value)

    def test_the_error_is_in_the_tree(self) -> None:
        assert issubclass(WebhookVerificationError, AsyncVideosError)
        assert issubclass(WebhookVerificationError, ValueError)
        assert asyncvideos.WebhookVerificationError is WebhookVerificationError
        assert "WebhookVerificationError" in asyncvideos.__all__
        assert "WebhookVerificationError" in asyncvideos._errors.__doc__  # type: ignore[operator]

    def test_receiver_repr_hides_the_secret(self) -> None:
        receiver = WebhookReceiver(SECRET, tolerance=60)
        assert repr(receiver) == "WebhookReceiver(tolerance=60)"
        assert receiver.tolerance == 60.0


@asynccontextmanager
async def serving(receiver: WebhookReceiver) -> AsyncIterator[str]:
    """``receiver.handle`` at ``/webhooks`` on loopback; yields the URL."""
    app = web.Application()
    app.router.add_post("/webhooks", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks"
    finally:
        await runner.cleanup()


class TestReceiver:
    """``WebhookReceiver``: the aiohttp handler, ``feed()`` and ``events()``."""

    async def test_handler_answers_200_then_200_for_a_duplicate_and_400_otherwise(
        self,
    ) -> None:
        receiver = WebhookReceiver(SECRET)
        body = event_body()
        async with serving(receiver) as url, aiohttp.ClientSession() as session:
            answers = []
            for headers in (sign(body), sign(body), sign(body, key=b"wrong key")):
                async with session.post(url, data=body, headers=headers) as reply:
                    answers.append((reply.status, await reply.text()))
            async with session.post(url, data=body) as reply:
                answers.append((reply.status, await reply.text()))
            async with session.get(url) as reply:
                answers.append((reply.status, ""))
        assert answers == [
            (200, "ok\n"),
            (200, "ok\n"),
            (400, "webhook-signature does not match the body\n"),
            (400, "missing webhook-id header\n"),
            (405, ""),
        ]

    async def test_handler_refuses_a_large_body_unread(self) -> None:
        receiver = WebhookReceiver(SECRET)
        body = event_body(padding="x" * 300_000)
        async with serving(receiver) as url, aiohttp.ClientSession() as session:
            async with session.post(url, data=body, headers=sign(body)) as reply:
                assert (reply.status, await reply.text()) == (400, "the body is too large\n")

            async def chunked() -> AsyncIterator[bytes]:
                for start in range(0, len(body), 65536):
                    yield body[start : start + 65536]

            # Without a Content-Length, it stops reading at the limit.
            async with session.post(url, data=chunked(), headers=sign(body)) as reply:
                assert reply.status == 400

    async def test_events_yields_each_verified_event_once(self) -> None:
        receiver = WebhookReceiver(SECRET)
        events = receiver.events()
        first = event_body(id="evt_1")
        second = event_body(id="evt_2", type="video.failed", data={"id": "video_2"})
        pending = anext(events)  # subscribes on first iteration
        task = asyncio.ensure_future(pending)
        await asyncio.sleep(0)
        assert (await receiver.feed(first, sign(first))).id == "evt_1"
        assert (await receiver.feed(first, sign(first))).id == "evt_1"  # a duplicate
        with pytest.raises(WebhookVerificationError):
            await receiver.feed(second, sign(second, key=b"wrong"))
        await receiver.feed(second, sign(second))
        assert (await task).id == "evt_1"
        assert (await anext(events)).id == "evt_2"
        await events.aclose()
        assert receiver._subscribers == set()

    async def test_memory_is_bounded_by_count(self) -> None:
        receiver = WebhookReceiver(SECRET, remember_events=3)
        for n in range(10):
            body = event_body(id=f"evt_{n}", data={"id": f"video_{n}"})
            await receiver.feed(body, sign(body))
        assert list(receiver._recent) == ["video_7", "video_8", "video_9"]
        # Ids are small and kept to recognise replays: 10,000 of them at least.
        assert list(receiver._seen) == [f"evt_{n}" for n in range(10)]
        with receiver.watch("video_9") as watch:
            assert watch.pending
        with receiver.watch("video_0") as watch:
            assert not watch.pending
        assert receiver._watches == {}

    async def test_memory_is_bounded_in_time(self) -> None:
        receiver = WebhookReceiver(SECRET, remember_seconds=0.05)
        body = event_body()
        await receiver.feed(body, sign(body))
        with receiver.watch("video_123") as watch:
            assert watch.pending
        await asyncio.sleep(0.1)
        with receiver.watch("video_123") as watch:
            assert not watch.pending
        assert len(receiver._recent) == 0
        assert list(receiver._seen) == ["evt_abc123"]  # while its signature can be replayed

    async def test_no_event_remembered_with_remember_events_0(self) -> None:
        receiver = WebhookReceiver(SECRET, remember_events=0)
        body = event_body()
        await receiver.feed(body, sign(body))
        await receiver.feed(body, sign(body))
        with receiver.watch("video_123") as watch:
            assert not watch.pending
        assert len(receiver._recent) == 0
        assert list(receiver._seen) == ["evt_abc123"]  # the duplicate was recognised

    async def test_a_consumer_that_never_reads_holds_at_most_max_queued(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Past ``max_queued`` waiting events the oldest are dropped, with one WARNING."""
        receiver = WebhookReceiver(SECRET)
        events = receiver.events(max_queued=5)
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)  # subscribed
        async with serving(receiver) as url, aiohttp.ClientSession() as session:
            for n in range(21):
                body = event_body(id=f"evt_{n}", data={"id": f"video_{n}"})
                async with session.post(url, data=body, headers=sign(body)) as reply:
                    assert reply.status == 200
                if n == 0:
                    assert (await first).id == "evt_0"  # then it stops reading
            (subscriber,) = receiver._subscribers
            assert subscriber.queue.qsize() == 5
        kept = [(await anext(events)).id for _ in range(5)]
        await events.aclose()
        assert kept == [f"evt_{n}" for n in range(16, 21)]
        warnings = [r for r in caplog.records if "events() consumer" in r.getMessage()]
        assert [r.levelname for r in warnings] == ["WARNING"]

    async def test_memory_stays_bounded_for_a_consumer_that_never_reads(self) -> None:
        receiver = WebhookReceiver(SECRET, remember_events=100)
        events = receiver.events()
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        for n in range(3000):
            body = event_body(id=f"evt_{n}", data={"id": f"video_{n}"})
            await receiver.feed(body, sign(body))
            if n == 0:
                assert (await first).id == "evt_0"  # then it stops reading
        (subscriber,) = receiver._subscribers
        assert subscriber.queue.qsize() == 1000  # the default max_queued
        assert len(receiver._recent) == 100
        await events.aclose()
        assert receiver._subscribers == set()

    async def test_out_of_order_keeps_the_newer_event(self) -> None:
        receiver = WebhookReceiver(SECRET)
        newer = event_body(id="evt_new", created_at=1760000100)
        older = event_body(id="evt_old", created_at=1760000000, type="video.failed")
        await receiver.feed(newer, sign(newer))
        await receiver.feed(older, sign(older))
        assert receiver._recent["video_123"][1].id == "evt_new"

    async def test_events_not_about_videos_wake_nobody(self) -> None:
        receiver = WebhookReceiver(SECRET)
        body = event_body(type="batch.completed")
        with receiver.watch("video_123") as watch:
            await receiver.feed(body, sign(body))
            assert not watch.pending
        assert "video_123" not in receiver._recent


class TestReplays:
    """A request replayed inside the signature's tolerance is never delivered twice."""

    async def test_a_replay_after_remember_seconds_is_a_duplicate(self) -> None:
        """remember_seconds shorter than the tolerance: the id is kept for the tolerance."""
        receiver = WebhookReceiver(SECRET, remember_seconds=0.05)
        events = receiver.events()
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        body, headers = event_body(), sign(event_body())
        later = event_body(id="evt_later")
        async with serving(receiver) as url, aiohttp.ClientSession() as session:
            answers = []
            for data, signed in ((body, headers), (body, headers), (later, sign(later))):
                async with session.post(url, data=data, headers=signed) as reply:
                    answers.append(reply.status)
                await asyncio.sleep(0.1)  # past remember_seconds
        assert answers == [200, 200, 200]
        assert (await pending).id == "evt_abc123"
        assert (await anext(events)).id == "evt_later"  # not evt_abc123 a second time
        await events.aclose()

    async def test_a_replay_after_its_id_was_crowded_out_is_refused(self) -> None:
        """More ids than the memory holds, within the tolerance: a replay of a forgotten
        one is refused (400); an event signed later still gets through."""
        receiver = WebhookReceiver(SECRET, remember_events=3)
        now = int(time.time())
        replayed = event_body(id="evt_first")
        replayed_headers = sign(replayed, timestamp=now - 1)
        await receiver.feed(replayed, replayed_headers)
        for n in range(10_000):  # the 10,000 ids kept at least: evt_first is forgotten
            body = event_body(id=f"evt_{n}")
            await receiver.feed(body, sign(body, timestamp=now - 1))
        assert "evt_first" not in receiver._seen
        delivered: list[str] = []
        events = receiver.events()
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        fresh = event_body(id="evt_fresh")
        async with serving(receiver) as url, aiohttp.ClientSession() as session:
            async with session.post(url, data=replayed, headers=replayed_headers) as reply:
                refused = (reply.status, await reply.text())
            async with session.post(url, data=fresh, headers=sign(fresh, timestamp=now)) as reply:
                assert reply.status == 200
        delivered.append((await pending).id)
        await events.aclose()
        assert refused[0] == 400
        assert "replay" in refused[1]
        assert delivered == ["evt_fresh"]
