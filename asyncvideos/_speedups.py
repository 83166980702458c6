"""Faster reading of response bodies through msgspec (``asyncvideos[speedups]``).

Only speed may depend on this module: every model it returns is equal, field
by field and ``raw`` included, to what ``structure(json.loads(body), cls)``
returns, and it returns None (so the caller reads the tolerant way) wherever
it cannot vouch for that.

A job or a page is parsed once, into the models, never into dicts:

1. msgspec reads the bytes straight into the attrs models, in C, with strict
   types: every timestamp and ``progress`` must be an int or null (a
   timestamp's int within the years a datetime holds; it stays unix seconds
   in its slot until it is read, see ``Video``'s timestamps), ``has_more``,
   ``first_id`` and ``last_id`` their exact types. A page is also read as its
   items' bytes (``msgspec.Raw``, a pass that builds nothing else), and each
   job keeps its own bytes as ``raw``, which becomes the dict ``json.loads``
   would give on first use (``Video.raw``). An ``object`` that is empty, an id
   or cursor longer than the tolerant reader allows, or a page of more jobs
   than it allows (counted before any job is built), is the tolerant reader's
   to refuse.
2. Anything else (a float or a numeric or ISO string for a timestamp,
   ``seconds: 8``, an ``error`` string, a huge integer), or what msgspec
   refuses as JSON where ``json.loads`` reads it (``NaN``, a lone surrogate,
   a byte-order mark), fails, and the whole body is read the tolerant way.
   msgspec skips the fields it does not type without decoding their text, so
   a body that is not ASCII is checked to be UTF-8 (as ``json.loads`` would
   decode it) before its models are returned.

The decoders run a few frames deeper than ``json.loads`` would: a body nested
so deep that ``json.loads`` would hit the recursion limit makes msgspec hit it
first, and the tolerant reader then decides. A ``raw`` read deeper in the
stack than its job was read is parsed on a fresh stack if it must be.
"""

from __future__ import annotations

import codecs
import json
import threading
from typing import Annotated, Any

from ._models import MAX_UNIX, MIN_UNIX, UNREAD_RAW, Video, VideoPage
from ._protocol import MAX_ID_LENGTH, MAX_PAGE_JOBS

__all__ = ["Speedups", "current", "load", "use"]

_RAW_SLOT = Video.__dict__["raw"].slot
_set_raw = _RAW_SLOT.__set__
_set_class = object.__dict__["__class__"].__set__
#: Extra frames ``read`` and ``loads`` run msgspec under (see the docstring).
_PAD = 6
#: Bytes of a body checked for UTF-8 at a time: the decoded text is thrown away.
_UTF8_PIECE = 1 << 20


def _shapes(msgspec: Any) -> tuple[Any, ...]:
    """What msgspec reads into: a job, a page of jobs, and a page as its items'
    bytes.

    Made at run time, from types rather than annotations (which this module's
    ``from __future__ import annotations`` would leave as strings), since
    msgspec is imported on first use.
    """
    an_id = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
    # The tolerant reader reads an empty ``object`` as the default, "video".
    an_object = Annotated[str, msgspec.Meta(min_length=1)]
    unix = Annotated[int, msgspec.Meta(ge=MIN_UNIX, le=MAX_UNIX)] | None
    decoded = type(
        "_Decoded",
        (Video,),
        {
            "__slots__": (),
            "__module__": __name__,
            "__doc__": _DECODED_DOC,
            "__annotations__": {"id": an_id, "object": an_object}
            | dict.fromkeys(_TIMESTAMPS, unix),
            # Present to msgspec's check of every field once a job is read (see
            # _DECODED_DOC); the slot itself is set through Video's descriptor.
            "raw": _NOT_READ,
        }
        # The timestamps' bare slots: msgspec stores and checks the unix seconds.
        | {name: Video.__dict__[name].slot for name in _TIMESTAMPS},
    )
    # gc=False: these hold no cycles, and untracked structs are cheaper to make.
    # Types made at run time, which mypy cannot follow.
    jobs = tuple[decoded, ...]  # type: ignore[valid-type]
    decoded_page = msgspec.defstruct("DecodedPage", [("data", jobs)], gc=False)
    raw_page = msgspec.defstruct(
        "RawPage",
        [
            ("data", list[msgspec.Raw]),
            ("has_more", bool, False),
            ("first_id", an_id | None, None),
            ("last_id", an_id | None, None),
        ],
        gc=False,
    )
    return decoded, decoded_page, raw_page


_TIMESTAMPS = ("created_at", "completed_at", "expires_at")
_DECODED_DOC = """What msgspec decodes a job into: a ``Video`` with ``raw`` left unset.

msgspec checks every field with ``hasattr`` once a job is decoded: on ``raw``,
through ``Video.raw``'s descriptor or on its bare slot still empty, that would
raise an AttributeError per job, so ``raw`` is a plain class attribute here;
the timestamps are their bare slots, so that neither msgspec's check nor its
store makes a datetime. Each job becomes a ``Video`` (the same slots:
``__class__`` may be assigned) once checked, with ``raw`` set in its slot.
"""
_NOT_READ: Any = object()


