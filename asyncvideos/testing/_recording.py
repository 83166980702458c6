"""What the fake saw: one :class:`RecordedRequest` per request that reached it.

The record is built once, from the raw bytes, before faults or routing, and the routes
read the request from it, so a test sees exactly what the endpoint saw.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

import attrs
from aiohttp import web

from asyncvideos._masking import mask_secret as _mask

__all__ = ["RecordedRequest", "decode_path", "mask_secret", "record"]

_SECRET_HEADERS = frozenset({"authorization", "api-key"})


def mask_secret(value: str) -> str:
    """Hide a credential as the client does (``sk-...xy``); ``Bearer <token>`` keeps
    its scheme and masks the token."""
    scheme, sep, token = value.partition(" ")
    if sep and scheme.lower() == "bearer":
        return f"{scheme} {_mask(token.strip())}"
    return _mask(value)


def decode_path(raw_path: str) -> str:
    """Percent-decode each segment of a raw path exactly once ("a%2Fb" stays one segment)."""
    return "/".join(unquote(segment) for segment in raw_path.split("/"))


@attrs.frozen(repr=False)
class RecordedRequest:
    """A request as the fake received it.

    ``path`` is the decoded path (``/v1/videos/a b``); ``raw_path`` is the path as sent,
    percent-encoded, without the query string. ``query`` keeps the last value of each
    name, ``query_items`` all of them in order. ``headers`` has lower-cased names (repeated
    headers joined with ", "). ``json`` is the parsed body of a JSON request, ``form`` the
    fields of a multipart one: a str per text field, and for file parts a dict with
    ``filename``, ``content_type`` and ``size``. ``received_at`` is ``time.monotonic()``
    when the request arrived (the event loop's clock), for checking a client's pacing.
    """

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    query_items: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, Any] | None = None
    received_at: float = attrs.field(default=0.0, eq=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return a header's value by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    def __repr__(self) -> str:
        headers = {
            name: mask_secret(value) if name in _SECRET_HEADERS else value
            for name, value in self.headers.items()
        }
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"raw_path={self.raw_path!r}, query={self.query!r}, headers={headers!r}, "
            f"body={body!r}, json={self.json!r}, form={self.form!r})"
        )


async def record(request: web.Request) -> RecordedRequest:
    """Read the whole request and describe it."""
    received_at = time.monotonic()
    body = await request.read()
    raw_path, _, raw_query = request.raw_path.partition("?")
    query_items = parse_qsl(raw_query, keep_blank_values=True)
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    content_type = headers.get("content-type", "").lower()
    parsed_json: Any = None
    form: dict[str, Any] | None = None
    if "json" in content_type and body:
        try:
            parsed_json = json.loads(body)
        except ValueError:
            parsed_json = None
    elif content_type.startswith("multipart/form-data"):
        form = parse_multipart(headers["content-type"], body)
    return RecordedRequest(
        method=request.method.upper(),
        path=decode_path(raw_path),
        raw_path=raw_path,
        query=dict(query_items),
        query_items=query_items,
        headers=headers,
        body=body,
        json=parsed_json,
        form=form,
        received_at=received_at,
    )


def parse_multipart(content_type: str, body: bytes) -> dict[str, Any] | None:
    """Parse a multipart/form-data body into fields; None if it is not valid multipart."""
    # The stdlib MIME parser copes with every multipart aiohttp, requests or curl send.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            fields[name] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(data),
            }
        else:
            charset = part.get_content_charset() or "utf-8"
            fields[name] = data.decode(charset, errors="replace")
    return fields
