"""The data the API returns, as frozen attrs classes that know nothing of JSON.

Reading is tolerant (see ``_convert.py``): only ``id`` is required, an unknown
``status`` or ``model`` string is kept as it is, and the JSON object a model
was read from stays reachable as ``raw`` for fields the model does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "DEFAULT_WAITING_STATUSES",
    "Character",
    "DeletedVideo",
    "Video",
    "VideoError",
    "VideoPage",
]

#: Statuses of a job that is not finished yet: OpenAI's two, plus the words
#: OpenAI-compatible gateways use for the same states.
DEFAULT_WAITING_STATUSES: frozenset[str] = frozenset(
    {"queued", "in_progress", "pending", "preprocessing", "running", "processing"}
)

_EMPTY: Mapping[str, Any] = {}


@attrs.frozen(slots=True)
class VideoError:
    """Why a job failed."""

    code: str | None = None
    message: str | None = None


@attrs.frozen(slots=True)
class Video:
    """One video generation job.

    ``status`` is usually one of ``queued``, ``in_progress``, ``completed``,
    ``failed``, but any string a server sends is kept. Timestamps are
    timezone-aware UTC datetimes, or None.
    """

    id: str
    object: str = "video"
    model: str | None = None
    status: str | None = None
    progress: int | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    prompt: str | None = None
    size: str | None = None
    seconds: str | None = None
    remixed_from_video_id: str | None = None
    error: VideoError | None = None
    #: The JSON object this job was read from, for fields the model lacks.
    raw: Mapping[str, Any] = attrs.field(default=_EMPTY, eq=False, repr=False)

    @property
    def is_pending(self) -> bool:
        """True while the job is queued or running (by the default statuses)."""
        return self.status in DEFAULT_WAITING_STATUSES

    @property
    def is_finished(self) -> bool:
        """True once the job has left the waiting statuses, whatever the outcome."""
        return self.status not in DEFAULT_WAITING_STATUSES

    @property
    def is_completed(self) -> bool:
        """True when the job finished successfully and its content can be downloaded."""
        return self.status == "completed"

    @property
    def is_failed(self) -> bool:
        """True when the job finished with an error (see ``error``)."""
        return self.status == "failed"


@attrs.frozen(slots=True)
class VideoPage:
    """One page of ``GET /videos``."""

    data: tuple[Video, ...] = ()
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


@attrs.frozen(slots=True)
class DeletedVideo:
    """The answer to ``DELETE /videos/{id}``."""

    id: str
    object: str = "video.deleted"
    deleted: bool = True


@attrs.frozen(slots=True)
class Character:
    """A character created from a video, for reuse in later generations."""

    id: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    raw: Mapping[str, Any] = attrs.field(default=_EMPTY, eq=False, repr=False)
