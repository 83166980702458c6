"""Every request the client builds is checked against OpenAI's spec by Prism.

Prism (``@stoplight/prism-cli``, pinned in ``tests/contract/package-lock.json``)
serves a mock of ``tests/contract/videos.yaml`` on loopback and validates each
request against it: a request that breaks the spec gets a 422 (401 without the
bearer key, 404/405 for an unknown route), which the client raises as a typed
error, so each call below passing means the request it built is one the spec
allows. A second Prism in dynamic mode (``-d``) answers with random documents
the schemas allow, which the client must read without error.

Skipped when Node.js or the installed Prism is missing (``npm ci --prefix
tests/contract`` installs it); ``.ci/run`` sets ``ASYNCVIDEOS_REQUIRE_PRISM=1``
after installing it, so that there a missing Prism fails instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from asyncvideos import (
    AsyncVideos,
    AuthenticationError,
    Character,
    DeletedVideo,
    PaginationError,
    UnprocessableEntityError,
    Video,
    VideoPage,
)

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "tests" / "contract"
SPEC = CONTRACT / "videos.yaml"
PRISM = CONTRACT / "node_modules" / "@stoplight" / "prism-cli" / "dist" / "index.js"
STARTUP_SECONDS = 60.0
DYNAMIC_ROUNDS = 50
API_KEY = "sk-contract-test"

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)

_SCHEMAS = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]["schemas"]
# The values the spec enumerates, read from it so that a new spec is tested as it is.
SIZES = _SCHEMAS["VideoSize"]["enum"]
SECONDS = _SCHEMAS["VideoSeconds"]["enum"]
MODELS = [m for branch in _SCHEMAS["VideoModel"]["anyOf"] for m in branch.get("enum", [])]
VARIANTS = _SCHEMAS["VideoContentVariant"]["enum"]


def _node() -> str | None:
    return shutil.which("node")


def _missing(reason: str) -> None:
    if os.environ.get("ASYNCVIDEOS_REQUIRE_PRISM") == "1":
        pytest.fail(f"{reason} (ASYNCVIDEOS_REQUIRE_PRISM=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the Prism we started (its own process group), then reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _check_installed() -> str:
    node = _node()
    if node is None:
        _missing("Node.js is not installed; the Prism contract tests need it")
    if not PRISM.is_file():
        _missing(
            "Prism is not installed; run `npm ci --prefix tests/contract` to run the contract tests"
        )
    assert node is not None
    return node


def _launch(
    node: str, flags: tuple[str, ...], log: IO[bytes]
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    process = subprocess.Popen(
        [node, str(PRISM), "mock", *flags, "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, which teardown ends
    )
    return process, port


@contextlib.contextmanager
def _prisms(*modes: tuple[str, ...]) -> Iterator[list[str]]:
    """Run one ``prism mock`` per mode (its flags) on free loopback ports, started
    together; yield their base URLs."""
    node = _check_installed()
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in modes]
        started = []
        for flags, log in zip(modes, logs, strict=True):
            process, port = _launch(node, flags, log)
            stack.callback(_stop, process)
            started.append((process, port, log))
        deadline = time.monotonic() + STARTUP_SECONDS
        for process, port, log in started:
            while not _listening(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    pytest.fail(
                        f"Prism did not start listening on 127.0.0.1:{port} "
                        f"(exit code {process.poll()}); its output:\n{output}"
                    )
                time.sleep(0.05)
        # Prism serves the spec's paths from the root (the server URL's /v1 is not
        # part of them), so the base URL is the bare origin.
        yield [f"http://127.0.0.1:{port}" for _, port, _ in started]


@pytest.fixture(scope="module")
def prism_urls() -> Iterator[list[str]]:
    """Prism in static mode, which answers the schemas' first values, and in dynamic
    mode, which answers random documents the schemas allow; both validate requests."""
    with _prisms((), ("--dynamic",)) as urls:
        yield urls


@pytest.fixture(scope="module")
def prism_url(prism_urls: list[str]) -> str:
    return prism_urls[0]


@pytest.fixture(scope="module")
def dynamic_url(prism_urls: list[str]) -> str:
    return prism_urls[1]


@pytest.fixture
async def videos(prism_url: str) -> AsyncIterator[AsyncVideos]:
    async with AsyncVideos(api_key=API_KEY, base_url=prism_url, max_retries=0) as client:
        yield client


@pytest.fixture
async def dynamic(dynamic_url: str) -> AsyncIterator[AsyncVideos]:
    async with AsyncVideos(api_key=API_KEY, base_url=dynamic_url, max_retries=0) as client:
        yield client


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "reference.png"
    image.write_bytes(PNG)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4)
    return {"image": image, "clip": clip}


# -- Prism does check: the controls that make the passes below mean something ----


async def test_prism_rejects_a_request_that_breaks_the_spec(videos: AsyncVideos) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await videos.list_page(extra_query={"limit": "500"})
    assert "limit" in str(caught.value.body)


async def test_prism_demands_the_bearer_key(prism_url: str) -> None:
    async with AsyncVideos(
        api_key=API_KEY, base_url=prism_url, max_retries=0, auth_scheme="api-key"
    ) as client:
        with pytest.raises(AuthenticationError):
            await client.retrieve("video_123")


# -- reading -----------------------------------------------------------------------


async def test_retrieve(videos: AsyncVideos) -> None:
    video = await videos.retrieve("video_123")
    assert isinstance(video, Video)
    again = await videos.retrieve(video)
    assert again.id == video.id
    assert video.status in _SCHEMAS["VideoStatus"]["enum"]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_list_page(videos: AsyncVideos, order: Any) -> None:
    page = await videos.list_page(limit=100, order=order, after="video_123")
    assert isinstance(page, VideoPage)
    assert page.data
    assert all(isinstance(video, Video) for video in page.data)


async def test_list_one_page(videos: AsyncVideos) -> None:
    listed = [video async for video in videos.list(limit=1, order="desc", after="video_1")]
    assert listed
    assert all(isinstance(video, Video) for video in listed)


async def test_pages_first_page(videos: AsyncVideos) -> None:
    async with contextlib.aclosing(videos.pages(limit=10, order="asc")) as pages:  # type: ignore[type-var]
        first = await anext(pages)
    assert first.data


async def test_walking_every_page_stops_on_a_repeating_cursor(videos: AsyncVideos) -> None:
    # Static Prism answers every page alike: has_more with the same cursor. The
    # walk must request the second page (with after=) and then stop, not loop.
    with pytest.raises(PaginationError) as caught:
        async for _ in videos.list(all=True):
            pass
    assert caught.value.resume_after is not None
    with pytest.raises(PaginationError):
        async for _ in videos.pages(limit=5, order="desc", after="video_1"):
            pass


async def test_retrieve_character(videos: AsyncVideos) -> None:
    character = await videos.retrieve_character("char_123")
    assert isinstance(character, Character)


async def test_delete(videos: AsyncVideos) -> None:
    deleted = await videos.delete("video_123")
    assert isinstance(deleted, DeletedVideo)
    assert deleted.object == "video.deleted"


# -- creating ----------------------------------------------------------------------


async def test_create_with_the_prompt_only(videos: AsyncVideos) -> None:
    assert isinstance(await videos.create("A calico cat on a windowsill"), Video)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seconds", SECONDS)
async def test_create_json_every_model_and_length(
    videos: AsyncVideos, model: str, seconds: str
) -> None:
    video = await videos.create("A fox", model=model, seconds=int(seconds), size=SIZES[0])
    assert isinstance(video, Video)


@pytest.mark.parametrize("size", SIZES)
async def test_create_json_every_size(videos: AsyncVideos, size: str) -> None:
    assert isinstance(await videos.create("A fox", seconds=SECONDS[-1], size=size), Video)


@pytest.mark.parametrize("kind", ["path", "bytes", "file object"])
async def test_create_multipart_with_a_reference_file(
    videos: AsyncVideos, files: dict[str, Path], kind: str
) -> None:
    reference: Any = {
        "path": files["image"],
        "bytes": PNG,
        "file object": io.BytesIO(PNG),
    }[kind]
    video = await videos.create(
        "A fox",
        model=MODELS[0],
        seconds=SECONDS[0],
        size=SIZES[1],
        input_reference=reference,
        idempotency_key=f"contract-{kind}",
    )
    assert isinstance(video, Video)


@pytest.mark.parametrize(
    "reference", [{"image_url": "https://example.com/cat.png"}, {"file_id": "file-123"}]
)
async def test_create_json_with_a_reference_mapping(
    videos: AsyncVideos, reference: dict[str, str]
) -> None:
    assert isinstance(await videos.create("A fox", input_reference=reference), Video)


async def test_remix(videos: AsyncVideos) -> None:
    video = await videos.retrieve("video_123")
    assert isinstance(await videos.remix("video_123", "Now at night"), Video)
    assert isinstance(await videos.remix(video, "Now at dawn"), Video)


async def test_edit_by_id_and_by_file(videos: AsyncVideos, files: dict[str, Path]) -> None:
    assert isinstance(await videos.edit("video_123", "Make it rain"), Video)
    assert isinstance(await videos.edit(await videos.retrieve("video_123"), "Snow"), Video)
    assert isinstance(await videos.edit(files["clip"], "Make it rain"), Video)
    assert isinstance(await videos.edit(MP4, "Make it rain"), Video)


@pytest.mark.parametrize("seconds", SECONDS)
async def test_extend_by_id_and_by_file(
    videos: AsyncVideos, files: dict[str, Path], seconds: str
) -> None:
    assert isinstance(await videos.extend("video_123", "Keep going", seconds), Video)
    assert isinstance(await videos.extend(files["clip"], "Keep going", int(seconds)), Video)


async def test_create_character(videos: AsyncVideos, files: dict[str, Path]) -> None:
    assert isinstance(await videos.create_character("Captain Calico", files["clip"]), Character)
    assert isinstance(await videos.create_character("C" * 80, MP4), Character)


# -- content -----------------------------------------------------------------------

VARIANT_ARGS: list[dict[str, Any]] = [{}] + [{"variant": variant} for variant in VARIANTS]


@pytest.mark.parametrize("variant", VARIANT_ARGS, ids=["default", *VARIANTS])
async def test_content(videos: AsyncVideos, tmp_path: Path, variant: dict[str, Any]) -> None:
    whole = await videos.download_content("video_123", **variant)
    assert whole
    chunks = [chunk async for chunk in videos.iter_content("video_123", chunk_size=2, **variant)]
    assert b"".join(chunks) == whole
    target = await videos.download("video_123", tmp_path / "out" / "clip.bin", **variant)
    assert target.read_bytes() == whole


# -- waiting -----------------------------------------------------------------------


async def test_wait_and_wait_many(dynamic: AsyncVideos) -> None:
    # Dynamic Prism draws each poll's status at random, so a wait ends after a
    # few polls; what is checked is that every poll was a request the spec allows.
    video = await dynamic.wait("video_123", poll_interval=0.001, wait_timeout=30)
    assert video.is_finished
    created = await dynamic.create_and_wait(
        "A fox", seconds=4, poll_interval=0.001, wait_timeout=30
    )
    assert created.is_finished
    ids = ["video_1", "video_2", "video_3"]
    results = [r async for r in dynamic.wait_many(ids, poll_interval=0.001, wait_timeout=30)]
    assert sorted(r.video_id for r in results) == ids
    assert all(r.ok for r in results)


# -- reading whatever the schemas allow --------------------------------------------


def _seconds_of(value: Any) -> float | None:
    return None if value is None else float(value)


def _check_video(video: Video, raw: dict[str, Any]) -> None:
    assert video.id == raw["id"]
    assert video.status == raw["status"]
    assert video.model == raw["model"]
    for name in ("created_at", "completed_at", "expires_at"):
        stamp = getattr(video, name)
        assert (stamp.timestamp() if stamp else None) == _seconds_of(raw[name])


async def test_dynamic_list_pages_always_read(dynamic: AsyncVideos) -> None:
    for _ in range(DYNAMIC_ROUNDS):
        page = await dynamic.list_page(limit=10)
        assert isinstance(page.has_more, bool)
        for video in page.data:
            _check_video(video, dict(video.raw))


async def test_dynamic_retrieves_always_read(dynamic: AsyncVideos) -> None:
    for _ in range(DYNAMIC_ROUNDS):
        video = await dynamic.retrieve("video_123")
        _check_video(video, dict(video.raw))


async def test_dynamic_characters_and_deletions_always_read(dynamic: AsyncVideos) -> None:
    for _ in range(DYNAMIC_ROUNDS // 5):
        character = await dynamic.retrieve_character("char_123")
        assert character.id == character.raw["id"]
        assert character.name == character.raw["name"]
        deleted = await dynamic.delete("video_123")
        assert isinstance(deleted.deleted, bool)
