"""Files given to create/edit/extend/create_character, turned into multipart parts.

A file may be a path, raw bytes, or a binary file object. It is read once,
before the first attempt, so that a retry sends the very same bytes.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, TypeAlias, Union

from . import _validate as check
from ._protocol import FormFile

FileInput: TypeAlias = Union[str, "os.PathLike[str]", bytes, bytearray, IO[bytes]]
"""A file to upload: a path (str or ``pathlib.Path``), its bytes, or a binary file
object opened for reading. Sent as multipart/form-data with the file's name and a
content type guessed from the name or the first bytes. Where a job id is also
accepted (``edit``, ``extend``), a str is the id: pass a ``Path`` for a file."""

# Magic numbers of the formats the API takes, for bytes that come without a name.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF8", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (4, b"ftypqt", "video/quicktime"),
    (4, b"ftyp", "video/mp4"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
)
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
}


def sniff(data: bytes) -> str | None:
    for offset, magic, content_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return content_type
    return None


def content_type_for(filename: str, data: bytes) -> str:
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or sniff(data) or "application/octet-stream"


def check_file_input(value: object, name: str, *, paths_as_str: bool = True) -> None:
    """Reject what cannot be uploaded, before any I/O."""
    if (isinstance(value, str) and paths_as_str) or isinstance(value, os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"{name}: no such file: {str(path)!r}")
        return
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise ValueError(f"{name} must not be empty bytes")
        return
    if callable(getattr(value, "read", None)):
        if getattr(value, "closed", False):
            raise ValueError(f"{name}: the file object is closed")
        mode = getattr(value, "mode", "b")
        if isinstance(mode, str) and "b" not in mode:
            raise TypeError(f"{name} must be opened in binary mode ('rb')")
        return
    raise TypeError(
        f"{name} must be a path, bytes or a binary file object, got {type(value).__name__}"
    )


async def read_file(value: Any, name: str, *, part: str) -> FormFile:
    """Read an upload (already checked) into a multipart file part named ``part``."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        data = await asyncio.to_thread(path.read_bytes)
        filename = path.name
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        filename = ""
    else:
        data = await asyncio.to_thread(value.read)  # a real file may block
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{name} must be opened in binary mode ('rb')")
        data = bytes(data)
        filename = os.path.basename(str(getattr(value, "name", "") or ""))
    if not data:
        raise ValueError(f"{name} is empty")
    if not filename:
        filename = part + _EXTENSIONS.get(sniff(data) or "", "")
    return FormFile(part, filename, content_type_for(filename, data), data)


def check_reference_mapping(value: Mapping[str, Any], name: str) -> dict[str, str]:
    """``{"image_url": ...}`` or ``{"file_id": ...}``: exactly one, as a str."""
    keys = set(value)
    if keys - {"image_url", "file_id"}:
        raise ValueError(f"{name} may only have 'image_url' or 'file_id', got {sorted(keys)}")
    if len(keys) != 1:
        raise ValueError(f"{name} needs exactly one of 'image_url' or 'file_id'")
    (key,) = keys
    item = value[key]
    if not isinstance(item, str) or not item.strip():
        raise ValueError(f"{name}[{key!r}] must be a non-empty str")
    return {key: item}


def creation_fields(
    prompt: object, model: object, seconds: object, size: object, input_reference: object
) -> tuple[dict[str, Any], object]:
    """Check ``create()``'s arguments; return the fields to send and the file to upload."""
    fields: dict[str, Any] = {"prompt": check.prompt(prompt)}
    if model is not None:
        fields["model"] = check.model(model)
    if seconds is not None:
        fields["seconds"] = check.seconds(seconds, model)
    if size is not None:
        fields["size"] = check.size(size)
    upload = None
    if isinstance(input_reference, Mapping):
        fields["input_reference"] = check_reference_mapping(input_reference, "input_reference")
    elif input_reference is not None:
        check_file_input(input_reference, "input_reference")
        upload = input_reference
    return fields, upload
