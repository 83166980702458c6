"""A paid request, described before it is sent: what the ledger stores and compares.

``PaidRequest`` is the POST a paid call makes (path, JSON body or form fields and
one file), with the fingerprint and the ``Intent`` the ledger writes for it;
``rebuilt(entry)`` is the request again from what an entry recorded, for a
resend. ``refused`` tells a POST that certainly made nothing; ``state_of`` and
``status_change`` turn a server's job into what the ledger records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .._errors import APIConnectionError, APIStatusError
from .._models import Video
from .._protocol import FormFile
from ._store import Change, Entry, Intent, Operation, State, fingerprint

__all__ = ["PaidRequest", "rebuilt", "refused", "state_of", "status_change"]

#: 4xx statuses that do not prove the server did nothing: a timeout, a request
#: with this key still in progress (409, as careful servers answer), too early, gone.
_NOT_REFUSALS = frozenset({408, 409, 425, 499})


def refused(error: BaseException) -> bool:
    """Whether a failed POST certainly made no job."""
    if isinstance(error, APIConnectionError):
        return not error.request_sent
    if isinstance(error, APIStatusError):
        return 400 <= error.status_code < 500 and error.status_code not in _NOT_REFUSALS
    return False


def state_of(video: Video) -> State:
    """The ledger state a server's job is in."""
    if video.is_completed:
        return "completed"
    if video.is_failed:
        return "failed"
    return "created"


def status_change(video: Video) -> Change:
    error = video.error
    return Change(
        state=state_of(video),
        status=video.status,
        expires_at=video.expires_at,
        error_code=None if error is None else error.code,
        error_message=None if error is None else error.message,
    )


@attrs.frozen(slots=True)
class PaidRequest:
    """One paid POST, described before it is sent: path and body (JSON, or form
    fields and one file part, read already). ``file_path`` is where the file
    came from, when it was given as a path (so a resend can read it again)."""

    operation: Operation
    path: str
    json: Mapping[str, Any] | None = None
    form: Mapping[str, str] | None = None
    file: FormFile | None = None
    file_path: str | None = None
    source_video_id: str | None = None
    _sha256: str | None = attrs.field(default=None, alias="sha256")
    #: What is computed once: the fingerprint (a request is sent, and reconciled, as is).
    _cache: dict[str, object] = attrs.field(factory=dict, eq=False, repr=False, init=False)

    @property
    def body(self) -> Mapping[str, Any]:
        return self.json if self.json is not None else (self.form or {})

    def file_sha256(self) -> str | None:
        if self.file is None:
            return None
        return self._sha256 or hashlib.sha256(self.file.data).hexdigest()

    def described(self) -> dict[str, Any]:
        """``Intent.request``: what was sent, the file as its name, type and SHA-256."""
        if self.file is None:
            return {"path": self.path, "json": dict(self.body)}
        file = self.file
        return {
            "path": self.path,
            "form": dict(self.body),
            "file": {
                "part": file.name,
                "filename": file.filename,
                "content_type": file.content_type,
                "sha256": self.file_sha256(),
                "path": self.file_path,
            },
        }

    def fingerprint(self) -> str:
        found = self._cache.get("fingerprint")
        if found is None:
            described = self.described()
            if self.file is not None:
                described["file"] = {"sha256": self.file_sha256()}
            found = self._cache["fingerprint"] = fingerprint(self.operation, described)
        return str(found)

    def intent(self, key: str) -> Intent:
        body = self.body

        def field(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) else None

        return Intent(
            key=key,
            operation=self.operation,
            fingerprint=self.fingerprint(),
            prompt=str(body.get("prompt", "")),
            request=self.described(),
            model=field("model"),
            size=field("size"),
            seconds=field("seconds"),
            source_video_id=self.source_video_id,
        )


def rebuilt(entry: Entry) -> PaidRequest | None:
    """The request an entry recorded, to send again; None when it cannot be (a
    file that was not given as a path, or that changed since)."""
    request = entry.request
    path = request.get("path")
    if not isinstance(path, str):
        return None
    if "file" not in request:
        body = request.get("json")
        if not isinstance(body, Mapping):
            return None
        return PaidRequest(entry.operation, path, json=body, source_video_id=entry.source_video_id)
    file = request["file"]
    form = request.get("form")
    if not isinstance(file, Mapping) or not isinstance(form, Mapping):
        return None
    where = file.get("path")
    if not isinstance(where, str):
        return None
    try:
        data = Path(where).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != file.get("sha256"):
        return None
    part = FormFile(str(file["part"]), str(file["filename"]), str(file["content_type"]), data)
    return PaidRequest(
        entry.operation,
        path,
        form=form,
        file=part,
        file_path=where,
        source_video_id=entry.source_video_id,
    )
