"""FakeVideosAPI answers what OpenAI's spec says the real API answers.

Every JSON body the fake serves (jobs in each status, list pages, deletions,
characters, error bodies) is validated against the spec's schemas: JSON Schema
2020-12 over ``components/schemas`` of ``tests/contract/videos.yaml``, ``$ref``s
resolved within the document. The spec lets objects carry extra keys; the fake
must not, so each body is also checked in a strict copy where every object
allows only the properties the spec names. Requests are made with plain
aiohttp, so that the whole body is seen, not what the client reads of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from asyncvideos.testing import FakeVideosAPI, Fault, ManualClock

ROOT = Path(__file__).resolve().parents[1]
VENDORED = ROOT / "tests" / "contract" / "videos.yaml"
# The SHA-256 of the vendored copy (see tests/contract/README.md to update it).
SPEC_SHA256 = "6b7d095484a6359b6ac029735b4fe099aadd9bc83340d80f895d59e4495b0641"

SPEC: dict[str, Any] = yaml.safe_load(VENDORED.read_text(encoding="utf-8"))
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
STATUSES: list[str] = SCHEMAS["VideoStatus"]["enum"]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)


def _closed(schema: Any) -> Any:
    """A copy of ``schema`` in which no object allows a property the spec does not name."""
    if isinstance(schema, dict):
        result = {key: _closed(value) for key, value in schema.items()}
        if "properties" in schema:
            result["additionalProperties"] = False
        return result
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def _validator(schemas: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    # The components sit in the root document, so '#/components/schemas/X' resolves.
    root = {"components": {"schemas": schemas}, "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)


_STRICT_SCHEMAS = _closed(copy.deepcopy(SCHEMAS))


def conforms(body: Any, name: str) -> None:
    """Raise (with every problem listed) unless ``body`` is a ``name`` the spec allows."""
    for schemas, label in ((SCHEMAS, "spec"), (_STRICT_SCHEMAS, "spec, no extra keys")):
        errors = sorted(
            _validator(schemas, name).iter_errors(body), key=lambda e: list(e.absolute_path)
        )
        if errors:
            problems = "\n".join(f"  at {list(e.absolute_path)}: {e.message}" for e in errors)
            pytest.fail(f"not a {name} ({label}):\n{json.dumps(body, indent=1)}\n{problems}")


# -- the spec itself -----------------------------------------------------------------


def test_vendored_spec_is_the_one_recorded() -> None:
    """The spec is OpenAI's, unedited: a change is a new copy with its digest updated here."""
    assert hashlib.sha256(VENDORED.read_bytes()).hexdigest() == SPEC_SHA256, (
        "tests/contract/videos.yaml changed: if it is a new copy of OpenAI's spec, "
        "put its SHA-256 in SPEC_SHA256"
    )


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_component_is_a_valid_2020_12_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMAS[name])
    jsonschema.Draft202012Validator.check_schema(_STRICT_SCHEMAS[name])


def test_the_checker_rejects_what_the_spec_rejects() -> None:
    job = {
        "id": "video_1",
        "object": "video",
        "model": "sora-2",
        "status": "completed",
        "progress": 100,
        "created_at": 1,
        "completed_at": 2,
        "expires_at": 3,
        "prompt": "p",
        "size": "720x1280",
        "seconds": "4",
        "remixed_from_video_id": None,
        "error": None,
    }
    conforms(job, "VideoResource")
    for broken in (
        {**job, "status": "done"},
        {**job, "size": "1x1"},
        {**job, "seconds": 4},
        {**job, "extra": 1},
        {k: v for k, v in job.items() if k != "error"},
    ):
        with pytest.raises(pytest.fail.Exception):
            conforms(broken, "VideoResource")


# -- the fake, over HTTP -------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeVideosAPI]:
    async with FakeVideosAPI(
        clock=ManualClock(), queue_seconds=10, run_seconds=60, poll_after_ms=None
    ) as server:
        yield server


