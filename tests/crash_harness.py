"""The crash harness: real service processes killed with SIGKILL at seeded points.

``run_batch(Batch(...))`` starts a ``KillingFake`` (the fake API, in this
process, so it outlives every kill) and ``tests/crash_service.py`` (a
supervisor that forks ``workers`` service processes and restarts each one it
loses), lets the seeded kills happen, and when every worker has finished
checks the outcome against the fake's own records:

- ``duplicates``: jobs the server made beyond one per logical job (a job of an
  ``ambiguous`` entry, made by its key, is that entry's, not a duplicate);
- ``lost``: logical jobs without an entry that finished (``downloaded`` or
  ``failed``; ``ambiguous`` too under ``reconcile="raise"``), and completed jobs
  not downloaded;
- ``bad_files``: downloads whose bytes are not ``content_bytes``, stray files,
  leftover ``.part`` files;
- ``repeat_downloads``: downloads recorded more than once for a job, and
  content requests for a job after its first download was recorded (a whole
  file fetched again; the service logs each ``downloaded`` write);
- ``intents_left``: entries still in ``intent``.

Reusable for another backend: ``Batch(ledger_url=..., workers=N)``; the URL
must name an empty ledger, and ``open_ledger(url)`` must open it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from asyncvideos.ledger import Entry, open_ledger
from asyncvideos.testing import FakeVideosAPI, Fault
from asyncvideos.testing._recording import RecordedRequest
from asyncvideos.testing._routes import Reply

SERVICE = Path(__file__).with_name("crash_service.py")
sys.path.insert(0, str(SERVICE.parent))
from crash_service import task_keys  # noqa: E402  (the service's own task list)

VIDEO_BYTES = 96 * 1024


@attrs.frozen
class Batch:
    """One service run: ``tasks`` logical jobs, ``workers`` processes on one ledger,
    each killed ``kills`` times at seeded points."""

    ledger_url: str
    folder: Path
    policy: str = "resend"
    tasks: int = 24
    workers: int = 1
    kills: int = 8
    concurrency: int = 2
    seed: str = "0"
    timeout: float = 180.0

    @property
    def downloads_log(self) -> Path:
        return self.folder.with_name(self.folder.name + "-downloads.log")


@attrs.frozen
class Figures:
    kill_points: int = 0
    batches: int = 0
    jobs: int = 0
    duplicates: int = 0
    lost: int = 0
    bad_files: int = 0
    repeat_downloads: int = 0
    intents_left: int = 0
    ambiguous: int = 0
    wall: float = 0.0
    problems: tuple[str, ...] = ()

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            *(
                getattr(self, field.name) + getattr(other, field.name)
                for field in attrs.fields(Figures)
            )
        )

    @property
    def clean(self) -> bool:
        return not (
            self.duplicates
            or self.lost
            or self.bad_files
            or self.repeat_downloads
            or self.intents_left
            or self.problems
        )


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rpartition(b")")[2].split()[0]
    except OSError:
        return True
    return state in (b"Z", b"X")


class KillingFake(FakeVideosAPI):
    """The fake API with the server side's kill points, and a log of its jobs.

    A request with ``x-harness-kill: POINT:K`` from ``x-harness-pid`` kills that
    process the K-th time it reaches POINT: ``post_answer_lost`` (a POST that
    made a job, killed before the answer is written), ``mid_wait`` (a poll,
    before it is answered), ``mid_download`` (a content body, after half of it).
    A job whose prompt holds ``[fails]`` fails.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        #: job id -> the Idempotency-Key of the POST that made it
        self.created_by: dict[str, str] = {}
        #: (wall time, job id) of each content request
        self.content_requests: list[tuple[float, str]] = []
        self.kills = 0
        self._reached: Counter[tuple[str, str]] = Counter()

    def _kill_at(self, rec: RecordedRequest, point: str) -> int | None:
        """The pid to kill, when ``rec`` is its planned kill point."""
        planned = rec.headers.get("x-harness-kill", "")
        pid = rec.headers.get("x-harness-pid", "")
        name, _, occurrence = planned.partition(":")
        if name != point or not pid.isdigit():
            return None
        self._reached[pid, point] += 1
        return int(pid) if self._reached[pid, point] == int(occurrence) else None

    def _kill(self, pid: int) -> None:
        """SIGKILL, and wait until the process is gone: it reads no answer."""
        self.kills += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.001)

    def _run(self, rec: RecordedRequest) -> Reply:
        segments = rec.raw_path.split("/")
        if rec.method == "GET" and len(segments) == 4 and segments[2] == "videos":
            pid = self._kill_at(rec, "mid_wait")
            if pid is not None:
                self._kill(pid)
                return Reply(503)  # never read
        reply = super()._run(rec)
        if (
            rec.method == "POST"
            and reply.status == 200
            and "idempotent-replayed" not in reply.headers
        ):
            job = json.loads(reply.body)
            self.created_by[job["id"]] = rec.headers.get("idempotency-key", "")
            if "[fails]" in str(job.get("prompt")):
                self.set_outcome(job["id"], "failed", error={"code": "moderation", "message": "no"})
            pid = self._kill_at(rec, "post_answer_lost")
            if pid is not None:
                self._kill(pid)
        return reply

    def pick_fault(self, method: str, raw_path: str) -> Fault | None:
        if method == "GET" and raw_path.endswith("/content"):
            rec = self._requests[-1]  # recorded just before the fault is picked
            self.content_requests.append((time.time(), raw_path.split("/")[3]))
            pid = self._kill_at(rec, "mid_download")
            if pid is not None:
                # Half the body is sent, then the process dies holding the rest.
                asyncio.get_running_loop().call_later(0.05, self._kill, pid)
                return Fault(stall_after_bytes=VIDEO_BYTES // 2)
        return super().pick_fault(method, raw_path)


def _service_args(api: FakeVideosAPI, batch: Batch) -> list[str]:
    return [
        str(SERVICE),
        "--base-url",
        api.base_url,
        "--api-key",
        api.api_key,
        "--ledger",
        batch.ledger_url,
        "--folder",
        str(batch.folder),
        "--downloads-log",
        str(batch.downloads_log),
        "--reconcile",
        batch.policy,
        "--tasks",
        str(batch.tasks),
        "--workers",
        str(batch.workers),
        "--kills",
        str(batch.kills),
        "--concurrency",
        str(batch.concurrency),
        "--seed",
        batch.seed,
    ]


async def run_batch(batch: Batch) -> Figures:
    """Run one batch to its end and check it; the figures (never raises on a finding)."""
    started = time.monotonic()
    batch.folder.mkdir(parents=True, exist_ok=True)
    async with KillingFake(
        speed=200.0,
        poll_after_ms=5,
        content_sizes={"video": VIDEO_BYTES},
        idempotency_keys=batch.policy != "adopt",  # adopt: keys ignored, as by LiteLLM
    ) as api:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *_service_args(api, batch),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), batch.timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        problems: list[str] = []
        if process.returncode != 0 or not out.strip():
            problems.append(f"supervisor ended with {process.returncode}: {err.decode()[-2000:]}")
            summary: dict[str, Any] = {"kills": [], "failures": []}
        else:
            summary = json.loads(out.decode().strip().splitlines()[-1])
            problems.extend(summary["failures"])
            if summary["failures"]:
                problems.append(err.decode()[-3000:])
        figures = await check(api, batch, problems)
    return attrs.evolve(
        figures,
        kill_points=sum(summary["kills"]),
        wall=time.monotonic() - started,
    )


