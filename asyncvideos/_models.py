"""The data the API returns, as frozen attrs classes that know nothing of JSON.

Reading is tolerant (see ``_convert.py``): only ``id`` is required, an unknown
``status`` or ``model`` string is kept as it is, and the JSON object a model
was read from stays reachable as ``raw`` for fields the model does not know.
A ``Video`` read by msgspec keeps that object's bytes and makes ``raw`` from
them when it is first used (``_RawOnFirstUse``); a read ``Video`` keeps each
timestamp as the unix seconds it was sent as, and makes the datetime when it
is first used (``_UnixOnFirstUse``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

__all__ = [
    "COMPLETED_STATUSES",
    "DEFAULT_WAITING_STATUSES",
    "FAILED_STATUSES",
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

#: Statuses of a job that finished successfully: OpenAI's, and the word some
#: gateways use for it.
COMPLETED_STATUSES: frozenset[str] = frozenset({"completed", "succeeded"})

#: Statuses of a job that finished without a video: failed, and the ends
#: gateways report for jobs that were cancelled or timed out upstream.
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "expired", "cancelled"})

_EMPTY: Mapping[str, Any] = {}
_TIMESTAMPS = ("created_at", "completed_at", "expires_at")
_UTC = timezone.utc
_from_unix = datetime.fromtimestamp

#: The unix seconds a datetime can hold (years 1 to 9999): a reader may leave
#: an int inside them in a timestamp's slot, since making its datetime cannot fail.
MIN_UNIX, MAX_UNIX = -62_135_596_800, 253_402_300_799


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # Read timestamps are UTC already; one built by hand may carry another zone.
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


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
    timezone-aware UTC datetimes, or None. ``size`` (``"1280x720"``) and
    ``seconds`` (``"8"``) are strings, as the API sends them: use
    ``int(video.seconds)`` for a number (``create()`` takes ``seconds=8`` or
    ``"8"``).
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
        """True when the job finished successfully and its content can be downloaded
        (``completed``, or ``succeeded`` as some gateways say)."""
        return self.status in COMPLETED_STATUSES

    @property
    def is_failed(self) -> bool:
        """True when the job finished without a video: ``failed`` (see ``error``),
        ``expired`` or ``cancelled``."""
        return self.status in FAILED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The job as a JSON-ready dict: fields the server sent that this model
        does not know (from ``raw``), then every field of the model, with
        timestamps as ISO 8601 UTC strings (``2025-10-09T08:53:20Z``).

        ``json.dumps(video.to_dict())`` always works for a job read from a
        server; it is the form the CLI prints as JSON lines.
        """
        data: dict[str, Any] = dict(self.raw)
        data["id"] = self.id
        data["object"] = self.object
        data["model"] = self.model
        data["status"] = self.status
        data["progress"] = self.progress
        for name in _TIMESTAMPS:
            data[name] = _iso(getattr(self, name))
        data["prompt"] = self.prompt
        data["size"] = self.size
        data["seconds"] = self.seconds
        data["remixed_from_video_id"] = self.remixed_from_video_id
        error = self.error
        if error is None:
            data["error"] = None
        else:
            # Keep what a server said beside code and message (``param``, ...).
            sent = data.get("error")
            data["error"] = {
                **(sent if isinstance(sent, Mapping) else {}),
                "code": error.code,
                "message": error.message,
            }
        return data


class _OverSlot:
    """A descriptor over the slot attrs made for a field of ``Video``: writes go
    to the slot (the class stays frozen: only ``object.__setattr__`` reaches
    them), reads through a subclass's ``__get__``."""

    __slots__ = ("_get", "slot")

    def __init__(self, slot: Any) -> None:
        self.slot = slot
        self._get = slot.__get__

    def __set__(self, video: object, value: object) -> None:
        self.slot.__set__(video, value)


class _RawOnFirstUse(_OverSlot):
    """``Video.raw``: the slot attrs made for it, read through a check for bytes.

    A job read by msgspec (the ``speedups`` extra) is given its JSON object's
    bytes instead of the dict; the first read of ``raw`` makes the dict from
    them and keeps it in the slot. So a listing that never looks at ``raw``
    never builds it, and ``raw``, ``to_dict()``, pickling, ``attrs.asdict``
    and ``attrs.evolve`` see the same dict as ever. Writes go to the slot as
    before.
    """

    __slots__ = ()

    def __get__(self, video: object, owner: type[Any] | None = None) -> Any:
        if video is None:
            return self
        value = self._get(video, owner)
        if type(value) is dict:
            return value
        read = UNREAD_RAW.get(type(value))
        if read is None:
            return value
        value = read(value)
        self.slot.__set__(video, value)
        return value


#: The types of bytes a reader may leave in ``Video.raw``, with the function that
#: makes the dict of each (``_speedups`` adds msgspec's ``Raw``).
UNREAD_RAW: dict[type[Any], Callable[[Any], Mapping[str, Any]]] = {}


class _UnixOnFirstUse(_OverSlot):
    """A timestamp of ``Video``: the slot attrs made for it, read through a
    check for unix seconds.

    A reader that checked a timestamp to be an int between ``MIN_UNIX`` and
    ``MAX_UNIX`` stores that int in the slot (``slot.__set__``); the first
    read makes the UTC datetime, which cannot fail, and keeps it. Making
    three datetimes is about a fifth of reading a job without msgspec, and a
    listing seldom looks at them. Every other way in (``__init__``,
    ``attrs.evolve``, unpickling) sets through ``__set__``, which keeps an
    int given by hand as the int it is.
    """

    __slots__ = ()

    def __get__(self, video: object, owner: type[Any] | None = None) -> Any:
        if video is None:
            return self
        value = self._get(video, owner)
        if type(value) is int:
            value = _from_unix(value, _UTC)
            self.slot.__set__(video, value)
        elif type(value) is _AsGiven:
            return value.value
        return value

    def __set__(self, video: object, value: object) -> None:
        self.slot.__set__(video, _AsGiven(value) if type(value) is int else value)


class _AsGiven:
    """An int set by hand in a timestamp's slot, which must read back as itself."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


# Through setattr: to a type checker, these are the fields attrs declares.
setattr(Video, "raw", _RawOnFirstUse(Video.__dict__["raw"]))  # noqa: B010
for _name in _TIMESTAMPS:
    setattr(Video, _name, _UnixOnFirstUse(Video.__dict__[_name]))


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
