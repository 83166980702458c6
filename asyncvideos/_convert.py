"""The private cattrs converter: every wire concern of the models lives here.

Readers are tolerant on purpose, because the same API shape is served by
OpenAI and by compatible gateways that add, drop or loosely type fields:

- only the fields that identify an object (``id``) are required;
- unknown keys are ignored, and kept in ``raw`` where the model has one;
- unknown ``status`` / ``model`` strings are kept as they are;
- unix timestamps (int, float or numeric string) become UTC datetimes, and an
  ISO 8601 string is accepted too; null stays None;
- a number where a string is expected (``seconds: 8``) is read as its text;
- an id or cursor longer than ``MAX_ID_LENGTH`` (4,096 characters) is refused:
  it would be sent back in a URL and remembered by a listing; so is a page of
  more than ``MAX_PAGE_JOBS`` (10,000) jobs, before they are built.

What cannot be read at all raises ``APIResponseValidationError`` through
``structure()``, never a bare KeyError or TypeError. ``decode()`` reads bytes:
it weighs a large body before parsing it (``_cost.py``) and parses with
msgspec where it is installed (``_speedups.py``).
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from . import _speedups
from ._cost import DEFAULT_PARSE_BUDGET, check_weight
from ._errors import APIResponseValidationError
from ._models import MAX_UNIX, MIN_UNIX, Character, DeletedVideo, Video, VideoError, VideoPage
from ._protocol import MAX_BODY_DEPTH, MAX_ID_LENGTH, MAX_PAGE_JOBS, decipher, nested_deeper

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")


class _ShapeError(ValueError):
    """A JSON value of the wrong type where a model field was expected."""


# A value quoted in a message is cut short in length and in depth: a server may
# nest it thousands of levels deep, and repr() would recurse as deep.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 120, 120
_shown = _REPR.repr


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


def _integer(obj: Mapping[str, Any], key: str) -> int:
    """The slow path of an integer field: for a value that is not an int or null."""
    value = obj.get(key)
    if isinstance(value, float) and value == value:  # not NaN
        return round(value)
    if isinstance(value, str):
        try:
            return round(float(value))
        except ValueError:
            pass
    raise _ShapeError(f"{key!r} should be a number, got {_shown(value)}")


_UTC = timezone.utc
_from_unix = datetime.fromtimestamp


def _timestamp(obj: Mapping[str, Any], key: str) -> datetime | None:
    value = obj.get(key)
    # Inside the range a datetime holds, the common case (an int) cannot fail,
    # so it skips the checked path.
    if type(value) is int and MIN_UNIX <= value <= MAX_UNIX:
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
        raise _ShapeError(f"{key!r} is not a timestamp: {_shown(value)}") from exc
    raise _ShapeError(f"{key!r} should be a unix timestamp, got {type(value).__name__}")


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _ShapeError(f"{what} should be a JSON object, got {type(value).__name__}")
    return value


def _required_id(obj: Mapping[str, Any], what: str) -> str:
    value = obj.get("id")
    if type(value) is not str:
        raise _ShapeError(f"{what} has no string 'id'")
    if len(value) > MAX_ID_LENGTH:
        raise _too_long(value, "id")
    return value


def _id_text(obj: Mapping[str, Any], key: str) -> str | None:
    """An id or cursor that may be missing: text, within ``MAX_ID_LENGTH``."""
    value = _text(obj, key)
    if value is not None and len(value) > MAX_ID_LENGTH:
        raise _too_long(value, key)
    return value


def _too_long(value: str, key: str) -> _ShapeError:
    return _ShapeError(
        f"{key!r} is {len(value)} characters long; an id or cursor may have {MAX_ID_LENGTH}"
    )


def structure_video_error(value: object, _: object = None) -> VideoError | None:
    """Read a job's ``error``: an object, or a bare message from a lax gateway."""
    if value is None:
        return None
    if isinstance(value, str):
        return VideoError(message=value)
    obj = _object(value, "'error'")
    return VideoError(code=_text(obj, "code"), message=_text(obj, "message"))


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
if (  # pragma: no cover
    tuple(f.name for f in attrs.fields(Video)) != tuple(_VIDEO_FIELDS)
    or any(f.validator or f.converter for f in attrs.fields(Video))
    or hasattr(Video, "__attrs_post_init__")
    or hasattr(Video, "__attrs_pre_init__")
):
    raise ImportError("structure_video sets Video's slots, bypassing __init__: update it")


