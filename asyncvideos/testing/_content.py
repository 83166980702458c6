"""Deterministic media bytes for the content endpoint, and HTTP Range handling.

The bytes of ``(video_id, variant)`` are a small format-looking header followed by a
64 KiB block derived from a hash of the pair, repeated and cut to the configured size.
Any slice can be produced without building the whole asset, so a 64 MiB download is
streamed chunk by chunk and a resumed download (``Range: bytes=N-``) is cheap.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping

import attrs

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_CONTENT_SIZES",
    "VARIANTS",
    "ContentSource",
    "RangeResult",
    "parse_range",
]

VARIANTS = ("video", "thumbnail", "spritesheet")

CONTENT_TYPES: Mapping[str, str] = {
    "video": "video/mp4",
    "thumbnail": "image/webp",
    "spritesheet": "image/jpeg",
}

DEFAULT_CONTENT_SIZES: Mapping[str, int] = {
    "video": 256 * 1024,
    "thumbnail": 8 * 1024,
    "spritesheet": 32 * 1024,
}

_BLOCK_SIZE = 64 * 1024
CHUNK_SIZE = 64 * 1024

# Just enough of each format's magic for tools that sniff the first bytes (`file`,
# browsers) to recognise the type; the rest is noise, never a playable file.
_HEADERS: Mapping[str, bytes] = {
    "video": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",
    "thumbnail": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    "spritesheet": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
}


@attrs.frozen
class ContentSource:
    """The bytes of one asset, addressable by offset without materialising them."""

    video_id: str
    variant: str
    size: int
    _header: bytes = attrs.field(init=False)
    _block: bytes = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        seed = f"{self.video_id}\x00{self.variant}".encode()
        # shake_256 gives any length from one hash call: a 64 KiB block costs microseconds.
        block = hashlib.shake_256(seed).digest(_BLOCK_SIZE)
        object.__setattr__(self, "_header", _HEADERS.get(self.variant, b""))
        object.__setattr__(self, "_block", block)

    @property
    def etag(self) -> str:
        """A strong validator for this exact asset (quoted, as sent in ``ETag``)."""
        seed = f"{self.video_id}\x00{self.variant}\x00{self.size}".encode()
        return '"' + hashlib.sha256(seed).hexdigest()[:32] + '"'

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` (end defaults to the size) in chunks."""
        stop = self.size if end is None else min(end, self.size)
        pos = max(0, start)
        header = self._header[: self.size]
        while pos < stop:
            if pos < len(header):
                piece = header[pos : min(stop, len(header))]
            else:
                offset = (pos - len(header)) % _BLOCK_SIZE
                piece = self._block[offset : offset + min(stop - pos, CHUNK_SIZE)]
            yield piece
            pos += len(piece)

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Return the bytes ``[start, end)`` as one ``bytes`` object."""
        return b"".join(self.chunks(start, end))


@attrs.frozen
class RangeResult:
    """What a ``Range`` header asks for, resolved against a known size.

    ``satisfiable`` is False for a 416; ``start``/``end`` are a half-open byte interval.
    """

    start: int
    end: int
    satisfiable: bool = True


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> RangeResult | None:
    """Resolve a ``Range`` header against ``size``; None means "serve the whole asset".

    Single ranges only (``N-``, ``N-M``, ``-S``). Multiple ranges and syntactically
    invalid headers are ignored, which RFC 9110 allows and which real CDNs often do.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        # Suffix range: the last S bytes.
        suffix = int(last)
        if suffix == 0:
            return RangeResult(0, 0, satisfiable=False)
        return RangeResult(max(0, size - suffix), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # "bytes=5-2" is invalid syntax: ignore the header
    if start >= size:
        return RangeResult(start, start, satisfiable=False)
    return RangeResult(start, min(end, size))