def _utf8(body: bytes) -> bool:
    """Whether ``json.loads`` can decode ``body`` (UTF-8, lone surrogates allowed)."""
    if body.isascii():
        return True
    decode = codecs.getincrementaldecoder("utf-8")("surrogatepass").decode
    view = memoryview(body)
    try:
        for start in range(0, len(view), _UTF8_PIECE):
            decode(view[start : start + _UTF8_PIECE])
        decode(b"", True)
    except UnicodeDecodeError:
        return False
    return True


class Speedups:
    """msgspec's decoders for the hot models, with the checks above."""

    def __init__(self, msgspec: Any) -> None:
        decoder = msgspec.json.Decoder
        decoded, decoded_page, raw_page = _shapes(msgspec)
        self._loads = decoder().decode
        self._video = decoder(decoded).decode
        self._page = decoder(decoded_page).decode
        self._raw_page = decoder(raw_page).decode
        self._raw = msgspec.Raw
        UNREAD_RAW[msgspec.Raw] = self.raw_dict

    def loads(self, body: bytes, _pad: int = _PAD) -> Any:
        """Parse JSON bytes into plain Python values, or raise (a few frames deep)."""
        if _pad:
            return self.loads(body, _pad - 1)
        return self._loads(body)

    def read(self, body: bytes, cls: type[Any], _pad: int = _PAD) -> Any:
        """``body`` read as ``cls``, or None when only the tolerant reader may read it."""
        if _pad:
            return self.read(body, cls, _pad - 1)
        # Whatever msgspec refuses (a DecodeError, a ValidationError, a ValueError
        # for a year out of range, a RecursionError) is the tolerant reader's.
        if cls is Video:
            try:
                video: Video = self._video(body)
            except Exception:
                return None
            if not _utf8(body):
                return None
            _set_raw(video, self._raw(body))
            _set_class(video, Video)
            return video
        if cls is VideoPage:
            try:
                items = self._raw_page(body)
                if len(items.data) > MAX_PAGE_JOBS:
                    return None
                jobs: tuple[Video, ...] = self._page(body).data
            except Exception:
                return None
            if not _utf8(body):
                return None
            # strict=True cannot fail here: both passes read the same bytes.
            for video, raw in zip(jobs, items.data, strict=True):
                # A copy: a job kept from a page does not keep the whole page's bytes.
                _set_raw(video, raw.copy())
                _set_class(video, Video)
            # The page's own fields as the strict pass read them.
            return VideoPage(jobs, items.first_id, items.last_id, items.has_more)
        return None

    def raw_dict(self, raw: Any) -> Any:
        """The dict ``json.loads`` gives for a job's bytes (``Video.raw`` on first use)."""
        try:
            return self._loads(raw)
        # 1e400, or surrogates encoded in UTF-8: msgspec refuses what json.loads
        # reads (the body was checked to be JSON that json.loads reads).
        except Exception:
            text = bytes(raw)
        try:
            return json.loads(text)
        except RecursionError:
            return _on_a_fresh_stack(json.loads, text)


def _on_a_fresh_stack(parse: Any, text: bytes) -> Any:
    """``parse(text)`` in a new thread: ``raw`` read far deeper in the stack than
    its job was read may not have the recursion depth that reading needed."""
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(parse(text)))
    thread.start()
    thread.join()
    return done[0]


#: msgspec before 0.19 misread some integers above 64 bits (and before
#: 0.18.5 could not decode frozen slotted attrs classes): older ones are unused.
MIN_MSGSPEC = (0, 19)


def load() -> Speedups | None:
    """The decoders, or None when msgspec is not installed (or too old)."""
    try:
        import msgspec
    except ImportError:
        return None
    if _version(getattr(msgspec, "__version__", "")) < MIN_MSGSPEC:
        return None
    return Speedups(msgspec)


def _version(text: str) -> tuple[int, ...]:
    """``"0.19.0"`` as ``(0, 19, 0)``; what cannot be read counts as too old."""
    parts = []
    for part in text.split(".")[:2]:
        if not part.isdigit():
            return ()
        parts.append(int(part))
    return tuple(parts)


_UNSET: Any = object()
_current: Speedups | None = _UNSET


def current() -> Speedups | None:
    """The decoders in use: loaded on first use (msgspec is not imported with
    the package), or as ``use()`` set them."""
    global _current
    if _current is _UNSET:
        _current = load()
    return _current


def use(enabled: bool) -> None:
    """Read with msgspec (when installed) or without it, from now on in this
    process: for tests and benchmarks that compare the two paths."""
    global _current
    _current = load() if enabled else None