# A Video is built without the frozen attrs ``__init__`` (it routes every
# field through ``object.__setattr__``: about a third of the cost of building a
# job). Correct only while Video has no validators, converters or post-init
# hook, which the import-time check above pins. ``raw`` and the timestamps are
# set in the slots under the descriptors that read them (``_models``): a
# timestamp may be left as its unix seconds there.
_new = object.__new__
_set_class = object.__dict__["__class__"].__set__


class _Unfrozen(Video):
    """What the common shape of a job is written into before it becomes a ``Video``.

    The same slots as ``Video`` (so ``__class__`` may be assigned, as
    ``_speedups`` does with msgspec's), with plain attribute writes: Python
    stores into a slot directly (about 6 ns) where a slot's ``__set__`` called
    from Python costs about 35 ns, and a job has fourteen. ``raw`` and the
    timestamps are their bare slots here, under ``Video``'s descriptors.
    """

    __slots__ = ()
    # Both: a class whose __setattr__ and __delattr__ are object's gets the
    # generic C slot, which is what the interpreter's fast store needs.
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


for _name in ("raw", "created_at", "completed_at", "expires_at"):
    setattr(_Unfrozen, _name, Video.__dict__[_name].slot)
(
    _set_id,
    _set_object,
    _set_model,
    _set_status,
    _set_progress,
    _set_created_at,
    _set_completed_at,
    _set_expires_at,
    _set_prompt,
    _set_size,
    _set_seconds,
    _set_remixed_from,
    _set_error,
    _set_raw,
) = (getattr(Video.__dict__[name], "slot", Video.__dict__[name]).__set__ for name in _VIDEO_FIELDS)


def structure_video(value: object, _: object = None) -> Video:
    """Read one job (see ``read_videos``)."""
    return read_videos([value])[0]


def read_videos(items: list[object]) -> tuple[Video, ...]:
    """Read the jobs of a page; this runs once per listed item, so it is written
    out by hand, with no call per job on the common path.

    A job as OpenAI sends it (every field there, each of its plain JSON type or
    null, no error) is read in one pass of subscripts and type checks; any other
    object is read field by field by ``_read_video``, which gives the same
    result for the common shape (``tests/test_models_hypothesis.py``).
    """
    videos: list[Video] = []
    append = videos.append
    for value in items:
        # json.loads gives plain dicts and strs: those skip the ABC isinstance
        # checks and the helper calls, which cost more than the rest of the job.
        if type(value) is not dict:
            append(_read_video(value))
            continue
        try:
            video_id = value["id"]
            kind = value["object"]
            model = value["model"]
            status = value["status"]
            progress = value["progress"]
            created_at = value["created_at"]
            completed_at = value["completed_at"]
            expires_at = value["expires_at"]
            prompt = value["prompt"]
            size = value["size"]
            seconds = value["seconds"]
            remixed_from = value["remixed_from_video_id"]
            error = value["error"]
        except KeyError:
            append(_read_video(value))
            continue
        if not (
            type(video_id) is str
            and len(video_id) <= MAX_ID_LENGTH
            and type(kind) is str
            and kind
            and (type(model) is str or model is None)
            and (type(status) is str or status is None)
            and (type(progress) is int or progress is None)
            # Timestamps: an int inside the range a datetime holds cannot fail,
            # so it is kept until it is read (``_models._UnixOnFirstUse``).
            and (
                (type(created_at) is int and MIN_UNIX <= created_at <= MAX_UNIX)
                or created_at is None
            )
            and (
                (type(completed_at) is int and MIN_UNIX <= completed_at <= MAX_UNIX)
                or completed_at is None
            )
            and (
                (type(expires_at) is int and MIN_UNIX <= expires_at <= MAX_UNIX)
                or expires_at is None
            )
            and (type(prompt) is str or prompt is None)
            and (type(size) is str or size is None)
            and (type(seconds) is str or seconds is None)
            and (type(remixed_from) is str or remixed_from is None)
            and error is None
        ):
            append(_read_video(value))
            continue
        # Any: to a type checker these are a frozen Video's fields, of their read types.
        video: Any = _new(_Unfrozen)
        video.id = video_id
        video.object = kind
        video.model = model
        video.status = status
        video.progress = progress
        video.created_at = created_at
        video.completed_at = completed_at
        video.expires_at = expires_at
        video.prompt = prompt
        video.size = size
        video.seconds = seconds
        video.remixed_from_video_id = remixed_from
        video.error = None
        video.raw = value
        _set_class(video, Video)
        append(video)
    return tuple(videos)


