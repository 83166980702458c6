"""The private cattrs converter: every wire concern of the models lives here.

Readers are tolerant on purpose, because the same API shape is served by
OpenAI and by compatible gateways that add, drop or loosely type fields:

- only the fields that identify an object (``id``) are required;
- unknown keys are ignored, and kept in ``raw`` where the model has one;
- unknown ``status`` / ``model`` strings are kept as they are;
- unix timestamps (int, float or numeric string) become UTC datetimes, and an
  ISO 8601 string is accepted too; null stays None;
- a number where a string is expected (``seconds: 8``) is read as its text.

What cannot be read at all raises ``APIResponseValidationError`` through
``structure()``, never a bare KeyError or TypeError.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._errors import APIResponseValidationError
from ._models import Character, DeletedVideo, Video, VideoError, VideoPage

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")


class _ShapeError(ValueError):
    """A JSON value of the wrong type where a model field was expected."""


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # Gateways send ``seconds: 8``; the spec says the string "8".
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str):
        return str(value)
    raise _ShapeError(f"{key!r} should be a string, got {type(value).__name__}")


def _integer(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None or type(value) is int:
        return value
    if isinstance(value, float) and value == value:  # not NaN
        return round(value)
    if isinstance(value, str):
        try:
            return round(float(value))
        except ValueError:
            pass
    raise _ShapeError(f"{key!r} should be a number, got {value!r}")


_UTC = timezone.utc
_from_unix = datetime.fromtimestamp
# The unix seconds a datetime can hold (years 1 to 9999): inside them the
# common case (an int) cannot fail, so it skips the checked path.
_MIN_UNIX, _MAX_UNIX = -62_135_596_800, 253_402_300_799


def _timestamp(obj: Mapping[str, Any], key: str) -> datetime | None:
    value = obj.get(key)
    if type(value) is int and _MIN_UNIX <= value <= _MAX_UNIX:
        return _from_unix(value, _UTC)
    if value is None:
        return None
    return _to_datetime(value, key)


def _to_datetime(value: object, key: str) -> datetime:
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        if isinstance(value, str):
            try:
                return datetime.fromtimestamp(float(value), tz=timezone.utc)
            except ValueError:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError) as exc:
        raise _ShapeError(f"{key!r} is not a timestamp: {value!r}") from exc
    raise _ShapeError(f"{key!r} should be a unix timestamp, got {type(value).__name__}")


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _ShapeError(f"{what} should be a JSON object, got {type(value).__name__}")
    return value


def _required_id(obj: Mapping[str, Any], what: str) -> str:
    value = obj.get("id")
    if type(value) is not str:
        raise _ShapeError(f"{what} has no string 'id'")
    return value


def structure_video_error(value: object, _: object = None) -> VideoError | None:
    """Read a job's ``error``: an object, or a bare message from a lax gateway."""
    if value is None:
        return None
    if isinstance(value, str):
        return VideoError(message=value)
    obj = _object(value, "'error'")
    return VideoError(code=_text(obj, "code"), message=_text(obj, "message"))


def structure_video(value: object, _: object = None) -> Video:
    """Read one job; this runs once per listed item, so it is written out by hand."""
    # json.loads gives plain dicts and strs: those skip the ABC isinstance
    # checks and the helper calls, which cost more than the rest of the job.
    obj = value if type(value) is dict else _object(value, "a video")
    get = obj.get
    video_id = get("id")
    if type(video_id) is not str:
        raise _ShapeError("a video has no string 'id'")
    error = get("error")
    # Positional, in the field order _VIDEO_FIELDS pins: about half the cost
    # of keywords for a 14-field frozen class.
    return Video(
        video_id,
        o if type(o := get("object")) is str and o else (_text(obj, "object") or "video"),
        m if type(m := get("model")) is str or m is None else _text(obj, "model"),
        s if type(s := get("status")) is str or s is None else _text(obj, "status"),
        p if type(p := get("progress")) is int or p is None else _integer(obj, "progress"),
        _timestamp(obj, "created_at"),
        _timestamp(obj, "completed_at"),
        _timestamp(obj, "expires_at"),
        t if type(t := get("prompt")) is str or t is None else _text(obj, "prompt"),
        z if type(z := get("size")) is str or z is None else _text(obj, "size"),
        d if type(d := get("seconds")) is str or d is None else _text(obj, "seconds"),
        r
        if type(r := get("remixed_from_video_id")) is str or r is None
        else _text(obj, "remixed_from_video_id"),
        None if error is None else structure_video_error(error),
        obj,
    )


_VIDEO_FIELDS = [
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
    "raw",
]
if tuple(f.name for f in attrs.fields(Video)) != tuple(_VIDEO_FIELDS):  # pragma: no cover
    raise ImportError("structure_video passes Video's fields by position: update it")


def structure_page(value: object, _: object = None) -> VideoPage:
    """Read one page of the list endpoint; ``data`` must be there."""
    obj = _object(value, "a list page")
    data = obj.get("data")
    if not isinstance(data, list):
        raise _ShapeError("a list page has no 'data' array")
    has_more = obj.get("has_more", False)
    if not isinstance(has_more, bool):
        raise _ShapeError(f"'has_more' should be a boolean, got {has_more!r}")
    return VideoPage(
        data=tuple([structure_video(item) for item in data]),
        first_id=_text(obj, "first_id"),
        last_id=_text(obj, "last_id"),
        has_more=has_more,
    )


def structure_deleted(value: object, _: object = None) -> DeletedVideo:
    obj = _object(value, "a deletion")
    deleted = obj.get("deleted", True)
    return DeletedVideo(
        id=_required_id(obj, "a deletion"),
        object=_text(obj, "object") or "video.deleted",
        deleted=bool(deleted),
    )


def structure_character(value: object, _: object = None) -> Character:
    obj = _object(value, "a character")
    return Character(
        id=_text(obj, "id"),
        name=_text(obj, "name"),
        created_at=_timestamp(obj, "created_at"),
        raw=obj,
    )


def configure_converter(converter: cattrs.Converter) -> cattrs.Converter:
    """Register every model's wire reading on ``converter``."""
    converter.register_structure_hook(Video, structure_video)
    converter.register_structure_hook(VideoPage, structure_page)
    converter.register_structure_hook(VideoError, structure_video_error)
    converter.register_structure_hook(DeletedVideo, structure_deleted)
    converter.register_structure_hook(Character, structure_character)
    converter.register_structure_hook(datetime, lambda v, _: _to_datetime(v, "timestamp"))
    return converter


@functools.cache
def converter() -> cattrs.Converter:
    """The one converter, built on first use: importing cattrs is about a sixth
    of what ``import asyncvideos`` adds to ``import aiohttp``."""
    import cattrs

    return configure_converter(cattrs.Converter())


def structure(data: object, cls: type[T], *, status_code: int | None = None) -> T:
    """Read ``data`` as ``cls``, or raise ``APIResponseValidationError``."""
    try:
        return converter().structure(data, cls)
    # OverflowError: ``Infinity`` or 1e300 where a number or timestamp belongs.
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise APIResponseValidationError(
            f"Unexpected response shape for {cls.__name__}: {exc}",
            body=data,
            status_code=status_code,
        ) from exc