async def check(api: KillingFake, batch: Batch, problems: list[str]) -> Figures:
    """Compare the ledger and the files with what the fake made and served."""
    store = open_ledger(batch.ledger_url)
    try:
        entries = await store.entries()
    finally:
        await store.close()
    tasks = [key for key, _ in task_keys("task", batch.tasks)]
    by_key = {entry.key: entry for entry in entries}
    finals = {"downloaded", "failed"} | ({"ambiguous"} if batch.policy == "raise" else set())
    lost = [key for key in tasks if key not in by_key or by_key[key].state not in finals]
    stray = set(by_key) - set(tasks)
    if stray:
        problems.append(f"entries for no task: {sorted(stray)}")
    server = dict(api.videos)
    owned = {entry.video_id: entry for entry in entries if entry.video_id is not None}
    ambiguous = [entry for entry in entries if entry.state == "ambiguous"]
    made_by_ambiguous = {entry.key for entry in ambiguous} & set(api.created_by.values())
    duplicates = len(server) - len(set(owned) & set(server)) - len(made_by_ambiguous)
    for video_id, entry in owned.items():
        job = server.get(video_id)
        if job is None:
            problems.append(f"{entry.key}: job {video_id} is not on the server")
        elif job["status"] == "completed" and entry.state != "downloaded":
            lost.append(entry.key)
        elif job["status"] == "failed" and entry.state != "failed":
            problems.append(f"{entry.key}: failed on the server, {entry.state} in the ledger")
    bad = _bad_files(api, batch.folder, owned.values())
    repeats = _repeat_downloads(api, batch.downloads_log)
    return Figures(
        batches=1,
        jobs=len(tasks),
        duplicates=abs(duplicates),  # fewer jobs than entries own is a bug too
        lost=len(set(lost)),
        bad_files=len(bad),
        repeat_downloads=repeats,
        intents_left=sum(entry.state == "intent" for entry in entries),
        ambiguous=len(ambiguous),
        problems=(*problems, *bad),
    )


def _bad_files(api: FakeVideosAPI, folder: Path, entries: Iterable[Entry]) -> list[str]:
    expected: dict[str, str] = {}
    bad = []
    for entry in entries:
        if entry.state != "downloaded":
            continue
        assert entry.target is not None
        assert entry.video_id is not None
        expected[os.path.abspath(entry.target)] = entry.video_id
        path = Path(entry.target)
        if not path.is_file() or path.read_bytes() != api.content_bytes(entry.video_id):
            bad.append(f"{entry.key}: {path} is not the job's content")
    for path in folder.iterdir():
        if os.path.abspath(path) not in expected:
            bad.append(f"a file no entry downloaded: {path.name}")
    return bad


def _repeat_downloads(api: KillingFake, log: Path) -> int:
    """Downloads recorded twice, and content fetched after the first record."""
    first: dict[str, float] = {}
    repeats = 0
    lines = log.read_text().splitlines() if log.exists() else []
    for line in lines:
        _, video_id, at = json.loads(line)
        if video_id in first:
            repeats += 1
        first[video_id] = min(at, first.get(video_id, at))
    late = sum(1 for at, video_id in api.content_requests if at > first.get(video_id, at + 1))
    return repeats + late


async def run_batches(batches: Iterable[Batch], *, parallel: int = 2) -> Figures:
    """Several batches, ``parallel`` at a time; their figures added up."""
    gate = asyncio.Semaphore(parallel)

    async def one(batch: Batch) -> Figures:
        async with gate:
            return await run_batch(batch)

    started = time.monotonic()
    results = await asyncio.gather(*(one(batch) for batch in batches))
    total = sum(results, Figures())
    return attrs.evolve(total, wall=time.monotonic() - started)
