"""Tests of the fake Videos API (asyncvideos.testing), through plain aiohttp over loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yarl
from conditions import until

from asyncvideos.testing import FakeVideosAPI, Fault, ManualClock, RecordedRequest
from asyncvideos.testing._content import parse_range

# Imported so the fixtures exist whether or not the package's pytest11 entry point is active.
from asyncvideos.testing._plugin import fake_videos_api, videos_client  # noqa: F401

START = 1_760_000_000
IMAGE_URL = "input_reference.image_url"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(float(START))


@pytest_asyncio.fixture
async def api(clock: ManualClock) -> AsyncIterator[FakeVideosAPI]:
    async with FakeVideosAPI(clock=clock, queue_seconds=1.0, run_seconds=5.0) as fake:
        yield fake


@pytest_asyncio.fixture
async def http(api: FakeVideosAPI) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {api.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


def url(api: FakeVideosAPI, path: str) -> yarl.URL:
    """An already-encoded URL, so that aiohttp sends the path exactly as written."""
    return yarl.URL(f"{api.url}{path}", encoded=True)


async def call(
    http: aiohttp.ClientSession, api: FakeVideosAPI, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, Any]:
    """Send a request; return (status, parsed JSON body or raw bytes, headers)."""
    async with http.request(method, url(api, path), **kwargs) as resp:
        body = await resp.read()
        parsed = json.loads(body) if resp.content_type == "application/json" else body
        return resp.status, parsed, resp.headers


def assert_error(body: Any, *, param: str | None = None, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["param"] == param
    if code is not None:
        assert body["error"]["code"] == code


class TestLifecycle:
    """Starting, addressing and closing the fake."""

    async def test_urls(self, api: FakeVideosAPI) -> None:
        """base_url is the root plus /v1 on a free loopback port."""
        assert api.url == f"http://127.0.0.1:{api.port}"
        assert api.base_url == f"{api.url}/v1"
        assert api.port > 0

    async def test_start_close_without_context_manager(self) -> None:
        """start() and close() work directly; close is idempotent; url needs a started fake."""
        fake = FakeVideosAPI()
        with pytest.raises(RuntimeError):
            _ = fake.url
        await fake.start()
        with pytest.raises(RuntimeError):
            await fake.start()
        await fake.close()
        await fake.close()

    async def test_two_fakes_do_not_share_state(self, clock: ManualClock) -> None:
        """Jobs, requests and faults belong to one fake only."""
        async with FakeVideosAPI(clock=clock) as one, FakeVideosAPI(clock=clock) as two:
            one.seed(2)
            one.inject(Fault(status=500))
            assert len(one.videos) == 2
            assert len(two.videos) == 0
            async with aiohttp.ClientSession() as session:
                headers = {"Authorization": f"Bearer {two.api_key}"}
                async with session.get(f"{two.base_url}/videos", headers=headers) as resp:
                    assert resp.status == 200
            assert len(two.requests) == 1
            assert one.requests == []

    async def test_ids_are_deterministic(self, clock: ManualClock) -> None:
        """The same seed gives the same ids."""
        async with (
            FakeVideosAPI(clock=clock, seed=7) as one,
            FakeVideosAPI(clock=clock, seed=7) as two,
        ):
            assert one.seed(3) == two.seed(3)

    def test_invalid_options(self, clock: ManualClock) -> None:
        """Contradictory or impossible options are rejected."""
        with pytest.raises(ValueError, match="speed"):
            FakeVideosAPI(clock=clock, speed=2.0)
        with pytest.raises(ValueError, match="content_sizes"):
            FakeVideosAPI(content_sizes={"poster": 1})
        with pytest.raises(ValueError, match="negative"):
            FakeVideosAPI(run_seconds=-1)

    async def test_speed_scales_real_time(self) -> None:
        """speed=100 makes 2 s of queue and run pass in about 20 ms of real time."""
        async with FakeVideosAPI(speed=100.0, queue_seconds=1.0, run_seconds=1.0) as fake:
            (job,) = fake.add_videos({"status": "queued"})
            assert fake.videos[job["id"]]["status"] == "queued"
            # Well under the 2 s the job takes at speed 1.
            await until(
                lambda: fake.videos[job["id"]]["status"] == "completed",
                "the job completing",
                timeout=1.0,
            )


class TestAuth:
    """API key checks."""

    async def test_missing_key(self, api: FakeVideosAPI) -> None:
        """No key is a 401 OpenAI-shaped error with a request id."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{api.base_url}/videos") as resp,
        ):
            assert resp.status == 401
            assert resp.content_type == "application/json"
            assert resp.headers["x-request-id"].startswith("req_")
            assert_error(await resp.json(), code="invalid_api_key")

    async def test_wrong_key_is_masked(self, api: FakeVideosAPI) -> None:
        """A wrong key is a 401 whose message never echoes the whole key."""
        key = "sk-wrong-key-0123456789"
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {key}"}
            async with session.get(f"{api.base_url}/videos", headers=headers) as resp:
                body = await resp.json()
        assert resp.status == 401
        assert_error(body, code="invalid_api_key")
        assert key not in body["error"]["message"]
        assert "sk-...89" in body["error"]["message"]

    async def test_api_key_header(self, api: FakeVideosAPI) -> None:
        """The api-key header (Azure style) is accepted too."""
        async with aiohttp.ClientSession() as session:
            headers = {"api-key": api.api_key}
            async with session.get(f"{api.base_url}/videos", headers=headers) as resp:
                assert resp.status == 200

    async def test_auth_can_be_disabled(self, clock: ManualClock) -> None:
        """require_auth=False accepts requests without a key."""
        async with (
            FakeVideosAPI(clock=clock, require_auth=False) as fake,
            aiohttp.ClientSession() as session,
            session.get(f"{fake.base_url}/videos") as resp,
        ):
            assert resp.status == 200

    async def test_custom_key(self, clock: ManualClock) -> None:
        """api_key= sets the key the fake accepts."""
        async with FakeVideosAPI(clock=clock, api_key="sk-mine-1234567") as fake:
            assert fake.api_key == "sk-mine-1234567"
            async with aiohttp.ClientSession() as session:
                headers = {"Authorization": "Bearer sk-mine-1234567"}
                async with session.get(f"{fake.base_url}/videos", headers=headers) as resp:
                    assert resp.status == 200


