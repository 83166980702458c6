"""The fake's job store: video jobs, their status over time, and cursor listing.

A job's status is not stored but computed from the clock whenever it is read: a created
job is ``queued`` for ``queue_seconds``, then ``in_progress`` for ``run_seconds`` with
``progress`` rising linearly from 0 to 99, then reaches its outcome: ``completed``
(progress 100, ``completed_at`` set, ``expires_at`` one day later) or ``failed``
(progress 0, ``error`` set, ``completed_at`` and ``expires_at`` null).

Jobs are kept sorted by ``(created_at, id)``, the listing order, so a page is a bisect
and a slice however many jobs there are. Deleted ids leave a tombstone holding their
sort key, so a listing whose ``after`` cursor was deleted meanwhile carries on from
where that job was.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from ._clock import Clock

__all__ = ["DEFAULT_ERROR", "EXPIRES_AFTER", "JobStore", "Outcome", "VideosView"]

EXPIRES_AFTER = 24 * 60 * 60
DEFAULT_ERROR: Mapping[str, str] = {
    "code": "video_generation_failed",
    "message": "Video generation failed.",
}
STATUSES = ("queued", "in_progress", "completed", "failed")

# The order of keys in a job's JSON, as the spec lists them; extra seeded keys follow.
_FIELDS = (
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
)
_TIMELINE_FIELDS = frozenset({"status", "progress", "completed_at", "expires_at", "error"})


@attrs.frozen
class Outcome:
    """How a job ends: ``completed`` or ``failed`` (with ``error``), after ``duration`` s."""

    status: str = "completed"
    error: Mapping[str, str] | None = None
    duration: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.status not in ("completed", "failed"):
            raise ValueError(f"an outcome is 'completed' or 'failed', not {self.status!r}")


@attrs.define
class _Job:
    id: str
    created_at: int
    fields: dict[str, Any]  # everything but the timeline; for a fixed job, all of it
    fixed: bool  # seeded with a final status: shown as given, never progresses
    run_start: float = 0.0  # when in_progress begins
    outcome: Outcome = attrs.Factory(Outcome)

    @property
    def key(self) -> tuple[int, str]:
        return (self.created_at, self.id)


class JobStore:
    """Jobs by id and in listing order; the status of each computed at read time."""

    def __init__(
        self,
        clock: Clock,
        *,
        queue_seconds: float,
        run_seconds: float,
        id_prefix: str,
        seed: int,
    ) -> None:
        self.clock = clock
        # Durations (queued, running, an outcome's) are divided by the clock's speed.
        self._speed = float(getattr(clock, "speed", 1.0))
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.id_prefix = id_prefix
        self.default_outcome = Outcome()
        self._rng = random.Random(seed)
        self._jobs: dict[str, _Job] = {}
        self._keys: list[tuple[int, str]] = []  # sorted ascending
        self._tombstones: dict[str, tuple[int, str]] = {}
        self._outcomes: dict[str, Outcome] = {}  # set_outcome for ids not seen yet
        self.characters: dict[str, dict[str, Any]] = {}
        #: Called with a job's id whenever when or how it ends may have changed.
        self.on_change: Callable[[str], None] | None = None

    # ids and lookups -------------------------------------------------------------------

    def new_id(self, prefix: str | None = None) -> str:
        """Return a fresh id: the prefix and 32 hex digits from the store's seeded RNG."""
        prefix = self.id_prefix if prefix is None else prefix
        while True:
            candidate = f"{prefix}{self._rng.getrandbits(128):032x}"
            if candidate not in self._jobs and candidate not in self._tombstones:
                return candidate

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def ids(self) -> Iterator[str]:
        """Ids in ascending listing order."""
        return (video_id for _, video_id in self._keys)

    def get(self, video_id: str) -> dict[str, Any] | None:
        """The job's JSON at the current clock time, or None if unknown."""
        job = self._jobs.get(video_id)
        return None if job is None else self._render(job, self.clock.now())

    # writes ----------------------------------------------------------------------------

    def create(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new job created by the API: queued now, then progressing."""
        now = self.clock.now()
        video_id = self.new_id()
        outcome = self._outcomes.pop(video_id, self.default_outcome)
        job = _Job(
            id=video_id,
            created_at=int(now),
            fields=dict(fields),
            fixed=False,
            run_start=now + self._duration(self.queue_seconds),
            outcome=outcome,
        )
        self._insert(job)
        return self._render(job, now)

    def add(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Seed one job, filling missing fields with realistic defaults (see ``add_videos``).

        An existing job with the same id is replaced.
        """
        now = self.clock.now()
        spec = dict(spec)
        video_id = str(spec.pop("id", None) or self.new_id())
        status = spec.pop("status", "completed")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r} for {video_id!r}")
        # The timeline starts at the exact moment (not the whole second shown) when
        # none is given: at a high speed, the lost fraction would be the whole queue.
        started = float(spec.get("created_at", now))
        created_at = int(spec.pop("created_at", now))
        fields: dict[str, Any] = {
            "object": "video",
            "model": "sora-2",
            "prompt": "A calico cat playing a piano on stage",
            "size": "720x1280",
            "seconds": "4",
            "remixed_from_video_id": None,
        }
        timeline = {k: spec.pop(k) for k in list(spec) if k in _TIMELINE_FIELDS}
        fields.update(spec)
        default_end = created_at + int(self._duration(self.queue_seconds + self.run_seconds))
        if status == "completed":
            completed_at = timeline.get("completed_at", default_end)
            expires = completed_at + EXPIRES_AFTER if completed_at is not None else None
            fields.update(
                status="completed",
                progress=timeline.get("progress", 100),
                completed_at=completed_at,
                expires_at=timeline.get("expires_at", expires),
                error=timeline.get("error"),
            )
            job = _Job(video_id, created_at, fields, fixed=True)
        elif status == "failed":
            fields.update(
                status="failed",
                progress=timeline.get("progress", 0),
                completed_at=timeline.get("completed_at"),
                expires_at=timeline.get("expires_at"),
                error=timeline.get("error", dict(DEFAULT_ERROR)),
            )
            job = _Job(video_id, created_at, fields, fixed=True)
        else:
            # Progress from created_at; an in_progress job is at least in_progress now,
            # at its given progress, even if created_at is too recent for that.
            run_start = started + self._duration(self.queue_seconds)
            if status == "in_progress":
                done = float(timeline.get("progress", 0)) / 99.0 * self._duration(self.run_seconds)
                run_start = min(run_start, now) - done
            outcome = self._outcomes.pop(video_id, self.default_outcome)
            job = _Job(video_id, created_at, fields, False, run_start, outcome)
        self.remove(video_id)
        self._tombstones.pop(video_id, None)
        self._insert(job)
        return self._render(job, now)

    def remove(self, video_id: str) -> bool:
        """Delete a job, keeping a tombstone for cursors; False if it did not exist."""
        job = self._jobs.pop(video_id, None)
        if job is None:
            return False
        index = bisect.bisect_left(self._keys, job.key)
        del self._keys[index]
        self._tombstones[video_id] = job.key
        return True

    def set_outcome(self, video_id: str | None, outcome: Outcome) -> None:
        """Set how a job ends; None sets the default for jobs created from now on."""
        if video_id is None:
            self.default_outcome = outcome
            return
        job = self._jobs.get(video_id)
        if job is None:
            self._outcomes[video_id] = outcome
        elif job.fixed:
            # A seeded final job switches to the new outcome straight away.
            if outcome.status == "failed":
                error = dict(outcome.error or DEFAULT_ERROR)
                job.fields.update(status="failed", progress=0, error=error)
                job.fields.update(completed_at=None, expires_at=None)
            else:
                end = job.created_at + int(self._duration(self.queue_seconds + self.run_seconds))
                completed_at = job.fields.get("completed_at") or end
                job.fields.update(status="completed", progress=100, error=None)
                job.fields.update(completed_at=completed_at)
                job.fields.update(expires_at=completed_at + EXPIRES_AFTER)
        else:
            job.outcome = outcome
            self._changed(video_id)

    def _insert(self, job: _Job) -> None:
        self._jobs[job.id] = job
        if not self._keys or job.key > self._keys[-1]:
            self._keys.append(job.key)  # the common case: seeding or creating in order
        else:
            bisect.insort(self._keys, job.key)
        self._changed(job.id)

    def _changed(self, video_id: str) -> None:
        if self.on_change is not None:
            self.on_change(video_id)

    def finish(self, video_id: str) -> tuple[float, str] | None:
        """When (clock time) and how a progressing job ends; None for an unknown job or
        one seeded in a final status."""
        job = self._jobs.get(video_id)
        if job is None or job.fixed:
            return None
        run = self.run_seconds if job.outcome.duration is None else job.outcome.duration
        return job.run_start + self._duration(run), job.outcome.status

    # reads -----------------------------------------------------------------------------

    def _render(self, job: _Job, now: float) -> dict[str, Any]:
        values = dict(job.fields)
        values["id"] = job.id
        values["created_at"] = job.created_at
        if not job.fixed:
            values.update(self._timeline(job, now))
        ordered = {name: values.pop(name) for name in _FIELDS if name in values}
        ordered.update(values)
        return ordered

    def _duration(self, seconds: float) -> float:
        """``seconds`` of job time in real seconds, at the clock's speed."""
        return seconds / self._speed

    def _timeline(self, job: _Job, now: float) -> dict[str, Any]:
        run = self.run_seconds if job.outcome.duration is None else job.outcome.duration
        run = self._duration(run)
        if now < job.run_start:
            return _phase("queued", 0)
        if now < job.run_start + run:
            progress = int(99 * (now - job.run_start) / run) if run > 0 else 0
            return _phase("in_progress", max(0, min(99, progress)))
        if job.outcome.status == "failed":
            error = dict(job.outcome.error or DEFAULT_ERROR)
            return _phase("failed", 0, error=error)
        completed_at = int(job.run_start + run)
        return _phase("completed", 100, completed_at, completed_at + EXPIRES_AFTER)

    def page(
        self, *, order: str, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Return one page of jobs and whether more follow; KeyError for an unknown cursor."""
        keys = self._keys
        now = self.clock.now()
        if after is None:
            index = 0 if order == "asc" else len(keys)
        else:
            job = self._jobs.get(after)
            cursor = job.key if job is not None else self._tombstones[after]
            # Strictly after the cursor's position in the chosen direction.
            if order == "asc":
                index = bisect.bisect_right(keys, cursor)
            else:
                index = bisect.bisect_left(keys, cursor)
        if order == "asc":
            chosen = keys[index : index + limit]
            has_more = index + limit < len(keys)
        else:
            start = max(0, index - limit)
            chosen = keys[start:index][::-1]
            has_more = start > 0
        return [self._render(self._jobs[video_id], now) for _, video_id in chosen], has_more


def _phase(
    status: str,
    progress: int,
    completed_at: int | None = None,
    expires_at: int | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "progress": progress,
        "completed_at": completed_at,
        "expires_at": expires_at,
        "error": error,
    }


class VideosView(Mapping[str, dict[str, Any]]):
    """Read-only mapping of id to the job's JSON, computed at the current clock time."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __getitem__(self, video_id: str) -> dict[str, Any]:
        job = self._store.get(video_id)
        if job is None:
            raise KeyError(video_id)
        return job

    def __iter__(self) -> Iterator[str]:
        return self._store.ids()

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._store
