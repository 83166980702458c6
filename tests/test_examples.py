"""The programs in ``examples/`` run as documented, against the fake API.

Each is imported from its file and its ``main(argv)`` run with ``--base-url`` and
``--api-key`` pointing at a ``FakeVideosAPI`` on loopback, as a user would run it
against a gateway.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from conditions import until

from asyncvideos.ledger import SQLiteLedger
from asyncvideos.testing import FakeVideosAPI, Fault

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def fast_api() -> AsyncIterator[FakeVideosAPI]:
    """Jobs finish in about 0.06 s of real time, polled every 10 ms."""
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as fake:
        yield fake


def connection(api: FakeVideosAPI) -> list[str]:
    return ["--base-url", api.base_url, "--api-key", api.api_key]


def test_every_example_is_tested() -> None:
    """A new example needs a test here."""
    tested = {"poller_service", "batch_export", "download_worker", "durable_jobs"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


class TestPollerService:
    """``examples/poller_service.py``: jobs created now, polled in the background."""

    async def test_every_submitted_job_is_waited_for(
        self, fast_api: FakeVideosAPI, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each prompt becomes a job; the program prints each one completed."""
        service = load("poller_service")
        prompts = ["a paper boat", "a lighthouse", "a fox"]
        code = await service.main([*prompts, "--seconds", "4", *connection(fast_api)])
        assert code == 0
        lines = capsys.readouterr().out.splitlines()
        assert len([line for line in lines if line.startswith("submitted ")]) == 3
        finished = dict(line.split() for line in lines if not line.startswith("submitted "))
        assert set(finished) == set(fast_api.videos)
        assert set(finished.values()) == {"completed"}
        assert {job["prompt"] for job in fast_api.videos.values()} == set(prompts)

    async def test_a_failed_job_is_reported(
        self, fast_api: FakeVideosAPI, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A job that ends failed is printed as failed, and the exit code is 1."""
        service = load("poller_service")
        fast_api.set_outcome(None, "failed", error={"code": "moderation", "message": "no"})
        assert await service.main(["a storm", *connection(fast_api)]) == 1
        assert capsys.readouterr().out.splitlines()[-1].endswith(" failed")

    async def test_closing_cancels_the_polls(self, fast_api: FakeVideosAPI) -> None:
        """aclose() stops every wait still running; nothing polls afterwards."""
        service = load("poller_service")
        async with fast_api.client() as videos:
            jobs = service.VideoJobs(videos, timeout=60)
            video_id = await jobs.submit("a slow one")
            assert jobs.outcome(video_id) == "pending"
            await jobs.aclose()
            assert jobs.outcome(video_id) == "cancelled"
            assert fast_api.in_flight == 0


class TestBatchExport:
    """``examples/batch_export.py``: every job to JSON lines, resumable by cursor."""

    def exported(self, output: Path) -> list[str]:
        return [json.loads(line)["id"] for line in output.read_text().splitlines()]

    async def test_exports_every_job_once_through_failed_pages(
        self, fast_api: FakeVideosAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Pages that fail past the retries resume from resume_after: no gap, no repeat."""
        export = load("batch_export")
        ids = fast_api.seed(250)
        # Three failures in a row outlast the client's two retries: the error reaches
        # the example, which resumes from error.resume_after.
        fast_api.inject(Fault(status=503), times=3, method="GET")
        output, checkpoint = tmp_path / "jobs.jsonl", tmp_path / "jobs.cursor"
        argv = ["--output", str(output), "--checkpoint", str(checkpoint), "--pause", "0"]
        code = await export.main([*argv, *connection(fast_api)])
        assert code == 0
        assert "resuming after None" in capsys.readouterr().err
        assert self.exported(output) == ids
        assert checkpoint.read_text().strip() == ids[-1]

    async def test_a_later_run_continues_from_the_checkpoint(
        self, fast_api: FakeVideosAPI, tmp_path: Path
    ) -> None:
        """A second run appends only the jobs created since, starting at the saved cursor."""
        export = load("batch_export")
        first = fast_api.seed(120)
        output, checkpoint = tmp_path / "jobs.jsonl", tmp_path / "jobs.cursor"
        argv = ["--output", str(output), "--checkpoint", str(checkpoint), *connection(fast_api)]
        assert await export.main(argv) == 0
        # Created after the first run: later than every job exported so far.
        newest = max(job["created_at"] for job in fast_api.videos.values())
        created = ({"status": "completed", "created_at": newest + 1 + i} for i in range(30))
        later = [job["id"] for job in fast_api.add_videos(*created)]
        fast_api.clear_requests()
        assert await export.main(argv) == 0
        assert self.exported(output) == first + later
        assert fast_api.requests[0].query.get("after") == first[-1]

    async def test_gives_up_after_the_attempts_and_keeps_the_cursor(
        self, fast_api: FakeVideosAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A server that keeps failing ends the run with 1; the next run resumes."""
        export = load("batch_export")
        ids = fast_api.seed(150)
        output, checkpoint = tmp_path / "jobs.jsonl", tmp_path / "jobs.cursor"
        argv = ["--output", str(output), "--checkpoint", str(checkpoint), *connection(fast_api)]
        async with fast_api.client() as videos:
            # The first page (100 jobs) goes through; then every request fails.
            pages = videos.pages()
            await anext(pages)
            await pages.aclose()
        fast_api.inject(Fault(status=503), times=1_000, method="GET")
        fast_api.clear_requests()
        assert await export.main([*argv, "--attempts", "2", "--pause", "0"]) == 1
        assert "run again to resume" in capsys.readouterr().err
        assert not output.read_text()
        fast_api.clear_faults()
        assert await export.main(argv) == 0
        assert self.exported(output) == ids


class TestDownloadWorker:
    """``examples/download_worker.py``: a pool of workers downloading finished videos."""

    async def test_downloads_waits_skips_and_reports(
        self, fast_api: FakeVideosAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Finished jobs download, running ones are waited for, existing files are kept,
        and a missing job is reported without stopping the others."""
        worker = load("download_worker")
        done = fast_api.seed(3)
        (running,) = [job["id"] for job in fast_api.add_videos({"status": "queued"})]
        folder = tmp_path / "out"
        folder.mkdir()
        (folder / f"{done[0]}.mp4").write_bytes(b"kept")
        ids = [*done, running, "video_missing"]
        code = await worker.main(
            [*ids, "--folder", str(folder), "--workers", "2", *connection(fast_api)]
        )
        assert code == 1
        assert (folder / f"{done[0]}.mp4").read_bytes() == b"kept"
        for video_id in [*done[1:], running]:
            assert (folder / f"{video_id}.mp4").read_bytes() == fast_api.content_bytes(video_id)
        assert sorted(path.name for path in folder.iterdir()) == sorted(
            f"{video_id}.mp4" for video_id in [*done, running]
        )
        err = capsys.readouterr().err
        assert "video_missing failed" in err
        assert "1 of 5 did not download: video_missing" in err


def assert_downloaded(lines: list[str], folder: Path, api: FakeVideosAPI) -> None:
    """Each ``ORDER VIDEO_ID PATH`` line names the order's file, holding the job's content."""
    for line in lines:
        order, video_id, path = line.split()
        assert Path(path) == folder / f"{order}.mp4"
        assert Path(path).read_bytes() == api.content_bytes(video_id)


class TestDurableJobs:
    """``examples/durable_jobs.py``: a service killed with SIGKILL, then run again."""

    async def test_killed_mid_run_then_run_again_pays_each_order_once(
        self, fast_api: FakeVideosAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The first run dies with four POSTs unanswered (the server still working on
        them); the second pays for no order twice and downloads every video."""
        orders = [f"order-{n}=a paper boat, take {n}" for n in range(6)]
        ledger = f"sqlite:///{tmp_path}/jobs.db"
        args = [*orders, "--folder", str(tmp_path / "out"), "--ledger", ledger]
        args += connection(fast_api)
        # Two creates are answered; the other four stay in the server's hands.
        fast_api.inject(Fault(), times=2, method="POST")
        fast_api.inject(Fault(delay=60), times=4, method="POST")
        first = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "durable_jobs.py"), *args
        )
        try:
            await until(lambda: fast_api.in_flight >= 4, "four creates in flight", timeout=30)
        finally:
            first.kill()
            await first.wait()
        assert len(fast_api.videos) == 2
        service = load("durable_jobs")
        assert await service.main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert sorted(line.split()[0] for line in lines) == [f"order-{n}" for n in range(6)]
        assert len(fast_api.videos) == 6  # one job per order, none paid twice
        assert_downloaded(lines, tmp_path / "out", fast_api)
        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            assert {entry.state for entry in await store.entries()} == {"downloaded"}
        # A third run finds everything done: no create, no download.
        fast_api.clear_requests()
        assert await service.main(args) == 0
        assert {r.method for r in fast_api.requests} <= {"GET"}
        assert not [r for r in fast_api.requests if r.path.endswith("/content")]

    def test_the_guide_shows_this_program(self) -> None:
        """docs/guide/ledger.md's worked example is this file, as it is."""
        guide = (EXAMPLES.parent / "docs" / "guide" / "ledger.md").read_text(encoding="utf-8")
        blocks = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)
        assert (EXAMPLES / "durable_jobs.py").read_text(encoding="utf-8") in blocks