def _read_video(value: object) -> Video:
    """Read one job of any shape, field by field, tolerantly."""
    obj = value if type(value) is dict else _object(value, "a video")
    get = obj.get
    video_id = get("id")
    if type(video_id) is not str:
        raise _ShapeError("a video has no string 'id'")
    if len(video_id) > MAX_ID_LENGTH:
        raise _too_long(video_id, "id")
    video = _new(Video)
    _set_id(video, video_id)
    v = get("object")
    _set_object(video, v if type(v) is str and v else (_text(obj, "object") or "video"))
    v = get("model")
    _set_model(video, v if type(v) is str or v is None else _text(obj, "model"))
    v = get("status")
    _set_status(video, v if type(v) is str or v is None else _text(obj, "status"))
    v = get("progress")
    _set_progress(video, v if type(v) is int or v is None else _integer(obj, "progress"))
    # Timestamps: an int inside the range a datetime holds cannot fail, so it
    # is kept as it is until it is read (``_models._UnixOnFirstUse``).
    v = get("created_at")
    if (type(v) is int and MIN_UNIX <= v <= MAX_UNIX) or v is None:
        _set_created_at(video, v)
    else:
        _set_created_at(video, _to_datetime(v, "created_at"))
    v = get("completed_at")
    if (type(v) is int and MIN_UNIX <= v <= MAX_UNIX) or v is None:
        _set_completed_at(video, v)
    else:
        _set_completed_at(video, _to_datetime(v, "completed_at"))
    v = get("expires_at")
    if (type(v) is int and MIN_UNIX <= v <= MAX_UNIX) or v is None:
        _set_expires_at(video, v)
    else:
        _set_expires_at(video, _to_datetime(v, "expires_at"))
    v = get("prompt")
    _set_prompt(video, v if type(v) is str or v is None else _text(obj, "prompt"))
    v = get("size")
    _set_size(video, v if type(v) is str or v is None else _text(obj, "size"))
    v = get("seconds")
    _set_seconds(video, v if type(v) is str or v is None else _text(obj, "seconds"))
    v = get("remixed_from_video_id")
    _set_remixed_from(
        video, v if type(v) is str or v is None else _text(obj, "remixed_from_video_id")
    )
    v = get("error")
    _set_error(video, None if v is None else structure_video_error(v))
    _set_raw(video, obj)
    return video


def structure_page(value: object, _: object = None) -> VideoPage:
    """Read one page of the list endpoint; ``data`` must be there."""
    obj = _object(value, "a list page")
    data = obj.get("data")
    if not isinstance(data, list):
        raise _ShapeError("a list page has no 'data' array")
    if len(data) > MAX_PAGE_JOBS:
        raise _ShapeError(f"a list page has {len(data)} jobs; a page may have {MAX_PAGE_JOBS}")
    has_more = obj.get("has_more", False)
    if not isinstance(has_more, bool):
        raise _ShapeError(f"'has_more' should be a boolean, got {has_more!r}")
    return VideoPage(
        data=read_videos(data),
        first_id=_id_text(obj, "first_id"),
        last_id=_id_text(obj, "last_id"),
        has_more=has_more,
    )


