"""The service the crash harness kills: ``python tests/crash_service.py OPTIONS``.

It is a supervisor, as systemd or Kubernetes would be: it imports everything
once, then forks ``--workers`` service processes and forks each again when it
dies of ``SIGKILL``, until every one ends on its own. Forking a process that
has imported asyncvideos costs milliseconds, where starting Python costs half
a second: that is what makes a thousand kills affordable. (The supervisor
starts no thread and no event loop before it forks.)

Each service process (a "generation") is one run of a real service on the
ledger at ``--ledger``: it first ``resume()``s whatever the ledger knows, then
runs its whole task list (``create_and_wait`` with the task's key as the
``Idempotency-Key``, then ``download`` of each completed job into
``--folder``), and exits 0 when every task is done. Generation ``g`` of
worker ``w`` dies at one seeded kill point, the ``k``-th time it reaches it:

- ``before_post``: right after the intent is durable, before the POST;
- ``post_answer_lost``: the fake kills it after creating the job, before answering;
- ``before_record``: the POST answered, the id not written yet;
- ``mid_wait``: the fake kills it on a poll, before answering;
- ``mid_download``: the fake kills it halfway through a content body.

The first two of the fake's kinds are told to the fake in headers
(``x-harness-pid``, ``x-harness-kill``): see ``tests/crash_harness.py``. At
the end the supervisor prints one JSON line: kills and generations per worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# Everything a generation uses, imported before the first fork: every restart
# runs the same code, and pays no import.
import asyncvideos.ledger._config
import asyncvideos.ledger._resume  # noqa: F401
from asyncvideos import AmbiguousCreateError, AsyncVideos, AsyncVideosError
from asyncvideos.ledger import Change, Entry, Intent, LedgerStore, State, open_ledger

POINTS = ("before_post", "post_answer_lost", "before_record", "mid_wait", "mid_download")
SERVER_POINTS = frozenset({"post_answer_lost", "mid_wait", "mid_download"})
#: A few prompts shared by many tasks: identical requests under different keys,
#: as a real service makes them (what "adopt" must not confuse).
PROMPTS = ("a paper boat in the rain", "a lighthouse at dusk", "a fox in the snow [fails]")


def plan(seed: str, worker: int, generation: int, kills: int) -> tuple[str, int] | None:
    """The kill point of one generation: ``(point, occurrence)``, or None (run to the end)."""
    if generation >= kills:
        return None
    rng = random.Random(f"{seed}:{worker}:{generation}")
    return rng.choice(POINTS), rng.randint(1, 3)


def task_keys(prefix: str, count: int) -> list[tuple[str, str]]:
    return [(f"{prefix}-{n:04d}", PROMPTS[n % len(PROMPTS)]) for n in range(count)]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingLedger(LedgerStore):
    """A ledger that dies at a seeded point of the flow (the client side's kill points)."""

    def __init__(self, inner: LedgerStore, point: tuple[str, int] | None, downloads: Path) -> None:
        super().__init__(lease_seconds=inner.lease_seconds)
        self.inner = inner
        self.point = point
        self.seen = 0
        self.downloads = downloads

    def _reached(self, point: str) -> None:
        if self.point is not None and self.point[0] == point:
            self.seen += 1
            if self.seen == self.point[1]:
                die()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> Entry | None:
        return await self.inner.get(key)

    async def find(self, video_id: str) -> Entry | None:
        return await self.inner.find(video_id)

    async def select(
        self,
        *,
        states: Collection[State] | None = None,
        since: datetime | None = None,
        after: Entry | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        return await self.inner.select(states=states, since=since, after=after, limit=limit)

    async def owned(self, video_ids: Collection[str]) -> dict[str, str]:
        return await self.inner.owned(video_ids)

    async def begin(self, intent: Intent, *, owner: str) -> tuple[Entry, bool]:
        entry, written = await self.inner.begin(intent, owner=owner)
        if written:
            self._reached("before_post")
        return entry, written

    async def claim(
        self,
        key: str,
        *,
        owner: str,
        states: Collection[State],
        replacing: str | None = None,
        change: Change | None = None,
    ) -> Entry | None:
        return await self.inner.claim(
            key, owner=owner, states=states, replacing=replacing, change=change
        )

    async def update(
        self, key: str, change: Change, *, states: Collection[State], owner: str | None = None
    ) -> Entry | None:
        if "video_id" in change.columns():
            self._reached("before_record")
        entry = await self.inner.update(key, change, states=states, owner=owner)
        if entry is not None and change.state == "downloaded":
            # One line per download recorded, for the harness to count repeats.
            with self.downloads.open("a") as log:
                log.write(json.dumps([key, entry.video_id, time.time()]) + "\n")
        return entry

    async def record(
        self, key: str, change: Change, *, states: Collection[State], owner: str | None = None
    ) -> bool:
        # The backend's own way (the PostgreSQL ledger groups these): what a service runs.
        if "video_id" in change.columns():
            self._reached("before_record")
        return await self.inner.record(key, change, states=states, owner=owner)

    async def note(self, key: str, change: Change, *, states: Collection[State]) -> None:
        await self.inner.note(key, change, states=states)

    async def purge(self, *, older_than: timedelta) -> int:
        return await self.inner.purge(older_than=older_than)


async def generation(args: argparse.Namespace, worker: int, number: int) -> int:
    point = plan(args.seed, worker, number, args.kills)
    headers = {"x-harness-pid": str(os.getpid())}
    if point is not None and point[0] in SERVER_POINTS:
        headers["x-harness-kill"] = f"{point[0]}:{point[1]}"
    folder = Path(args.folder)
    store = KillingLedger(open_ledger(args.ledger), point, Path(args.downloads_log))
    async with AsyncVideos(
        api_key=args.api_key,
        base_url=args.base_url,
        default_headers=headers,
        ledger=store,
        reconcile=args.reconcile,
        clock_skew=args.clock_skew,
        max_retries=5,
    ) as videos:
        try:
            async with contextlib.aclosing(videos.resume(download_dir=folder)) as resumed:
                async for _ in resumed:
                    pass  # failures (ambiguous entries) are the ledger's to show

            gate = asyncio.Semaphore(args.concurrency)

            async def task(key: str, prompt: str) -> None:
                async with gate:
                    try:
                        video = await videos.create_and_wait(prompt, idempotency_key=key)
                    except AmbiguousCreateError:
                        return  # reconcile="raise": left for a person to resolve
                    if video.is_completed:
                        await videos.download(video, folder / f"{video.id}.mp4")

            await asyncio.gather(
                *(task(key, prompt) for key, prompt in task_keys(args.prefix, args.tasks))
            )
        finally:
            await store.close()
    return 0


def run_generation(args: argparse.Namespace, worker: int, number: int) -> None:
    """The body of a forked service process; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = asyncio.run(generation(args, worker, number))
    except AsyncVideosError:
        traceback.print_exc()
        code = 3
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def supervise(args: argparse.Namespace) -> dict[str, Any]:
    generations = [0] * args.workers
    kills = [0] * args.workers
    running: dict[int, int] = {}  # pid -> worker

    def start(worker: int) -> None:
        pid = os.fork()
        if pid == 0:
            run_generation(args, worker, generations[worker])
        running[pid] = worker

    for worker in range(args.workers):
        start(worker)
    failures = []
    while running:
        pid, status = os.wait()
        worker = running.pop(pid)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            kills[worker] += 1
            generations[worker] += 1
            if generations[worker] > args.kills + 20:  # runaway: a service that never finishes
                failures.append(f"worker {worker}: no end after {generations[worker]} generations")
                continue
            start(worker)
        elif not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            failures.append(f"worker {worker} generation {generations[worker]} ended with {status}")
    return {"kills": kills, "generations": [g + 1 for g in generations], "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--downloads-log", required=True)
    parser.add_argument("--reconcile", default="resend")
    parser.add_argument("--clock-skew", type=float, default=1.0)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--kills", type=int, default=4, help="kills per worker")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", default="0")
    parser.add_argument("--prefix", default="task")
    args = parser.parse_args()
    print(json.dumps(supervise(args)), flush=True)


if __name__ == "__main__":
    main()