@pytest.fixture
async def http(fake: FakeVideosAPI) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession(fake.url, headers=headers) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, expect: int = 200, **kwargs: Any
) -> Any:
    async with http.request(method, "/v1" + path, **kwargs) as response:
        body = await response.read()
        assert response.status == expect, body
        if expect == 200:
            assert response.content_type == "application/json"
        return json.loads(body)


def _clock(fake: FakeVideosAPI) -> ManualClock:
    assert isinstance(fake.clock, ManualClock)
    return fake.clock


async def _created(http: aiohttp.ClientSession, **extra: Any) -> dict[str, Any]:
    job = await call(http, "POST", "/videos", json={"prompt": "A fox", **extra})
    conforms(job, "VideoResource")
    return dict(job)


async def test_a_created_job_conforms_in_every_status(
    fake: FakeVideosAPI, http: aiohttp.ClientSession
) -> None:
    fake.set_outcome(None, "completed")
    good = await _created(http, model="sora-2-pro", seconds="8", size="1792x1024")
    fake.set_outcome(None, "failed", error={"code": "moderation_blocked", "message": "No."})
    bad = await _created(http)
    seen: dict[str, set[str]] = {good["id"]: set(), bad["id"]: set()}
    for step in (0, 5, 10, 40, 30, 1000):
        _clock(fake).advance(step)
        for video_id in seen:
            job = await call(http, "GET", f"/videos/{video_id}")
            conforms(job, "VideoResource")
            seen[video_id].add(job["status"])
        page = await call(http, "GET", "/videos", params={"limit": "100"})
        conforms(page, "VideoListResource")
    assert seen[good["id"]] == {"queued", "in_progress", "completed"}
    assert seen[bad["id"]] == {"queued", "in_progress", "failed"}


@pytest.mark.parametrize("status", STATUSES)
async def test_seeded_jobs_conform(
    fake: FakeVideosAPI, http: aiohttp.ClientSession, status: str
) -> None:
    ids = fake.seed(3, status=status)
    fake.add_videos(
        {"status": status, "model": "sora-2-pro", "size": "1280x720", "seconds": "12"},
        {"status": status, "progress": 50 if status == "in_progress" else 0},
    )
    for video_id in ids:
        job = await call(http, "GET", f"/videos/{video_id}")
        conforms(job, "VideoResource")
        assert job["status"] == status
    for order in ("asc", "desc"):
        page = await call(http, "GET", "/videos", params={"limit": "2", "order": order})
        conforms(page, "VideoListResource")
        assert page["has_more"] is True
        rest = await call(http, "GET", "/videos", params={"order": order, "after": page["last_id"]})
        conforms(rest, "VideoListResource")
        assert [job["status"] for job in page["data"] + rest["data"]] == [status] * 5


async def test_an_empty_list_conforms(http: aiohttp.ClientSession) -> None:
    page = await call(http, "GET", "/videos")
    conforms(page, "VideoListResource")
    assert page["first_id"] is None
    assert page["last_id"] is None


async def test_created_jobs_conform_for_every_request_shape(
    fake: FakeVideosAPI, http: aiohttp.ClientSession
) -> None:
    (source,) = fake.seed(1, status="completed")
    form = aiohttp.FormData()
    form.add_field("prompt", "A fox")
    form.add_field("seconds", "12")
    form.add_field("input_reference", PNG, filename="ref.png", content_type="image/png")
    jobs = [
        await call(http, "POST", "/videos", data=form),
        await call(
            http,
            "POST",
            "/videos",
            json={"prompt": "A fox", "input_reference": {"image_url": "https://example.com/a"}},
        ),
        await call(
            http, "POST", "/videos", json={"prompt": "A", "input_reference": {"file_id": "f"}}
        ),
        await call(http, "POST", f"/videos/{source}/remix", json={"prompt": "At night"}),
        await call(http, "POST", "/videos/edits", json={"video": {"id": source}, "prompt": "Rain"}),
        await call(
            http,
            "POST",
            "/videos/extensions",
            json={"video": {"id": source}, "prompt": "More", "seconds": "8"},
        ),
    ]
    for path, fields in (
        ("/videos/edits", {"prompt": "Rain"}),
        ("/videos/extensions", {"prompt": "More", "seconds": "4"}),
    ):
        upload = aiohttp.FormData()
        for name, value in fields.items():
            upload.add_field(name, value)
        upload.add_field("video", MP4, filename="clip.mp4", content_type="video/mp4")
        jobs.append(await call(http, "POST", path, data=upload))
    for job in jobs:
        conforms(job, "VideoResource")
    assert jobs[3]["remixed_from_video_id"] == source


