"""The clients under test, each doing the same work the way its users would.

- ``floor``: raw aiohttp and ``json.loads`` into dicts, no models: the least
  work any client on this stack can do (the baseline);
- ``floor-typed``: raw aiohttp and msgspec decoding the bytes straight into
  typed ``msgspec.Struct`` jobs with datetimes: the limit typed models can
  reach (needs msgspec);
- ``asyncvideos``: the library, through its public API, without its extras
  (the runner hides msgspec from that process);
- ``asyncvideos+speedups``: the same with ``asyncvideos[speedups]`` (msgspec);
- ``openai``: the official ``openai`` package's ``AsyncOpenAI(...).videos``.

Every operation is a coroutine function that opens its own client, does the
work, closes the client, and returns a count of jobs or calls (a download
returns nothing: the runner reads the file's size), so the runner can check
that all three did the same work.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

API_KEY = "sk-bench-not-a-real-key"
PAGE_SIZE = 100
WAITING = frozenset({"queued", "in_progress"})

#: Names of the clients, in the order of the first repetition (later ones rotate it).
ALL_CLIENTS = ("floor", "floor-typed", "asyncvideos", "asyncvideos+speedups", "openai")
#: What each optional client needs installed.
NEEDS = {"floor-typed": "msgspec", "asyncvideos+speedups": "msgspec", "openai": "openai"}


def available_clients() -> tuple[str, ...]:
    """The clients that can run here (msgspec and openai are optional)."""
    return tuple(
        name
        for name in ALL_CLIENTS
        if name not in NEEDS or importlib.util.find_spec(NEEDS[name]) is not None
    )


def prefetch_supported() -> bool:
    """Whether this asyncvideos has the opt-in ``list(..., prefetch=)`` look-ahead."""
    import inspect

    import asyncvideos

    return "prefetch" in inspect.signature(asyncvideos.AsyncVideos.list).parameters


class Client(Protocol):
    async def list_all(self, base_url: str, work_us: float = 0.0) -> int: ...
    async def retrieve(self, base_url: str, calls: int, inflight: int) -> int: ...
    async def wait_many(self, base_url: str, ids: list[str], concurrency: int) -> int: ...
    async def download(self, base_url: str, path: Path) -> None: ...


def per_item_work(work_us: float) -> Callable[[], Awaitable[None]] | None:
    """What a consumer does per item in the "work" variant: ``work_us`` of CPU
    then a yield to the loop, as a service that does something with each job."""
    if work_us <= 0:
        return None
    import time

    seconds = work_us / 1e6

    async def work() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(0)

    return work


async def _workers(inflight: int, calls: int, call: Callable[[int], Awaitable[None]]) -> int:
    """Run ``calls`` calls with ``inflight`` of them at a time; return how many ran."""
    counter = iter(range(calls))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in counter:
            await call(i)
            done += 1

    await asyncio.gather(*(worker() for _ in range(inflight)))
    return done


class Floor:
    """Hand-written loops on one ``aiohttp.ClientSession``; JSON stays dicts."""

    name = "floor"

    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}

    def _session(self) -> Any:
        aiohttp = self._aiohttp
        return aiohttp.ClientSession(
            headers=self._headers, connector=aiohttp.TCPConnector(limit=100)
        )

    async def list_all(self, base_url: str, work_us: float = 0.0) -> int:
        work = per_item_work(work_us)
        count = 0
        url = base_url + "/videos"
        params = {"limit": str(PAGE_SIZE), "order": "asc"}
        async with self._session() as session:
            while True:
                async with session.get(url, params=params) as resp:
                    resp.raise_for_status()
                    page = json.loads(await resp.read())
                for _item in page["data"]:
                    count += 1
                    if work is not None:
                        await work()
                if not page["has_more"]:
                    return count
                params = {**params, "after": page["last_id"]}

    async def retrieve(self, base_url: str, calls: int, inflight: int) -> int:
        async with self._session() as session:

            async def call(i: int) -> None:
                async with session.get(f"{base_url}/videos/video_{i:08d}") as resp:
                    resp.raise_for_status()
                    job = json.loads(await resp.read())
                assert job["id"]

            return await _workers(inflight, calls, call)

    async def wait_many(self, base_url: str, ids: list[str], concurrency: int) -> int:
        gate = asyncio.Semaphore(concurrency)
        async with self._session() as session:

            async def wait(video_id: str) -> dict[str, Any]:
                while True:
                    async with gate, session.get(f"{base_url}/videos/{video_id}") as resp:
                        resp.raise_for_status()
                        job: dict[str, Any] = json.loads(await resp.read())
                        hint = resp.headers.get("openai-poll-after-ms")
                    if job["status"] not in WAITING:
                        return job
                    await asyncio.sleep(int(hint) / 1000 if hint else 1.0)

            jobs = await asyncio.gather(*(wait(i) for i in ids))
        return len(jobs)

    async def download(self, base_url: str, path: Path) -> None:
        async with (
            self._session() as session,
            session.get(f"{base_url}/videos/video_00000000/content") as resp,
        ):
            resp.raise_for_status()
            with path.open("wb") as file:
                async for chunk in resp.content.iter_any():
                    file.write(chunk)


class TypedFloor(Floor):
    """The floor's loops, with msgspec reading bytes straight into typed Structs."""

    name = "floor-typed"

    def __init__(self) -> None:
        super().__init__()
        from benchmarks import _typed

        self._job, self._page = _typed.decode_job, _typed.decode_page

    async def list_all(self, base_url: str, work_us: float = 0.0) -> int:
        work = per_item_work(work_us)
        count = 0
        url = base_url + "/videos"
        params = {"limit": str(PAGE_SIZE), "order": "asc"}
        async with self._session() as session:
            while True:
                async with session.get(url, params=params) as resp:
                    resp.raise_for_status()
                    page = self._page(await resp.read())
                for _item in page.data:
                    count += 1
                    if work is not None:
                        await work()
                if not page.has_more:
                    return count
                params = {**params, "after": page.last_id}

    async def retrieve(self, base_url: str, calls: int, inflight: int) -> int:
        async with self._session() as session:

            async def call(i: int) -> None:
                async with session.get(f"{base_url}/videos/video_{i:08d}") as resp:
                    resp.raise_for_status()
                    job = self._job(await resp.read())
                assert job.id

            return await _workers(inflight, calls, call)

    async def wait_many(self, base_url: str, ids: list[str], concurrency: int) -> int:
        gate = asyncio.Semaphore(concurrency)
        async with self._session() as session:

            async def wait(video_id: str) -> Any:
                while True:
                    async with gate, session.get(f"{base_url}/videos/{video_id}") as resp:
                        resp.raise_for_status()
                        job = self._job(await resp.read())
                        hint = resp.headers.get("openai-poll-after-ms")
                    if job.status not in WAITING:
                        return job
                    await asyncio.sleep(int(hint) / 1000 if hint else 1.0)

            jobs = await asyncio.gather(*(wait(i) for i in ids))
        return len(jobs)