class TestRouting:
    """Paths are matched on raw segments; each segment is decoded exactly once."""

    async def test_unknown_path(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """An unknown path is an OpenAI-shaped 404."""
        for path in ("/v1/nope", "/v2/videos", "/", "/v1/videos/x/y/z"):
            status, body, headers = await call(http, api, "GET", path)
            assert status == 404, path
            assert_error(body)
            assert headers["x-request-id"].startswith("req_")

    async def test_head_on_a_kept_alive_connection_has_no_body(self, api: FakeVideosAPI) -> None:
        """HEAD answers (a GET route's, a 404) carry headers only, so the next response
        on the same connection starts right after them."""
        (video_id,) = api.seed(1)
        reader, writer = await asyncio.open_connection(api.host, api.port)
        auth = f"Authorization: Bearer {api.api_key}\r\n"
        paths = [
            "/v1/nope",
            f"/v1/videos/{video_id}",
            "/v1/videos",
            f"/v1/videos/{video_id}/content",
        ]
        for path in paths:
            writer.write(f"HEAD {path} HTTP/1.1\r\nHost: fake\r\n{auth}\r\n".encode())
        writer.write(
            f"GET /v1/videos/{video_id} HTTP/1.1\r\nHost: fake\r\n{auth}"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
        heads = []
        for _ in paths:
            head, separator, data = data.partition(b"\r\n\r\n")
            assert separator
            heads.append(head.decode().split("\r\n"))
            assert data.startswith(b"HTTP/1.1 "), data[:80]  # no body bytes in between
        assert [lines[0] for lines in heads] == [
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
        ]
        content = dict(line.split(": ", 1) for line in heads[3][1:])
        assert content["Content-Length"] == str(len(api.content_bytes(video_id)))
        assert content["Content-Type"] == "video/mp4"
        assert content["Accept-Ranges"] == "bytes"
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert json.loads(body)["id"] == video_id
        assert [r.method for r in api.requests] == ["HEAD"] * 4 + ["GET"]

    async def test_head_gets_the_get_routes_headers(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        (video_id,) = api.seed(1)
        path = f"/v1/videos/{video_id}/content"
        async with http.head(url(api, path), headers={"Range": "bytes=10-"}) as head:
            assert await head.read() == b""
            head_headers = head.headers
        status, body, got = await call(http, api, "GET", path, headers={"Range": "bytes=10-"})
        assert (head.status, status) == (206, 206)
        for name in ("Content-Length", "Content-Range", "Content-Type", "ETag"):
            assert head_headers[name] == got[name]
        assert len(body) == int(got["Content-Length"])

    async def test_wrong_method(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A method the endpoint lacks is a 404 too, as on the real API."""
        status, body, _ = await call(http, api, "DELETE", "/v1/videos")
        assert status == 404
        assert "Invalid URL" in body["error"]["message"]

    async def test_encoded_slash_is_one_segment(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """a%2Fb is the id "a/b": 404 when unknown, found when seeded."""
        status, body, _ = await call(http, api, "GET", "/v1/videos/a%2Fb")
        assert status == 404
        assert_error(body, param="video_id", code="video_not_found")
        assert "'a/b'" in body["error"]["message"]
        assert api.requests[-1].path == "/v1/videos/a/b"
        assert api.requests[-1].raw_path == "/v1/videos/a%2Fb"
        api.add_videos({"id": "a/b"})
        status, body, _ = await call(http, api, "GET", "/v1/videos/a%2Fb")
        assert (status, body["id"]) == (200, "a/b")

    async def test_encoded_slash_does_not_reach_content(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """a%2Fcontent never routes to the content endpoint of "a"."""
        api.add_videos({"id": "a"})
        status, body, _ = await call(http, api, "GET", "/v1/videos/a%2Fcontent")
        assert status == 404
        assert body["error"]["code"] == "video_not_found"

    @pytest.mark.parametrize(
        ("raw", "decoded"),
        [("%3F", "?"), ("%2E%2E", ".."), ("a%20b", "a b"), ("%25", "%"), ("%23x", "#x")],
    )
    async def test_special_ids(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession, raw: str, decoded: str
    ) -> None:
        """Encoded special characters decode once into the id."""
        status, body, _ = await call(http, api, "GET", f"/v1/videos/{raw}")
        assert status == 404
        assert f"'{decoded}'" in body["error"]["message"]
        api.add_videos({"id": decoded})
        status, body, _ = await call(http, api, "GET", f"/v1/videos/{raw}")
        assert (status, body["id"]) == (200, decoded)

    async def test_double_encoding_decodes_once(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """%252F is the three characters "%2F", not a slash."""
        api.add_videos({"id": "x%2Fy"})
        status, body, _ = await call(http, api, "GET", "/v1/videos/x%252Fy")
        assert (status, body["id"]) == (200, "x%2Fy")

    async def test_literal_segment_names_as_ids(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """GET /videos/edits is a retrieve of the id "edits" (there is no GET edits)."""
        status, body, _ = await call(http, api, "GET", "/v1/videos/edits")
        assert status == 404
        assert body["error"]["code"] == "video_not_found"


class TestList:
    """GET /videos: order, cursor, limit, has_more."""

    async def test_default_is_desc_limit_20(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Without parameters: newest first, 20 items."""
        ids = api.seed(25)
        status, body, _ = await call(http, api, "GET", "/v1/videos")
        assert status == 200
        assert body["object"] == "list"
        assert [v["id"] for v in body["data"]] == ids[::-1][:20]
        assert body["first_id"] == ids[-1]
        assert body["last_id"] == ids[5]
        assert body["has_more"] is True

    async def test_pages_asc_and_desc(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Following last_id visits every item once, in both orders."""
        ids = api.seed(23)
        for order, expected in (("asc", ids), ("desc", ids[::-1])):
            seen: list[str] = []
            after: str | None = None
            while True:
                query = f"?order={order}&limit=5" + (f"&after={after}" if after else "")
                _, body, _ = await call(http, api, "GET", "/v1/videos" + query)
                seen += [v["id"] for v in body["data"]]
                if not body["has_more"]:
                    break
                after = body["last_id"]
            assert seen == expected

    async def test_ties_are_ordered_by_id(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Jobs created in the same second are ordered by id; given in any order."""
        api.add_videos(*({"id": f"v{c}", "created_at": START} for c in "cab"))
        _, body, _ = await call(http, api, "GET", "/v1/videos?order=asc&limit=2")
        assert [v["id"] for v in body["data"]] == ["va", "vb"]
        _, body, _ = await call(http, api, "GET", "/v1/videos?order=asc&after=vb")
        assert [v["id"] for v in body["data"]] == ["vc"]
        assert body["has_more"] is False

    async def test_empty_page(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """An empty page has null first_id/last_id."""
        _, body, _ = await call(http, api, "GET", "/v1/videos")
        assert body == {
            "object": "list",
            "data": [],
            "first_id": None,
            "last_id": None,
            "has_more": False,
        }

    async def test_limit_zero_is_refused(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Not a page of none with has_more and no cursor (a naive loop would start over)."""
        api.seed(1)
        status, body, _ = await call(http, api, "GET", "/v1/videos?limit=0")
        assert status == 400
        assert_error(body, param="limit", code="integer_below_min_value")
        assert "Expected a value >= 1" in body["error"]["message"]

    @pytest.mark.parametrize(
        ("limit", "code"),
        [
            ("-1", "invalid_type"),
            ("101", "integer_above_max_value"),
            ("abc", "invalid_type"),
            ("1.5", "invalid_type"),
            ("", "invalid_type"),
            ("\u00b2", "invalid_type"),
        ],
    )
    async def test_bad_limit(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession, limit: str, code: str
    ) -> None:
        """A limit outside 1..100 or not an integer is a 400 naming "limit"."""
        status, body, _ = await call(http, api, "GET", "/v1/videos", params={"limit": limit})
        assert status == 400
        assert_error(body, param="limit", code=code)

    @pytest.mark.parametrize("limit", ["1", "100"])
    async def test_limit_bounds_are_allowed(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession, limit: str
    ) -> None:
        api.seed(101)
        status, body, _ = await call(http, api, "GET", f"/v1/videos?limit={limit}")
        assert status == 200
        assert len(body["data"]) == int(limit)

    async def test_bad_order(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """An order other than asc/desc is a 400 naming "order"."""
        status, body, _ = await call(http, api, "GET", "/v1/videos?order=up")
        assert status == 400
        assert_error(body, param="order")

    async def test_unknown_after(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """An after id that never existed is a 400 naming "after"."""
        status, body, _ = await call(http, api, "GET", "/v1/videos?after=video_never")
        assert status == 400
        assert_error(body, param="after")

    async def test_after_deleted_item(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """A cursor deleted mid-listing still continues from where it was."""
        ids = api.seed(6)
        _, body, _ = await call(http, api, "GET", "/v1/videos?order=asc&limit=3")
        assert body["last_id"] == ids[2]
        assert api.remove_video(ids[2]) is True
        assert api.remove_video(ids[2]) is False
        _, body, _ = await call(http, api, "GET", f"/v1/videos?order=asc&after={ids[2]}")
        assert [v["id"] for v in body["data"]] == ids[3:]
        _, body, _ = await call(http, api, "GET", f"/v1/videos?order=desc&after={ids[2]}")
        assert [v["id"] for v in body["data"]] == ids[1::-1]

    async def test_many_jobs_fast(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """Listing 12,000 jobs 100 at a time is quick (bisect, no per-request sort)."""
        began = time.perf_counter()
        ids = api.seed(12_000)
        count, after = 0, ""
        while True:
            _, body, _ = await call(
                http, api, "GET", f"/v1/videos?order=asc&limit=100&after={after}"
            )
            count += len(body["data"])
            if not body["has_more"]:
                break
            after = body["last_id"]
        assert count == len(ids)
        assert time.perf_counter() - began < 10


class TestCreate:
    """POST /videos: JSON and multipart, validation."""

    async def test_create_json(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A new job is queued at progress 0 with the poll-after header."""
        payload = {"prompt": "a fox", "model": "sora-2-pro", "seconds": "8", "size": "1280x720"}
        status, body, headers = await call(http, api, "POST", "/v1/videos", json=payload)
        assert status == 200
        assert body["id"].startswith("video_")
        assert len(body["id"]) == 38
        assert body["status"] == "queued"
        assert body["progress"] == 0
        assert body["created_at"] == START
        assert (body["model"], body["seconds"], body["size"]) == ("sora-2-pro", "8", "1280x720")
        assert body["completed_at"] is None
        assert body["error"] is None
        assert headers["openai-poll-after-ms"] == "1000"
        assert body["id"] in api.videos

    async def test_defaults(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """model, seconds and size default as the spec says."""
        _, body, _ = await call(http, api, "POST", "/v1/videos", json={"prompt": "p"})
        assert (body["model"], body["seconds"], body["size"]) == ("sora-2", "4", "720x1280")

    async def test_create_multipart_with_file(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Multipart with an input_reference file part is accepted and recorded."""
        form = aiohttp.FormData()
        form.add_field("prompt", "un renard é")
        form.add_field("seconds", "12")
        data = bytes(range(256)) * 4 + b"\r\n--x\r\n"
        form.add_field("input_reference", data, filename="ref.png", content_type="image/png")
        status, body, _ = await call(http, api, "POST", "/v1/videos", data=form)
        assert status == 200
        assert (body["prompt"], body["seconds"]) == ("un renard é", "12")
        recorded = api.requests[-1].form
        assert recorded is not None
        assert recorded["input_reference"] == {
            "filename": "ref.png",
            "content_type": "image/png",
            "size": len(data),
        }

    @pytest.mark.parametrize(
        "reference",
        [
            {"image_url": "https://example.com/a.png"},
            {"image_url": "data:image/png;base64,iVBORw0KGgo="},
            {"file_id": "file-123"},
        ],
    )
    async def test_input_reference_object(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession, reference: dict[str, str]
    ) -> None:
        """An input_reference object with exactly one of image_url/file_id is accepted."""
        payload = {"prompt": "p", "input_reference": reference}
        status, _, _ = await call(http, api, "POST", "/v1/videos", json=payload)
        assert status == 200

    @pytest.mark.parametrize(
        ("payload", "param"),
        [
            ({}, "prompt"),
            ({"prompt": ""}, "prompt"),
            ({"prompt": "x" * 32001}, "prompt"),
            ({"prompt": 5}, "prompt"),
            ({"prompt": "p", "seconds": "5"}, "seconds"),
            ({"prompt": "p", "seconds": 4}, "seconds"),
            ({"prompt": "p", "size": "100x100"}, "size"),
            ({"prompt": "p", "model": ""}, "model"),
            ({"prompt": "p", "input_reference": {}}, "input_reference"),
            ({"prompt": "p", "input_reference": {"image_url": "u", "file_id": "f"}}, None),
            ({"prompt": "p", "input_reference": "file-1"}, "input_reference"),
            ({"prompt": "p", "input_reference": {"image_url": "a.png"}}, IMAGE_URL),
            ({"prompt": "p", "input_reference": {"image_url": "not a url"}}, IMAGE_URL),
            ({"prompt": "p", "input_reference": {"image_url": "https://"}}, IMAGE_URL),
            ({"prompt": "p", "input_reference": {"image_url": "https://a b/c.png"}}, IMAGE_URL),
            ({"prompt": "p", "input_reference": {"image_url": "https://a:99999/"}}, IMAGE_URL),
            ({"prompt": "p", "quality": "hd"}, "quality"),
        ],
    )
    async def test_validation(
        self,
        api: FakeVideosAPI,
        http: aiohttp.ClientSession,
        payload: dict[str, Any],
        param: str | None,
    ) -> None:
        """Each invalid parameter is a 400 naming it; no job is created."""
        status, body, _ = await call(http, api, "POST", "/v1/videos", json=payload)
        assert status == 400
        assert_error(body, param=param or "input_reference")
        assert len(api.videos) == 0

    async def test_an_image_url_in_a_form_is_checked(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """The reference object sent as a multipart text field is held to the same rule."""
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("prompt", "p")
        form.add_field("input_reference", json.dumps({"image_url": "no-scheme.png"}))
        status, body, _ = await call(http, api, "POST", "/v1/videos", data=form)
        assert status == 400
        assert_error(body, param=IMAGE_URL, code="invalid_value")
        assert len(api.videos) == 0

    async def test_prompt_at_max_length(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """A prompt of exactly 32000 characters is fine."""
        payload = {"prompt": "x" * 32000}
        status, _, _ = await call(http, api, "POST", "/v1/videos", json=payload)
        assert status == 200

    async def test_invalid_json(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A body that is not JSON (or not an object) is a 400."""
        headers = {"Content-Type": "application/json"}
        status, body, _ = await call(
            http, api, "POST", "/v1/videos", data=b"{nope", headers=headers
        )
        assert status == 400
        assert_error(body)
        status, body, _ = await call(http, api, "POST", "/v1/videos", json=["prompt"])
        assert status == 400

    async def test_poll_header_optional(self, clock: ManualClock) -> None:
        """poll_after_ms=None omits the header."""
        async with (
            FakeVideosAPI(clock=clock, poll_after_ms=None, require_auth=False) as fake,
            aiohttp.ClientSession() as session,
            session.post(f"{fake.base_url}/videos", json={"prompt": "p"}) as resp,
        ):
            assert "openai-poll-after-ms" not in resp.headers


class TestProgression:
    """Status computed from the clock at read time."""

    async def test_queued_in_progress_completed(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession, clock: ManualClock
    ) -> None:
        """queued for 1 s, in progress for 5 s with rising progress, then completed."""
        _, job, _ = await call(http, api, "POST", "/v1/videos", json={"prompt": "p"})
        path = f"/v1/videos/{job['id']}"
        clock.advance(0.5)
        _, body, headers = await call(http, api, "GET", path)
        assert (body["status"], body["progress"]) == ("queued", 0)
        assert headers["openai-poll-after-ms"] == "1000"
        clock.advance(0.5)
        _, body, _ = await call(http, api, "GET", path)
        assert (body["status"], body["progress"]) == ("in_progress", 0)
        clock.advance(2.5)
        _, body, _ = await call(http, api, "GET", path)
        assert (body["status"], body["progress"]) == ("in_progress", 49)
        clock.advance(2.4)
        _, body, _ = await call(http, api, "GET", path)
        assert body["status"] == "in_progress"
        assert body["progress"] <= 99
        clock.advance(0.1)
        _, body, _ = await call(http, api, "GET", path)
        assert (body["status"], body["progress"]) == ("completed", 100)
        assert body["completed_at"] == START + 6
        assert body["expires_at"] == START + 6 + 86400
        assert body["error"] is None

    async def test_default_outcome_failed(
        self, api: FakeVideosAPI, clock: ManualClock, http: aiohttp.ClientSession
    ) -> None:
        """set_outcome(None, "failed") makes new jobs fail with an error object."""
        api.set_outcome(None, "failed", error={"code": "moderation_blocked", "message": "no"})
        _, job, _ = await call(http, api, "POST", "/v1/videos", json={"prompt": "p"})
        clock.advance(10)
        view = api.videos[job["id"]]
        assert view["status"] == "failed"
        assert view["error"] == {"code": "moderation_blocked", "message": "no"}
        assert (view["progress"], view["completed_at"], view["expires_at"]) == (0, None, None)

    async def test_outcome_per_job_and_duration(
        self, api: FakeVideosAPI, clock: ManualClock
    ) -> None:
        """set_outcome on a queued job changes its end and run time."""
        (job,) = api.add_videos({"status": "queued"})
        api.set_outcome(job["id"], "failed", duration=100)
        clock.advance(50)
        assert api.videos[job["id"]]["status"] == "in_progress"
        clock.advance(60)
        assert api.videos[job["id"]]["status"] == "failed"
        assert api.videos[job["id"]]["error"]["code"]

    async def test_outcome_for_future_seeded_id(
        self, api: FakeVideosAPI, clock: ManualClock
    ) -> None:
        """An outcome set for an unknown id applies when that id is seeded."""
        api.set_outcome("video_later", "failed")
        api.add_videos({"id": "video_later", "status": "queued"})
        clock.advance(10)
        assert api.videos["video_later"]["status"] == "failed"

    async def test_outcome_switches_final_seeded_job(self, api: FakeVideosAPI) -> None:
        """A seeded completed job switches to failed (and back) at once."""
        api.add_videos({"id": "v1"})
        api.set_outcome("v1", "failed")
        assert api.videos["v1"]["status"] == "failed"
        api.set_outcome("v1", "completed")
        assert api.videos["v1"]["status"] == "completed"
        assert api.videos["v1"]["expires_at"] is not None

    async def test_seeded_final_statuses_stay(self, api: FakeVideosAPI, clock: ManualClock) -> None:
        """Seeded completed/failed jobs are shown as given, forever."""
        done, failed = api.add_videos(
            {"id": "d", "created_at": START - 100},
            {"id": "f", "status": "failed", "error": {"code": "x", "message": "y"}},
        )
        assert done["completed_at"] == START - 94
        assert done["expires_at"] == START - 94 + 86400
        assert failed["error"] == {"code": "x", "message": "y"}
        clock.advance(10_000)
        assert api.videos["d"] == done
        assert api.videos["f"] == failed

    async def test_seeded_in_progress(self, api: FakeVideosAPI, clock: ManualClock) -> None:
        """A seeded in_progress job is in progress now, at its progress, then finishes."""
        (job,) = api.add_videos({"status": "in_progress", "progress": 50})
        assert (job["status"], job["progress"]) == ("in_progress", 50)
        clock.advance(3)
        assert api.videos[job["id"]]["status"] == "completed"

    async def test_seeded_queued_in_the_past(self, api: FakeVideosAPI) -> None:
        """A queued job created long ago has progressed from its created_at."""
        (job,) = api.add_videos({"status": "queued", "created_at": START - 3600})
        assert job["status"] == "completed"
        assert job["completed_at"] == START - 3600 + 6

    async def test_seed_defaults_and_extras(self, api: FakeVideosAPI) -> None:
        """add_videos fills realistic defaults and keeps unknown extra fields."""
        (job,) = api.add_videos({"id": "video_fb4e", "quality": "standard"})
        assert job == {
            "id": "video_fb4e",
            "object": "video",
            "model": "sora-2",
            "status": "completed",
            "progress": 100,
            "created_at": START,
            "completed_at": START + 6,
            "expires_at": START + 6 + 86400,
            "prompt": job["prompt"],
            "size": "720x1280",
            "seconds": "4",
            "remixed_from_video_id": None,
            "error": None,
            "quality": "standard",
        }
        with pytest.raises(ValueError, match="status"):
            api.add_videos({"status": "done"})

    async def test_seed_helper(self, api: FakeVideosAPI) -> None:
        """seed() returns ids in ascending listing order, created one second apart."""
        ids = api.seed(3, status="failed", prefix="vid_", start=100)
        assert [api.videos[i]["created_at"] for i in ids] == [100, 101, 102]
        assert all(i.startswith("vid_") for i in ids)
        assert list(api.videos) == ids

    async def test_videos_view_is_read_only(self, api: FakeVideosAPI) -> None:
        """api.videos is a mapping, not a mutable store."""
        api.seed(1)
        with pytest.raises(TypeError):
            api.videos["x"] = {}  # type: ignore[index]
        with pytest.raises(KeyError):
            api.videos["missing"]


class TestDerivedJobs:
    """Remix, edits, extensions and characters."""

    async def test_remix(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A remix of a completed job is a new queued job pointing at its source."""
        (src,) = api.add_videos({"id": "src", "size": "1792x1024", "seconds": "8"})
        status, body, headers = await call(
            http, api, "POST", "/v1/videos/src/remix", json={"prompt": "again"}
        )
        assert status == 200
        assert body["remixed_from_video_id"] == "src"
        assert (body["status"], body["prompt"]) == ("queued", "again")
        assert (body["size"], body["seconds"]) == (src["size"], src["seconds"])
        assert "openai-poll-after-ms" in headers

    async def test_remix_errors(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """Remixing an unknown job is 404; a job not completed is 400."""
        status, body, _ = await call(
            http, api, "POST", "/v1/videos/none/remix", json={"prompt": "p"}
        )
        assert status == 404
        assert_error(body, param="video_id", code="video_not_found")
        api.add_videos({"id": "q", "status": "queued"})
        status, body, _ = await call(http, api, "POST", "/v1/videos/q/remix", json={"prompt": "p"})
        assert status == 400
        assert_error(body, param="video_id", code="invalid_video_state")
        api.add_videos({"id": "c"})
        status, body, _ = await call(http, api, "POST", "/v1/videos/c/remix", json={"x": 1})
        assert status == 400
        assert_error(body, param="x")

    async def test_edit_json_and_upload(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """An edit takes a completed video by id (JSON or multipart) or an uploaded file."""
        api.add_videos({"id": "src"})
        payload = {"video": {"id": "src"}, "prompt": "bluer"}
        status, body, _ = await call(http, api, "POST", "/v1/videos/edits", json=payload)
        assert (status, body["status"], body["prompt"]) == (200, "queued", "bluer")
        form = aiohttp.FormData()
        form.add_field("prompt", "bluer")
        form.add_field("video", b"\x00" * 100, filename="in.mp4", content_type="video/mp4")
        status, _, _ = await call(http, api, "POST", "/v1/videos/edits", data=form)
        assert status == 200
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("prompt", "bluer")
        form.add_field("video", json.dumps({"id": "src"}))
        status, _, _ = await call(http, api, "POST", "/v1/videos/edits", data=form)
        assert status == 200

    async def test_edit_errors(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """An edit needs a video reference to a completed job."""
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"prompt": "p"}, 400, "video"),
            ({"prompt": "p", "video": "src"}, 400, "video"),
            ({"prompt": "p", "video": {"id": "none"}}, 404, "video_id"),
            ({"video": {"id": "none"}}, 400, "prompt"),
        ]
        for payload, expected, param in cases:
            status, body, _ = await call(http, api, "POST", "/v1/videos/edits", json=payload)
            assert (status, body["error"]["param"]) == (expected, param), payload

    async def test_extension(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """An extension's seconds is the stitched total; seconds is required."""
        api.add_videos({"id": "src", "seconds": "8"})
        payload = {"video": {"id": "src"}, "prompt": "more", "seconds": "4"}
        status, body, _ = await call(http, api, "POST", "/v1/videos/extensions", json=payload)
        assert (status, body["seconds"]) == (200, "12")
        del payload["seconds"]
        status, body, _ = await call(http, api, "POST", "/v1/videos/extensions", json=payload)
        assert status == 400
        assert_error(body, param="seconds")
        api.add_videos({"id": "running", "status": "in_progress"})
        payload = {"video": {"id": "running"}, "prompt": "more", "seconds": "4"}
        status, body, _ = await call(http, api, "POST", "/v1/videos/extensions", json=payload)
        assert status == 400
        assert_error(body, param="video", code="invalid_video_state")

    async def test_characters(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A character is created from an uploaded video and can be fetched."""
        form = aiohttp.FormData()
        form.add_field("name", "Mochi")
        form.add_field("video", b"\x01" * 10, filename="c.mp4", content_type="video/mp4")
        status, body, _ = await call(http, api, "POST", "/v1/videos/characters", data=form)
        assert status == 200
        assert body["id"].startswith("char_")
        assert body["name"] == "Mochi"
        status, fetched, _ = await call(http, api, "GET", f"/v1/videos/characters/{body['id']}")
        assert (status, fetched) == (200, body)
        status, missing, _ = await call(http, api, "GET", "/v1/videos/characters/char_x")
        assert status == 404
        assert_error(missing, param="character_id", code="character_not_found")

    async def test_character_errors(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """Characters need multipart, a video file and a name of 1..80 characters."""
        status, _, _ = await call(
            http, api, "POST", "/v1/videos/characters", json={"name": "x", "video": "y"}
        )
        assert status == 400
        for name, expected in (("", "name"), ("x" * 81, "name"), (None, "video")):
            form = aiohttp.FormData(default_to_multipart=True)
            if name is not None:
                form.add_field("name", name)
                form.add_field("video", b"\x01", filename="c.mp4", content_type="video/mp4")
            else:
                form.add_field("name", "ok")
            status, body, _ = await call(http, api, "POST", "/v1/videos/characters", data=form)
            assert (status, body["error"]["param"]) == (400, expected)


class TestDelete:
    """DELETE /videos/{id}."""

    async def test_delete(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """Deleting returns the deletion object; the job is gone after."""
        api.add_videos({"id": "v"})
        status, body, _ = await call(http, api, "DELETE", "/v1/videos/v")
        assert (status, body) == (200, {"id": "v", "object": "video.deleted", "deleted": True})
        assert "v" not in api.videos
        status, body, _ = await call(http, api, "DELETE", "/v1/videos/v")
        assert status == 404
        assert_error(body, param="video_id", code="video_not_found")

    async def test_delete_running_job(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Only completed or failed jobs can be deleted (per the spec)."""
        api.add_videos({"id": "q", "status": "queued"})
        status, body, _ = await call(http, api, "DELETE", "/v1/videos/q")
        assert status == 400
        assert_error(body, param="video_id", code="invalid_video_state")


class TestIdempotency:
    """Idempotency-Key on POST."""

    async def test_replay(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """The same key returns the first response and creates no new job."""
        headers = {"Idempotency-Key": "k1"}
        payload = {"prompt": "p"}
        _, first, _ = await call(http, api, "POST", "/v1/videos", json=payload, headers=headers)
        _, again, hdrs = await call(http, api, "POST", "/v1/videos", json=payload, headers=headers)
        assert again == first
        assert hdrs["idempotent-replayed"] == "true"
        assert len(api.videos) == 1
        assert len(api.requests) == 2
        _, other, _ = await call(
            http, api, "POST", "/v1/videos", json=payload, headers={"Idempotency-Key": "k2"}
        )
        assert other["id"] != first["id"]

    async def test_errors_are_not_remembered(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """A rejected request with a key does not block a corrected retry."""
        headers = {"Idempotency-Key": "k"}
        status, _, _ = await call(http, api, "POST", "/v1/videos", json={}, headers=headers)
        assert status == 400
        status, _, _ = await call(
            http, api, "POST", "/v1/videos", json={"prompt": "p"}, headers=headers
        )
        assert status == 200

    async def test_a_key_reused_for_another_request_is_a_422(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Same key, other body: an OpenAI-shaped 422 and no job, as careful servers do."""
        headers = {"Idempotency-Key": "k"}
        await call(http, api, "POST", "/v1/videos", json={"prompt": "p"}, headers=headers)
        status, body, _ = await call(
            http, api, "POST", "/v1/videos", json={"prompt": "other"}, headers=headers
        )
        assert status == 422
        assert_error(body, param="Idempotency-Key", code="idempotency_key_reused")
        assert len(api.videos) == 1
        # The key order of a JSON body does not make it another request.
        status, _, replayed = await call(
            http,
            api,
            "POST",
            "/v1/videos",
            data=b'{"prompt":  "p"}',
            headers={**headers, "Content-Type": "application/json"},
        )
        assert (status, replayed["idempotent-replayed"]) == (200, "true")

    async def test_multipart_bodies_compare_without_their_boundary(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """Two uploads of the same file replay; another file is a reuse."""
        headers = {"Idempotency-Key": "upload"}

        def form(data: bytes) -> aiohttp.FormData:
            sent = aiohttp.FormData()
            sent.add_field("prompt", "p")
            sent.add_field("input_reference", data, filename="a.png", content_type="image/png")
            return sent

        png = b"\x89PNG\r\n\x1a\n" + bytes(16)
        first = await call(http, api, "POST", "/v1/videos", data=form(png), headers=headers)
        again = await call(http, api, "POST", "/v1/videos", data=form(png), headers=headers)
        assert first[0] == again[0] == 200
        assert again[1]["id"] == first[1]["id"]
        other = await call(http, api, "POST", "/v1/videos", data=form(png + b"x"), headers=headers)
        assert other[0] == 422

    async def test_keys_are_forgotten_after_their_time(
        self, clock: ManualClock, http: aiohttp.ClientSession
    ) -> None:
        """After idempotency_ttl seconds of the fake's clock the key is new again."""
        async with FakeVideosAPI(clock=clock, idempotency_ttl=60) as api:
            headers = {"Idempotency-Key": "k"}
            _, first, _ = await call(
                http, api, "POST", "/v1/videos", json={"prompt": "p"}, headers=headers
            )
            clock.advance(59)
            _, same, _ = await call(
                http, api, "POST", "/v1/videos", json={"prompt": "p"}, headers=headers
            )
            clock.advance(1)
            _, fresh, _ = await call(
                http, api, "POST", "/v1/videos", json={"prompt": "p"}, headers=headers
            )
        assert same["id"] == first["id"]
        assert fresh["id"] != first["id"]

    async def test_keys_can_be_ignored_as_litellm_does(
        self, clock: ManualClock, http: aiohttp.ClientSession
    ) -> None:
        """idempotency_keys=False: every POST creates a job, whatever its key."""
        async with FakeVideosAPI(clock=clock, idempotency_keys=False) as api:
            headers = {"Idempotency-Key": "k"}
            for prompt in ("p", "p", "other"):
                status, _, replied = await call(
                    http, api, "POST", "/v1/videos", json={"prompt": prompt}, headers=headers
                )
                assert status == 200
                assert "idempotent-replayed" not in replied
            assert len(api.videos) == 3

    def test_bad_settings(self) -> None:
        with pytest.raises(TypeError, match="idempotency_keys"):
            FakeVideosAPI(idempotency_keys="no")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="idempotency_ttl"):
            FakeVideosAPI(idempotency_ttl=-1)


class TestContent:
    """GET /videos/{id}/content: bytes, variants, ranges."""

    async def test_full_download(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """The body is content_bytes(), with type, length and Accept-Ranges."""
        api.add_videos({"id": "v"})
        status, body, headers = await call(http, api, "GET", "/v1/videos/v/content")
        assert status == 200
        assert body == api.content_bytes("v")
        assert len(body) == 256 * 1024
        assert body[4:8] == b"ftyp"
        assert headers["Content-Type"] == "video/mp4"
        assert headers["Content-Length"] == str(len(body))
        assert headers["Accept-Ranges"] == "bytes"
        assert headers["x-request-id"].startswith("req_")

    @pytest.mark.parametrize(
        ("variant", "ctype", "size"),
        [("thumbnail", "image/webp", 8192), ("spritesheet", "image/jpeg", 32768)],
    )
    async def test_variants(
        self,
        api: FakeVideosAPI,
        http: aiohttp.ClientSession,
        variant: str,
        ctype: str,
        size: int,
    ) -> None:
        """Each variant has its own type, size and bytes."""
        api.add_videos({"id": "v"})
        status, body, headers = await call(
            http, api, "GET", f"/v1/videos/v/content?variant={variant}"
        )
        assert (status, headers["Content-Type"], len(body)) == (200, ctype, size)
        assert body == api.content_bytes("v", variant)
        assert body != api.content_bytes("v")[:size]

    async def test_bytes_deterministic(self, clock: ManualClock) -> None:
        """The same id and variant give the same bytes in another fake; sizes configurable."""
        sizes = {"video": 1000, "thumbnail": 10}
        async with (
            FakeVideosAPI(clock=clock, content_sizes=sizes) as one,
            FakeVideosAPI(clock=clock, content_sizes=sizes) as two,
        ):
            assert one.content_bytes("v") == two.content_bytes("v")
            assert len(one.content_bytes("v")) == 1000
            assert one.content_bytes("v") != one.content_bytes("w")
            with pytest.raises(ValueError, match="variant"):
                one.content_bytes("v", "poster")

    async def test_big_content_is_fast(self, clock: ManualClock) -> None:
        """64 MiB is generated and streamed quickly."""
        size = 64 * 1024 * 1024
        async with FakeVideosAPI(
            clock=clock, content_sizes={"video": size}, require_auth=False
        ) as fake:
            fake.add_videos({"id": "big"})
            began = time.perf_counter()
            expected = fake.content_bytes("big")
            received = 0
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{fake.base_url}/videos/big/content") as resp,
            ):
                async for chunk in resp.content.iter_chunked(1 << 20):
                    assert chunk == expected[received : received + len(chunk)]
                    received += len(chunk)
            assert received == size
            assert time.perf_counter() - began < 10

    @pytest.mark.parametrize(
        ("header", "start", "end"),
        [("bytes=1000-", 1000, 262144), ("bytes=10-19", 10, 20), ("bytes=-100", 262044, 262144)],
    )
    async def test_range(
        self,
        api: FakeVideosAPI,
        http: aiohttp.ClientSession,
        header: str,
        start: int,
        end: int,
    ) -> None:
        """A satisfiable Range gives 206 with the slice and Content-Range."""
        api.add_videos({"id": "v"})
        status, body, headers = await call(
            http, api, "GET", "/v1/videos/v/content", headers={"Range": header}
        )
        assert status == 206
        assert body == api.content_bytes("v")[start:end]
        assert headers["Content-Range"] == f"bytes {start}-{end - 1}/262144"
        assert headers["Content-Length"] == str(end - start)

    async def test_range_unsatisfiable(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """A range starting past the end is a 416 with Content-Range: bytes */size."""
        api.add_videos({"id": "v"})
        status, body, headers = await call(
            http, api, "GET", "/v1/videos/v/content", headers={"Range": "bytes=262144-"}
        )
        assert status == 416
        assert headers["Content-Range"] == "bytes */262144"
        assert_error(body, param="range")

    async def test_ranges_disabled(self, clock: ManualClock) -> None:
        """accept_ranges=False ignores Range and omits Accept-Ranges."""
        async with FakeVideosAPI(clock=clock, accept_ranges=False, require_auth=False) as fake:
            fake.add_videos({"id": "v"})
            async with aiohttp.ClientSession() as session:
                headers = {"Range": "bytes=10-"}
                async with session.get(
                    f"{fake.base_url}/videos/v/content", headers=headers
                ) as resp:
                    assert resp.status == 200
                    assert "Accept-Ranges" not in resp.headers
                    assert await resp.read() == fake.content_bytes("v")

    def test_parse_range(self) -> None:
        """Odd Range headers are ignored or unsatisfiable as RFC 9110 says."""
        assert parse_range(None, 10) is None
        assert parse_range("bytes=0-1,5-6", 10) is None
        assert parse_range("items=0-1", 10) is None
        assert parse_range("bytes=5-2", 10) is None
        assert parse_range("bytes=-", 10) is None
        result = parse_range("bytes=-0", 10)
        assert result is not None
        assert not result.satisfiable
        result = parse_range("bytes=3-100", 10)
        assert result is not None
        assert (result.start, result.end) == (3, 10)

    async def test_not_ready(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """Content of a job that is not completed is a 404 with code video_not_ready."""
        api.add_videos({"id": "q", "status": "queued"}, {"id": "f", "status": "failed"})
        for video_id in ("q", "f"):
            status, body, _ = await call(http, api, "GET", f"/v1/videos/{video_id}/content")
            assert status == 404
            assert_error(body, param="video_id", code="video_not_ready")
        status, body, _ = await call(http, api, "GET", "/v1/videos/none/content")
        assert status == 404
        assert body["error"]["code"] == "video_not_found"

    async def test_bad_variant(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """An unknown variant is a 400 naming "variant"."""
        api.add_videos({"id": "v"})
        status, body, _ = await call(http, api, "GET", "/v1/videos/v/content?variant=poster")
        assert status == 400
        assert_error(body, param="variant")


class TestFaults:
    """Fault injection."""

    async def test_status_fault(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A status fault answers with an OpenAI-shaped body and extra headers, once."""
        api.inject(Fault(status=429, headers={"retry-after": "2"}))
        status, body, headers = await call(http, api, "GET", "/v1/videos")
        assert status == 429
        assert headers["retry-after"] == "2"
        assert headers["x-request-id"].startswith("req_")
        assert body["error"]["type"] == "requests"
        assert body["error"]["code"] == "rate_limit_exceeded"
        status, _, _ = await call(http, api, "GET", "/v1/videos")
        assert status == 200

    @pytest.mark.parametrize(("code", "type_"), [(500, "server_error"), (503, "server_error")])
    async def test_default_bodies(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession, code: int, type_: str
    ) -> None:
        """Server error faults have server_error bodies."""
        api.inject(Fault(status=code))
        status, body, _ = await call(http, api, "GET", "/v1/videos")
        assert status == code
        assert body["error"]["type"] == type_

    async def test_custom_bodies(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A fault body may be a mapping (JSON), str or bytes."""
        api.inject(Fault(status=502, body={"detail": "gateway"}))
        api.inject(Fault(status=502, body="<html>bad gateway</html>"))
        api.inject(Fault(status=502, body=b"\x00"))
        assert (await call(http, api, "GET", "/v1/videos"))[1] == {"detail": "gateway"}
        assert (await call(http, api, "GET", "/v1/videos"))[1] == b"<html>bad gateway</html>"
        assert (await call(http, api, "GET", "/v1/videos"))[1] == b"\x00"

    async def test_status_fault_does_not_run_post(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """A POST answered by a status fault creates nothing, but is recorded."""
        api.inject(Fault(status=500), method="POST")
        status, _, _ = await call(http, api, "POST", "/v1/videos", json={"prompt": "p"})
        assert status == 500
        assert len(api.videos) == 0
        assert api.requests[-1].json == {"prompt": "p"}

    async def test_headers_only(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A fault with only headers decorates the real response."""
        api.inject(Fault(headers={"x-ratelimit-remaining-requests": "0"}))
        status, body, headers = await call(http, api, "GET", "/v1/videos")
        assert (status, body["object"]) == (200, "list")
        assert headers["x-ratelimit-remaining-requests"] == "0"

    async def test_filters_and_times(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """method and path filters pick the requests; times counts them."""
        api.add_videos({"id": "v"})
        api.inject(Fault(status=503), times=2, method="get", path=r"/content$")
        assert (await call(http, api, "GET", "/v1/videos/v"))[0] == 200
        assert (await call(http, api, "GET", "/v1/videos/v/content"))[0] == 503
        assert (await call(http, api, "GET", "/v1/videos/v/content"))[0] == 503
        assert (await call(http, api, "GET", "/v1/videos/v/content"))[0] == 200
        api.inject(Fault(status=503), times=5)
        api.clear_faults()
        assert (await call(http, api, "GET", "/v1/videos"))[0] == 200

    async def test_delay(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """A delay makes a client timeout fire; the next request is normal."""
        api.inject(Fault(delay=60.0))
        with pytest.raises(asyncio.TimeoutError):
            await call(http, api, "GET", "/v1/videos", timeout=aiohttp.ClientTimeout(total=0.2))
        assert (await call(http, api, "GET", "/v1/videos"))[0] == 200

    async def test_short_delay_then_normal(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """A short delay just slows the answer down."""
        api.inject(Fault(delay=0.1))
        began = time.perf_counter()
        assert (await call(http, api, "GET", "/v1/videos"))[0] == 200
        assert time.perf_counter() - began >= 0.1

    async def test_close_during_delay_is_quick(self, clock: ManualClock) -> None:
        """Closing the fake wakes a request stuck in a long delay."""
        fake = await FakeVideosAPI(clock=clock, require_auth=False).start()
        fake.inject(Fault(delay=60))
        async with aiohttp.ClientSession() as session:
            pending = asyncio.ensure_future(session.get(f"{fake.base_url}/videos"))
            await until(lambda: fake.in_flight == 1, "the request reaching the fake's delay")
            assert len(fake.requests) == 1
            began = time.perf_counter()
            await fake.close()
            assert time.perf_counter() - began < 5
            with pytest.raises(aiohttp.ClientError):
                await pending

    async def test_drop(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """drop closes the connection without a response; a POST is not retried."""
        api.inject(Fault(drop=True))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call(http, api, "POST", "/v1/videos", json={"prompt": "p"})
        assert len(api.requests) == 1
        assert len(api.videos) == 0

    async def test_drop_get_needs_two(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """aiohttp retries an idempotent request once on a disconnect: drop it twice."""
        api.inject(Fault(drop=True))
        assert (await call(http, api, "GET", "/v1/videos"))[0] == 200
        assert len(api.requests) == 2
        api.inject(Fault(drop=True), times=2)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call(http, api, "GET", "/v1/videos")
        assert len(api.requests) == 4

    async def test_truncate_json_runs_route(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """truncate sends half the body then hangs up; a POST still creates its job."""
        api.inject(Fault(truncate=True), method="POST")
        headers = {"Idempotency-Key": "retry-me"}
        async with http.post(
            f"{api.base_url}/videos", json={"prompt": "p"}, headers=headers
        ) as resp:
            assert resp.status == 200
            length = int(resp.headers["Content-Length"])
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert len(api.videos) == 1
        # The retry with the same key gets the job that was created.
        _, body, _ = await call(
            http, api, "POST", "/v1/videos", json={"prompt": "p"}, headers=headers
        )
        assert body["id"] in api.videos
        assert len(json.dumps(body)) == length
        assert len(api.videos) == 1

    async def test_drop_after_bytes_on_content(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """drop_after_bytes cuts a download; resuming with Range completes it."""
        api.add_videos({"id": "v"})
        expected = api.content_bytes("v")
        api.inject(Fault(drop_after_bytes=100_000), path=r"/content$")
        received = b""
        async with http.get(f"{api.base_url}/videos/v/content") as resp:
            assert resp.headers["Content-Length"] == str(len(expected))
            with pytest.raises(aiohttp.ClientPayloadError):  # noqa: PT012 - the loop is the read
                async for chunk in resp.content.iter_any():
                    received += chunk
        assert received == expected[: len(received)]
        assert len(received) == 100_000
        headers = {"Range": f"bytes={len(received)}-"}
        status, rest, _ = await call(http, api, "GET", "/v1/videos/v/content", headers=headers)
        assert status == 206
        assert received + rest == expected

    async def test_stall_after_bytes_on_content(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """stall_after_bytes sends that much of the body, then nothing, connection open."""
        api.add_videos({"id": "v"})
        expected = api.content_bytes("v")
        api.inject(Fault(stall_after_bytes=50_000), path=r"/content$")
        received = b""
        async with http.get(f"{api.base_url}/videos/v/content") as resp:
            with pytest.raises(asyncio.TimeoutError):  # noqa: PT012 - the loop is the read
                while True:
                    chunk = await asyncio.wait_for(resp.content.readany(), 0.3)
                    received += chunk
        assert received == expected[:50_000]

    def test_only_one_way_to_cut_a_body(self) -> None:
        with pytest.raises(ValueError, match="stall_after_bytes"):
            Fault(stall_after_bytes=1, truncate=True)

    async def test_drop_after_zero_bytes(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """drop_after_bytes=0 still sends the status and headers."""
        api.add_videos({"id": "v"})
        api.inject(Fault(drop_after_bytes=0))
        async with http.get(f"{api.base_url}/videos/v/content") as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()

    async def test_random_is_deterministic(
        self, api: FakeVideosAPI, http: aiohttp.ClientSession
    ) -> None:
        """The same seed gives the same faults to the same request sequence."""
        faults = [Fault(status=500), Fault(status=503)]

        async def run() -> list[int]:
            api.clear_faults()
            api.inject_random(rate=0.3, faults=faults, seed=1234, method="GET")
            return [(await call(http, api, "GET", "/v1/videos"))[0] for _ in range(40)]

        first = await run()
        assert await run() == first
        assert {500, 503, 200} <= set(first)
        api.clear_faults()
        api.inject_random(rate=1.0, faults=faults, seed=1, path="^/nowhere")
        assert (await call(http, api, "GET", "/v1/videos"))[0] == 200

    def test_fault_validation(self) -> None:
        """Contradictory faults are rejected at construction."""
        with pytest.raises(ValueError, match="status"):
            Fault(status=99)
        with pytest.raises(ValueError, match="only one"):
            Fault(drop=True, truncate=True)
        with pytest.raises(ValueError, match="status"):
            Fault(status=500, truncate=True)
        with pytest.raises(ValueError, match="negative"):
            Fault(delay=-1)
        assert Fault(status=500) == Fault(status=500)
        assert hash(Fault(status=500, headers={"a": "b"})) == hash(Fault(status=500))

    async def test_plan_validation(self, api: FakeVideosAPI) -> None:
        """inject and inject_random check their arguments."""
        with pytest.raises(ValueError, match="times"):
            api.inject(Fault(status=500), times=0)
        with pytest.raises(ValueError, match="rate"):
            api.inject_random(rate=2, faults=[Fault(status=500)], seed=1)
        with pytest.raises(ValueError, match="empty"):
            api.inject_random(rate=0.5, faults=[], seed=1)


class TestRecording:
    """api.requests."""

    async def test_fields(self, api: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
        """Method, paths, query, headers and bodies are recorded."""
        await call(http, api, "GET", "/v1/videos?limit=2&limit=3&order=asc")
        await call(http, api, "POST", "/v1/videos", json={"prompt": "p"})
        get, post = api.requests
        assert isinstance(get, RecordedRequest)
        assert (get.method, get.path, get.raw_path) == ("GET", "/v1/videos", "/v1/videos")
        assert get.query == {"limit": "3", "order": "asc"}
        assert get.query_items == [("limit", "2"), ("limit", "3"), ("order", "asc")]
        assert get.headers["authorization"] == f"Bearer {api.api_key}"
        assert get.header("Authorization") == get.headers["authorization"]
        assert (get.body, get.json, get.form) == (b"", None, None)
        assert post.json == {"prompt": "p"}
        assert json.loads(post.body) == {"prompt": "p"}
        api.clear_requests()
        assert api.requests == []

    async def test_repr_masks_keys(self, api: FakeVideosAPI) -> None:
        """The repr never shows a credential."""
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {api.api_key}", "api-key": api.api_key}
            async with session.get(f"{api.base_url}/videos", headers=headers):
                pass
        text = repr(api.requests[-1])
        assert api.api_key not in text
        assert "Bearer sk-...ef" in text

    async def test_unauthorized_and_faulted_are_recorded(self, api: FakeVideosAPI) -> None:
        """Requests answered by an auth error or a fault are recorded too."""
        api.inject(Fault(status=500))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{api.base_url}/videos"):
                pass
            async with session.get(f"{api.base_url}/videos"):
                pass
        assert len(api.requests) == 2


class TestPlugin:
    """The pytest fixtures."""

    async def test_fake_videos_api_fixture(
        self,
        fake_videos_api: FakeVideosAPI,  # noqa: F811
    ) -> None:
        """fake_videos_api is a started fake with default options."""
        assert fake_videos_api.base_url.startswith("http://127.0.0.1:")
        assert fake_videos_api.api_key == "sk-fake-0123456789abcdef"

    async def test_videos_client_fixture(
        self,
        fake_videos_api: FakeVideosAPI,  # noqa: F811
        videos_client: Any,  # noqa: F811
    ) -> None:
        """videos_client is an AsyncVideos pointed at the fake."""
        from asyncvideos import AsyncVideos

        assert isinstance(videos_client, AsyncVideos)

    async def test_client_method(self, api: FakeVideosAPI) -> None:
        """api.client() builds an AsyncVideos with the fake's key and base URL."""
        async with api.client(max_retries=0) as client:
            assert type(client).__name__ == "AsyncVideos"


class TestSchema:
    """Responses conform to the OpenAPI spec's schemas."""

    @pytest.fixture
    def spec(self) -> dict[str, Any]:
        yaml = pytest.importorskip("yaml")
        path = Path(__file__).parent / "contract" / "videos.yaml"
        if not path.exists():
            pytest.skip("tests/contract/videos.yaml is not present")
        loaded: dict[str, Any] = yaml.safe_load(path.read_text())
        return loaded

    def check(self, spec: dict[str, Any], name: str, instance: Any) -> None:
        jsonschema = pytest.importorskip("jsonschema")
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        jsonschema.Draft202012Validator(schema).validate(instance)

    async def test_responses(
        self,
        spec: dict[str, Any],
        api: FakeVideosAPI,
        http: aiohttp.ClientSession,
        clock: ManualClock,
    ) -> None:
        """Jobs in every phase, lists, deletions, errors and characters match the spec."""
        api.add_videos({"id": "done"}, {"id": "bad", "status": "failed"})
        _, job, _ = await call(http, api, "POST", "/v1/videos", json={"prompt": "p"})
        for step in (0.0, 3.0, 10.0):
            clock.advance(step)
            _, body, _ = await call(http, api, "GET", f"/v1/videos/{job['id']}")
            self.check(spec, "VideoResource", body)
        _, body, _ = await call(http, api, "GET", "/v1/videos?limit=2")
        self.check(spec, "VideoListResource", body)
        _, body, _ = await call(http, api, "GET", f"/v1/videos?order=asc&after={job['id']}")
        assert body["data"] == []
        self.check(spec, "VideoListResource", body)
        status, body, _ = await call(http, api, "GET", "/v1/videos?limit=0")
        assert status == 400
        self.check(spec, "ErrorResponse", body)
        self.check(spec, "VideoResource", api.videos["bad"])
        _, body, _ = await call(http, api, "DELETE", "/v1/videos/done")
        self.check(spec, "DeletedVideoResource", body)
        _, body, _ = await call(http, api, "GET", "/v1/videos/done")
        self.check(spec, "ErrorResponse", body)
        form = aiohttp.FormData()
        form.add_field("name", "Mochi")
        form.add_field("video", b"\x01", filename="c.mp4", content_type="video/mp4")
        _, body, _ = await call(http, api, "POST", "/v1/videos/characters", data=form)
        self.check(spec, "VideoCharacterResource", body)