async def test_deletion_conforms(fake: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
    completed, failed = fake.seed(1, status="completed") + fake.seed(1, status="failed")
    for video_id in (completed, failed):
        deleted = await call(http, "DELETE", f"/videos/{video_id}")
        conforms(deleted, "DeletedVideoResource")
        assert deleted["id"] == video_id


async def test_characters_conform(http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("name", "Captain Calico")
    form.add_field("video", MP4, filename="clip.mp4", content_type="video/mp4")
    created = await call(http, "POST", "/videos/characters", data=form)
    conforms(created, "VideoCharacterResource")
    fetched = await call(http, "GET", f"/videos/characters/{created['id']}")
    conforms(fetched, "VideoCharacterResource")
    assert fetched == created


async def test_content_types_are_the_specs(
    fake: FakeVideosAPI, http: aiohttp.ClientSession
) -> None:
    (video_id,) = fake.seed(1, status="completed")
    listed = SPEC["paths"]["/videos/{video_id}/content"]["get"]["responses"]["200"]["content"]
    # The spec lists MP4 and WebP only; the sprite sheet is a JPEG (OpenAI's video
    # guide), which the spec's list of content types leaves out.
    for variant in ("video", "thumbnail"):
        url = f"/v1/videos/{video_id}/content"
        async with http.get(url, params={"variant": variant}) as response:
            assert response.status == 200
            assert response.content_type in listed
            assert await response.read() == fake.content_bytes(video_id, variant)


# -- error bodies ----------------------------------------------------------------------


async def test_endpoint_errors_conform(fake: FakeVideosAPI, http: aiohttp.ClientSession) -> None:
    (queued,) = fake.seed(1, status="queued")
    errors = [
        await call(http, "GET", "/videos/video_missing", expect=404),
        await call(http, "DELETE", "/videos/video_missing", expect=404),
        await call(http, "DELETE", f"/videos/{queued}", expect=400),
        await call(http, "GET", f"/videos/{queued}/content", expect=404),
        await call(http, "GET", "/videos", params={"limit": "500"}, expect=400),
        await call(http, "GET", "/videos", params={"order": "up"}, expect=400),
        await call(http, "GET", "/videos", params={"after": "video_missing"}, expect=400),
        await call(http, "POST", "/videos", json={}, expect=400),
        await call(http, "POST", "/videos", json={"prompt": "x", "seconds": "5"}, expect=400),
        await call(http, "POST", "/videos", json={"prompt": "x", "bogus": 1}, expect=400),
        await call(http, "POST", "/videos", data=b"{not json", expect=400),
        await call(http, "POST", f"/videos/{queued}/remix", json={"prompt": "x"}, expect=400),
        await call(http, "POST", "/videos/edits", json={"prompt": "x"}, expect=400),
        await call(http, "POST", "/videos/extensions", json={"video": {"id": queued}}, expect=400),
        await call(http, "GET", "/videos/characters/char_missing", expect=404),
        await call(http, "PUT", "/videos", expect=404),
        await call(
            http, "GET", "/videos", headers={"Authorization": "Bearer sk-wrong"}, expect=401
        ),
    ]
    for body in errors:
        conforms(body, "ErrorResponse")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 520])
async def test_injected_fault_errors_conform(
    fake: FakeVideosAPI, http: aiohttp.ClientSession, status: int
) -> None:
    fake.inject(Fault(status=status), times=2)
    conforms(await call(http, "GET", "/videos", expect=status), "ErrorResponse")
    conforms(
        await call(http, "POST", "/videos", json={"prompt": "x"}, expect=status), "ErrorResponse"
    )