def structure_deleted(value: object, _: object = None) -> DeletedVideo:
    obj = _object(value, "a deletion")
    deleted = obj.get("deleted", True)
    if type(deleted) is not bool:  # bool("false") is True: a string cannot say "not deleted"
        raise _ShapeError(f"'deleted' should be a boolean, got {type(deleted).__name__}")
    return DeletedVideo(
        id=_required_id(obj, "a deletion"),
        object=_text(obj, "object") or "video.deleted",
        deleted=deleted,
    )


def structure_character(value: object, _: object = None) -> Character:
    obj = _object(value, "a character")
    return Character(
        id=_id_text(obj, "id"),
        name=_text(obj, "name"),
        created_at=_timestamp(obj, "created_at"),
        raw=obj,
    )


#: The five models' readers, called directly: a cattrs dispatch per response
#: costs more than reading a small job. cattrs stays for every other type.
_READERS: dict[type[Any], Callable[[object], Any]] = {
    Video: structure_video,
    VideoPage: structure_page,
    VideoError: structure_video_error,
    DeletedVideo: structure_deleted,
    Character: structure_character,
}


def configure_converter(converter: cattrs.Converter) -> cattrs.Converter:
    """Register every model's wire reading on ``converter``."""
    for cls, reader in _READERS.items():
        converter.register_structure_hook(cls, _hook(reader))
    converter.register_structure_hook(datetime, lambda v, _: _to_datetime(v, "timestamp"))
    return converter


def _hook(reader: Callable[[object], T]) -> Callable[[object, object], T]:
    return lambda value, _: reader(value)


@functools.cache
def converter() -> cattrs.Converter:
    """The one converter, built on first use: importing cattrs is about a sixth
    of what ``import asyncvideos`` adds to ``import aiohttp``."""
    import cattrs

    return configure_converter(cattrs.Converter())


def structure(data: object, cls: type[T], *, status_code: int | None = None) -> T:
    """Read ``data`` (parsed JSON) as ``cls``, or raise ``APIResponseValidationError``."""
    try:
        reader = _READERS.get(cls)
        if reader is not None:
            result: T = reader(data)
            return result
        return converter().structure(data, cls)
    # OverflowError: ``Infinity`` or 1e300 where a number or timestamp belongs.
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise APIResponseValidationError(
            f"Unexpected response shape for {cls.__name__}: {exc}",
            # Too deep to keep: what a caller does with it (repr, dumps) would recurse.
            body=None if nested_deeper(data, MAX_BODY_DEPTH) else data,
            status_code=status_code,
        ) from exc


_NO_HEADERS: Mapping[str, str] = {}


def decode(
    body: bytes,
    cls: type[T],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] = _NO_HEADERS,
    budget: int = DEFAULT_PARSE_BUDGET,
) -> T:
    """A response's body read as ``cls``: the same as
    ``structure(decipher(status_code, headers, body), cls, status_code=status_code)``,
    result and errors alike, and faster with the ``speedups`` extra (msgspec).

    A non-2xx status raises ``decipher``'s typed error; a 2xx body whose parse
    could build more than ``budget`` bytes, ``ResponseTooLargeError`` before it
    is parsed; a 2xx body that is not JSON, ``decipher``'s
    ``APIResponseValidationError``; a shape that cannot be read, ``structure``'s.
    """
    ok = 200 <= status_code < 300
    if ok:
        check_weight(body, budget)
    fast = _speedups.current()
    if fast is None or not ok:
        data = decipher(status_code, headers, body)
    else:
        model: T | None = fast.read(body, cls)
        if model is not None:
            return model
        try:
            data = fast.loads(body)
        except Exception:
            # What msgspec refuses, json.loads may still read (NaN, a lone
            # surrogate, a byte-order mark, 1e400) or reject with our error.
            data = decipher(status_code, headers, body)
    return structure(data, cls, status_code=status_code)
