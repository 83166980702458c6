"""The typed floor's models: msgspec Structs with the same fields as ``Video``.

No ``from __future__ import annotations`` here: msgspec reads these
annotations at run time. Imported only where msgspec is installed.
"""

import datetime
from typing import Optional

import msgspec


class Error(msgspec.Struct):
    code: Optional[str] = None  # noqa: UP045 - evaluated on Python 3.10 too
    message: Optional[str] = None  # noqa: UP045


class Job(msgspec.Struct):
    id: str
    object: str = "video"
    model: Optional[str] = None  # noqa: UP045
    status: Optional[str] = None  # noqa: UP045
    progress: Optional[int] = None  # noqa: UP045
    created_at: Optional[datetime.datetime] = None  # noqa: UP045
    completed_at: Optional[datetime.datetime] = None  # noqa: UP045
    expires_at: Optional[datetime.datetime] = None  # noqa: UP045
    prompt: Optional[str] = None  # noqa: UP045
    size: Optional[str] = None  # noqa: UP045
    seconds: Optional[str] = None  # noqa: UP045
    remixed_from_video_id: Optional[str] = None  # noqa: UP045
    error: Optional[Error] = None  # noqa: UP045


class Page(msgspec.Struct):
    data: list[Job]
    first_id: Optional[str] = None  # noqa: UP045
    last_id: Optional[str] = None  # noqa: UP045
    has_more: bool = False


#: Bytes to typed jobs and pages; ``strict=False`` reads unix seconds as UTC datetimes.
decode_job = msgspec.json.Decoder(Job, strict=False).decode
decode_page = msgspec.json.Decoder(Page, strict=False).decode
