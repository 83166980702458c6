"""Pure reading of the headers that say which bytes of a content body came.

One function per header, no I/O: ``Content-Range`` (which bytes a 206 holds,
RFC 9110 section 14.4), ``Accept-Ranges`` (whether a resume can be asked for),
``Content-Length``, and the validator to send back in ``If-Range`` so that a
resumed body is the same version of the content as the bytes already held.
Whatever a server sends, each returns a value or None, never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

# 19 digits bound every number below 2**63: no huge ints from a hostile header.
_CONTENT_RANGE = re.compile(r"bytes[ \t]+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)", re.IGNORECASE)
_LENGTH = re.compile(r"\d{1,19}")
# A strong entity tag (RFC 9110 section 8.8.3): quoted visible characters, no W/ prefix.
_STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e]*"')
# An HTTP date is about 29 characters of printable ASCII; anything else is not sent back.
_DATE = re.compile(r"[\x20-\x7e]{1,64}")


@attrs.frozen(slots=True)
class ContentRange:
    """The bytes ``[start, stop)`` of a body of ``total`` bytes (None: not said)."""

    start: int
    stop: int
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """``Content-Range: bytes FIRST-LAST/TOTAL`` read, or None when it is absent,
    malformed, unsatisfied (``bytes */N``) or inconsistent (LAST before FIRST,
    or past TOTAL)."""
    if not value:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (total is not None and last >= total):
        return None
    return ContentRange(first, last + 1, total)


def accepts_byte_ranges(value: str | None) -> bool:
    """Whether ``Accept-Ranges`` lists the ``bytes`` unit."""
    if not value:
        return False
    return any(unit.strip().lower() == "bytes" for unit in value.split(","))


def content_length(value: str | None) -> int | None:
    """``Content-Length`` as an int, or None when absent or not a plain number."""
    if value is None or _LENGTH.fullmatch(value.strip()) is None:
        return None
    return int(value)


def if_range_validator(headers: Mapping[str, str]) -> str | None:
    """What to send in ``If-Range`` when resuming this response's body.

    The strong ``ETag`` when there is one, else ``Last-Modified``; None when the
    response has neither (a weak ETag cannot be used, RFC 9110 section 13.1.5).
    A value with characters that do not belong in a header is never sent back.
    """
    etag = (headers.get("ETag") or "").strip()
    if _STRONG_ETAG.fullmatch(etag):
        return etag
    modified = (headers.get("Last-Modified") or "").strip()
    if _DATE.fullmatch(modified):
        return modified
    return None
