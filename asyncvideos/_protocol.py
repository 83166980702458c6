"""Pure protocol code: requests described, responses deciphered, waits parsed.

Nothing here does I/O, so every rule (which status maps to which error, what
``Retry-After`` means, how an id becomes a path segment) is tested without a
network. ``_http.py`` is the only module that turns a ``Request`` into bytes
on a socket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import attrs

from . import _errors as errors

#: Longest server-requested wait that is honoured by sleeping; beyond it the
#: error is raised at once with ``retry_after`` set, so the caller decides.
MAX_RETRY_AFTER = 60.0
_QUOTA_CODES = frozenset({"insufficient_quota", "quota_exceeded", "billing_hard_limit_reached"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")


@attrs.frozen(slots=True)
class FormFile:
    """A file part of a multipart body: its bytes are read by the sender."""

    name: str
    filename: str
    content_type: str
    data: bytes


@attrs.frozen(slots=True)
class Request:
    """One HTTP request, ready to send: ``path`` is already percent-encoded."""

    method: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    json_body: bytes | None = None
    form_fields: Mapping[str, str] | None = None
    form_files: tuple[FormFile, ...] = ()


def path_segment(value: object, name: str) -> str:
    """Check an id and percent-encode it into exactly one path segment.

    Everything but unreserved characters is encoded (``/`` becomes ``%2F``),
    and ``.``/``..`` are refused, so no id can reach another route.
    """
    if type(value) is str and _UNRESERVED.fullmatch(value) and value not in (".", ".."):
        return value  # the common case (``video_123``): nothing to check or encode
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty or whitespace")
    if value in (".", ".."):
        raise ValueError(f"{name} must not be {value!r}")
    if _CONTROL_CHARS.search(value):
        raise ValueError(f"{name} must not contain control characters")
    try:
        return quote(value, safe="")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form to send
        raise ValueError(f"{name} must be valid Unicode text (no lone surrogates)") from None


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait the server asked for, in seconds: ``retry-after-ms``, then ``retry-after``.

    ``retry-after`` may be seconds or an HTTP date. Unparseable or negative
    values are ignored (None).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            pass
        else:
            if ms >= 0:
                return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry: true|false`` overrides the status rule; None when absent."""
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def decode_json(status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """Parse a 2xx body as JSON or raise ``APIResponseValidationError``."""
    try:
        return json.loads(body)
    # RecursionError: a hostile body nested thousands of levels deep.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        kind = headers.get("content-type", "unknown content type")
        raise errors.APIResponseValidationError(
            f"Expected a JSON body, got {len(body)} bytes of {kind}",
            body=_preview(body),
            status_code=status,
        ) from exc


_STATUS_ERRORS: dict[int, type[errors.APIStatusError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    422: errors.UnprocessableEntityError,
    429: errors.RateLimitError,
}


def status_error(status: int, headers: Mapping[str, str], body: bytes) -> errors.APIStatusError:
    """Build the typed error for a non-2xx response, whatever its body looks like."""
    parsed: object
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = _preview(body)
    detail = parsed.get("error") if isinstance(parsed, dict) else None
    message = code = param = kind = None
    if isinstance(detail, dict):
        message = _str_or_none(detail.get("message"))
        code = _str_or_none(detail.get("code"))
        param = _str_or_none(detail.get("param"))
        kind = _str_or_none(detail.get("type"))
    elif isinstance(detail, str):
        message = detail
    elif isinstance(parsed, dict):
        message = _str_or_none(parsed.get("message"))
    if not message:
        # Not OpenAI-shaped (a gateway's HTML page, {"detail": ...}): show a preview.
        shown = parsed if isinstance(parsed, str) else _preview(body, 200) if body else ""
        message = f"HTTP {status}" + (f": {shown}" if shown else "")
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = errors.InternalServerError if status >= 500 else errors.APIStatusError
    if cls is errors.RateLimitError and (code in _QUOTA_CODES or kind in _QUOTA_CODES):
        cls = errors.QuotaExceededError
    return cls(
        message,
        status_code=status,
        headers=headers,
        body=parsed,
        code=code,
        param=param,
        type=kind,
        retry_after=parse_retry_after(headers),
    )


def mask_secret(secret: str) -> str:
    """Show enough of a key to recognise it, never enough to use it: ``sk-...xy``."""
    if len(secret) <= 8:
        return "***"
    return f"{secret[:3]}...{secret[-2:]}"


def redact(error: errors.APIStatusError, secret: str) -> errors.APIStatusError:
    """Mask ``secret`` wherever a server echoed it in an error's message or body.

    OpenAI masks keys in its messages itself; a gateway may not ("Invalid key
    sk-...") and the key must never reach a log line through an exception.
    """
    masked = mask_secret(secret)
    if secret in error.message:
        error.message = error.message.replace(secret, masked)
        error.args = (error.message,)
    error.body = _redact_value(error.body, secret, masked)
    return error


def _redact_value(value: object, secret: str, masked: str) -> object:
    if isinstance(value, str):
        return value.replace(secret, masked) if secret in value else value
    if isinstance(value, dict):
        return {key: _redact_value(item, secret, masked) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_value(item, secret, masked) for item in value]
    return value


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else (None if value is None else str(value))


def _preview(body: bytes, limit: int = 500) -> str:
    text = body[:limit].decode("utf-8", errors="replace").strip()
    return text + ("..." if len(body) > limit else "")


def status_is_retryable(status: int) -> bool:
    """The status rule for requests that are safe to repeat (GET, DELETE)."""
    return status in (408, 409, 429) or status >= 500


def poll_after(headers: Mapping[str, str]) -> float | None:
    """The ``openai-poll-after-ms`` hint in seconds, when the server sent a sane one."""
    raw = headers.get("openai-poll-after-ms")
    if raw is None:
        return None
    try:
        ms = float(raw)
    except ValueError:
        return None
    return ms / 1000.0 if 0 <= ms <= 3_600_000 else None