class Library:
    """asyncvideos, as its README tells users to use it."""

    name = "asyncvideos"

    def __init__(self, prefetch: int = 0) -> None:
        import asyncvideos

        self._mod = asyncvideos
        self._prefetch = prefetch

    def _client(self, base_url: str) -> Any:
        return self._mod.AsyncVideos(api_key=API_KEY, base_url=base_url)

    async def list_all(self, base_url: str, work_us: float = 0.0) -> int:
        work = per_item_work(work_us)
        count = 0
        kwargs = {"prefetch": self._prefetch} if self._prefetch else {}
        async with self._client(base_url) as videos:
            async for _video in videos.list(all=True, **kwargs):
                count += 1
                if work is not None:
                    await work()
        return count

    async def retrieve(self, base_url: str, calls: int, inflight: int) -> int:
        async with self._client(base_url) as videos:

            async def call(i: int) -> None:
                video = await videos.retrieve(f"video_{i:08d}")
                assert video.id

            return await _workers(inflight, calls, call)

    async def wait_many(self, base_url: str, ids: list[str], concurrency: int) -> int:
        done = 0
        async with self._client(base_url) as videos:
            async for result in videos.wait_many(ids, concurrency=concurrency):
                if not result.ok:
                    raise result.error
                done += 1
        return done

    async def download(self, base_url: str, path: Path) -> None:
        async with self._client(base_url) as videos:
            await videos.download("video_00000000", path)


class OpenAI:
    """The official ``openai`` package's async client (httpx and pydantic)."""

    name = "openai"

    def __init__(self) -> None:
        import openai

        self._mod = openai

    def _client(self, base_url: str) -> Any:
        return self._mod.AsyncOpenAI(api_key=API_KEY, base_url=base_url)

    async def list_all(self, base_url: str, work_us: float = 0.0) -> int:
        work = per_item_work(work_us)
        count = 0
        async with self._client(base_url) as client:
            with _Quiet():
                async for _video in client.videos.list(limit=PAGE_SIZE, order="asc"):
                    count += 1
                    if work is not None:
                        await work()
        return count

    async def retrieve(self, base_url: str, calls: int, inflight: int) -> int:
        async with self._client(base_url) as client:

            async def call(i: int) -> None:
                video = await client.videos.retrieve(f"video_{i:08d}")
                assert video.id

            with _Quiet():
                return await _workers(inflight, calls, call)

    async def wait_many(self, base_url: str, ids: list[str], concurrency: int) -> int:
        # openai has no wait_many: its closest equivalent is gather over poll()
        # with a semaphore, which bounds whole waits rather than single polls.
        gate = asyncio.Semaphore(concurrency)
        async with self._client(base_url) as client:

            async def wait(video_id: str) -> Any:
                async with gate:
                    return await client.videos.poll(video_id)

            with _Quiet():
                jobs = await asyncio.gather(*(wait(i) for i in ids))
        return len(jobs)

    async def download(self, base_url: str, path: Path) -> None:
        async with self._client(base_url) as client:
            with _Quiet():
                response = await client.videos.download_content("video_00000000")
            response.write_to_file(path)


class _Quiet(warnings.catch_warnings):
    """openai marks the Videos API deprecated; its warnings are not ours to see."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.simplefilter("ignore", DeprecationWarning)


def without_speedups() -> None:
    """Hide msgspec from this process before asyncvideos is imported, so that
    the ``asyncvideos`` client measures the library without its extras."""
    import sys

    if "asyncvideos" in sys.modules:  # pragma: no cover - a harness bug
        raise RuntimeError("asyncvideos was imported before its extras were hidden")
    sys.modules["msgspec"] = None  # type: ignore[assignment]


def make(name: str, *, prefetch: int = 0) -> Client:
    if name == "floor":
        return Floor()
    if name == "floor-typed":
        return TypedFloor()
    if name in ("asyncvideos", "asyncvideos+speedups"):
        return Library(prefetch=prefetch)
    if name == "openai":
        return OpenAI()
    raise ValueError(f"unknown client {name!r}")
