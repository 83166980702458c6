"""Faster reading of response bodies through msgspec (``asyncvideos[speedups]``).

Only speed may depend on this module: every model it returns is equal, field
by field and ``raw`` included, to what ``structure(json.loads(body), cls)``
returns, and it returns None (so the caller reads the tolerant way) wherever
it cannot vouch for that.

How a body is read when msgspec is importable:

1. ``loads``: msgspec parses it into plain dicts and lists, the same values
   ``json.loads`` gives. Where they would differ, msgspec refuses the body
   (``NaN``, ``1e400``, a lone surrogate, a byte-order mark) and the caller
   falls back to ``json.loads``. These dicts are each job's ``raw``.
2. ``read``: msgspec parses the same bytes straight into the attrs models
   (a second pass in C; cheaper than building each ``Video`` in Python), with
   ``strict=False`` so that unix-second integers become UTC datetimes.
3. A per-item check against the dicts of step 1 keeps a typed ``Video`` only
   where the tolerant reader would build the same one: every timestamp an int
   or null (not a float, a numeric or ISO string: those are converted the
   tolerant way), ``progress`` an int or null, ``object`` not empty. Anything
   msgspec cannot type at all (``seconds: 8``, an ``error`` string, a huge
   integer, a ``raw`` key that is not an object) fails step 2, and the whole
   body is read the tolerant way from the dicts.
"""

from __future__ import annotations

from typing import Any

from ._models import Video, VideoPage

__all__ = ["Speedups", "current", "load", "use"]

_set_raw = Video.__dict__["raw"].__set__
#: Extra frames ``loads`` runs msgspec under (see there).
_PAD = 6


def _same(video: Video, obj: dict[str, Any]) -> bool:
    """Whether the tolerant reader reads ``obj`` as msgspec read ``video``.

    msgspec read strings, nulls and the ``error`` object exactly as the
    tolerant reader does; the fields below are the ones it reads more loosely
    than we may (``strict=False`` converts strings to numbers and datetimes).
    """
    get = obj.get
    v = get("created_at")
    if v is not None and type(v) is not int:
        return False
    v = get("completed_at")
    if v is not None and type(v) is not int:
        return False
    v = get("expires_at")
    if v is not None and type(v) is not int:
        return False
    v = get("progress")
    if v is not None and type(v) is not int:
        return False
    # The tolerant reader reads an empty ``object`` as the default, "video".
    return video.object != ""


class Speedups:
    """msgspec's decoders for the hot models, with the checks above."""

    def __init__(self, msgspec: Any) -> None:
        self._loads = msgspec.json.Decoder().decode
        self._video = msgspec.json.Decoder(Video, strict=False).decode
        self._page = msgspec.json.Decoder(VideoPage, strict=False).decode

    def loads(self, body: bytes, _pad: int = _PAD) -> Any:
        """Parse JSON bytes into plain Python values, or raise.

        Parsed a few frames deeper than ``json.loads`` parses (it runs three
        Python frames above its C scanner): a body nested so deep that
        ``json.loads`` would hit the recursion limit makes msgspec hit it
        first, and the caller's fallback to ``json.loads`` then decides.
        """
        if _pad:
            return self.loads(body, _pad - 1)
        return self._loads(body)

    def read(self, body: bytes, data: object, cls: type[Any]) -> Any:
        """``body`` read as ``cls`` (``data`` is ``loads(body)``), or None when
        only the tolerant reader may read it."""
        if cls is Video:
            return self._read_video(body, data)
        if cls is VideoPage:
            return self._read_page(body, data)
        return None

    def _read_video(self, body: bytes, data: object) -> Video | None:
        if type(data) is not dict:
            return None
        try:
            video: Video = self._video(body)
        # Whatever msgspec refuses (a ValidationError, or a ValueError for a
        # year out of range) is the tolerant reader's to read or reject.
        except Exception:
            return None
        if not _same(video, data):
            return None
        _set_raw(video, data)
        return video

    def _read_page(self, body: bytes, data: object) -> VideoPage | None:
        if type(data) is not dict:
            return None
        items = data.get("data")
        # msgspec would read ``"has_more": "true"`` as True, and a missing
        # ``data`` as empty: the tolerant reader rejects both.
        if type(items) is not list or type(data.get("has_more", False)) is not bool:
            return None
        try:
            page: VideoPage = self._page(body)
        except Exception:
            return None
        # strict=True cannot fail here: both passes read the same bytes.
        for video, obj in zip(page.data, items, strict=True):
            if not _same(video, obj):
                return None
            _set_raw(video, obj)
        return page


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
