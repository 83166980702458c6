"""Pure protocol code: requests described, responses deciphered, headers read.

Nothing here does I/O, so every rule (which status maps to which error, what a
header means, how an id becomes a path, which redirect may be followed) is
tested without a network. ``_http.py`` is the only module that turns a
``Request`` into bytes on a socket; ``_retry.py`` owns the retry policy.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_plus

import attrs
from yarl import URL

from . import _errors as errors
from ._masking import Masker

_QUOTA_CODES = frozenset({"insufficient_quota", "quota_exceeded", "billing_hard_limit_reached"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")
#: Where a request id is found, in order: OpenAI, generic gateways, LiteLLM,
#: Azure API Management, and the upstream's id as LiteLLM forwards it.
REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "x-litellm-call-id",
    "apim-request-id",
    "llm_provider-x-request-id",
)
#: The prefix LiteLLM puts before the upstream's headers.
GATEWAY_PREFIX = "llm_provider-"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: A host a redirect may lead to, when it is not an IP address: dot-separated
#: labels of letters, digits, ``-`` and ``_`` (IDNA hosts in their ``xn--`` form).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
#: How much of a body an error message quotes, and how long a message may get.
PREVIEW_CHARS = 200
MAX_MESSAGE_CHARS = 2000
#: How deep a parsed body kept on an error may nest (an API's errors nest 2 or 3).
MAX_BODY_DEPTH = 32
#: The longest id or cursor read from a server, in characters: each is sent back
#: in a URL, and a listing remembers the recent ones. Real ids are under 100
#: characters; a gateway's encoded ids a few hundred.
MAX_ID_LENGTH = 4096
#: The most jobs a page read from a server may hold, whatever ``limit`` asked
#: for (at most 100; ``list_page`` then holds a page to its own limit): a page
#: is refused before its jobs are built.
MAX_PAGE_JOBS = 10_000


@attrs.frozen(slots=True)
class FormFile:
    """A file part of a multipart body: its bytes are read by the sender."""

    name: str
    filename: str
    content_type: str
    data: bytes


@attrs.define(slots=True)
class Request:
    """One HTTP request, ready to send: ``url`` is absolute and encoded.

    ``portable_headers`` are the only headers that may follow a redirect to
    another origin, and only when ``cross_origin_redirects`` allows one (a
    content download whose gateway hands out a signed CDN URL). ``masker``
    masks the request's credentials in every response's headers and in every
    body read as text; a ``content`` body (2xx) is handed over as it came.

    Never changed once made, though not frozen: one is made per attempt, and a
    frozen class's ``__init__`` costs several times as much per field.
    """

    method: str
    url: URL
    headers: Mapping[str, str]
    portable_headers: Mapping[str, str]
    masker: Masker
    json_body: bytes | None = None
    form_fields: Mapping[str, str] | None = None
    form_files: tuple[FormFile, ...] = ()
    cross_origin_redirects: bool = False
    content: bool = False


# -- paths -----------------------------------------------------------------


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


def resource_path(collection: str, item_id: object, name: str, suffix: str = "") -> str:
    """``/{collection}/{id}{suffix}``, the one way a path to a job or character is built."""
    return f"/{collection}/{path_segment(item_id, name)}{suffix}"


def request_url(base: URL, path: str, query: str = "") -> URL:
    """The URL of a request: ``base`` (``base_url`` parsed as encoded) with the
    encoded ``path`` after its own path, and the encoded ``query``.

    The same URL as parsing ``base_url + path + "?" + query``, built from the
    parts ``base`` already holds: parsing it again costs more than the rest of
    the request's preparation.
    """
    prefix = base.raw_path
    return URL.build(
        scheme=base.scheme,
        authority=base.raw_authority,
        path=path if prefix == "/" else prefix + path,
        query_string=query,
        encoded=True,
    )


def query_string(query: Mapping[str, str]) -> str:
    """``urlencode(query)``, with the names and values that need no escape (the
    usual ``limit=100``, ``after=video_123``) joined as they are: ``urlencode``
    quotes each one through several calls, for each page of a listing."""
    parts = []
    for name, value in query.items():
        if _UNRESERVED.fullmatch(name) and _UNRESERVED.fullmatch(value):
            parts.append(f"{name}={value}")
        else:
            parts.append(f"{quote_plus(name)}={quote_plus(value)}")
    return "&".join(parts)


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


# -- headers ---------------------------------------------------------------


def gateway_header(headers: Mapping[str, str], name: str) -> str | None:
    """A header, or the upstream's copy that LiteLLM forwards as ``llm_provider-<name>``."""
    value = headers.get(name)
    return value if value is not None else headers.get(GATEWAY_PREFIX + name)


def request_id(headers: Mapping[str, str]) -> str | None:
    """The id to give the provider's support, from the first header that has one."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def milliseconds(raw: str | None, *, maximum: float = float("inf")) -> float | None:
    """A header value in milliseconds as seconds, or None when absent, junk, negative or
    over ``maximum`` ms (so ``nan``, ``inf`` and ``1e999`` are ignored)."""
    if raw is None:
        return None
    try:
        ms = float(raw)
    except ValueError:
        return None
    return ms / 1000.0 if 0 <= ms <= maximum else None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait the server asked for, in seconds: ``retry-after-ms``, then ``retry-after``
    (each also as LiteLLM forwards the upstream's, ``llm_provider-...``).

    ``retry-after`` may be seconds or an HTTP date. Unparseable, negative or
    infinite values are ignored (None).
    """
    ms = milliseconds(gateway_header(headers, "retry-after-ms"), maximum=1e12)
    if ms is not None:
        return ms
    raw = gateway_header(headers, "retry-after")
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
        return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)
    return seconds if 0 <= seconds < 1e9 else None


def poll_after(headers: Mapping[str, str]) -> float | None:
    """The ``openai-poll-after-ms`` hint in seconds, when the server sent a sane one (<= 1 h)."""
    return milliseconds(headers.get("openai-poll-after-ms"), maximum=3_600_000)


# -- responses -------------------------------------------------------------


def decipher(status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """The JSON of a 2xx response, or the typed error a response stands for.

    The one place where a status becomes an exception and a body becomes data.
    """
    if not 200 <= status < 300:
        raise status_error(status, headers, body)
    try:
        return json.loads(body)
    # RecursionError: a hostile body nested thousands of levels deep.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        kind = headers.get("content-type", "unknown content type")
        raise errors.APIResponseValidationError(
            f"Expected a JSON body, got {len(body)} bytes of {preview(kind.encode(), 100)}",
            body=preview(body),
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
        parsed = preview(body, 500)
    if nested_deeper(parsed, MAX_BODY_DEPTH):
        parsed = preview(body, 500)  # kept as text: no caller's repr or dumps recurses it
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
        shown = parsed if isinstance(parsed, str) else preview(body) if body else ""
        message = f"HTTP {status}" + (f": {shown}" if shown else "")
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = errors.InternalServerError if status >= 500 else errors.APIStatusError
    if cls is errors.RateLimitError and _says_quota(code, kind, message):
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
        request_id=request_id(headers),
    )


def _says_quota(code: str | None, kind: str | None, message: str) -> bool:
    # A gateway may rewrite ``code`` (LiteLLM sends "429") and keep the
    # upstream's error, ``insufficient_quota`` included, inside the message.
    if code in _QUOTA_CODES or kind in _QUOTA_CODES:
        return True
    return any(quota in message for quota in _QUOTA_CODES)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else (None if value is None else str(value))


def nested_deeper(value: object, limit: int) -> bool:
    """Whether parsed JSON nests arrays and objects more than ``limit`` deep.

    A loop, not a recursion: the value may be nested as deep as the parser allowed.
    """
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def preview(body: bytes, limit: int = PREVIEW_CHARS) -> str:
    """The start of a body as text, for a message: at most ``limit`` bytes shown."""
    text = body[:limit].decode("utf-8", errors="replace").strip()
    return text + ("..." if len(body) > limit else "")


# -- redirects -------------------------------------------------------------


def origin(url: URL) -> str:
    """``scheme://host:port``: what a credential is bound to (never the path or query)."""
    return f"{url.scheme}://{url.host}:{url.port}"


def redirect_target(
    current: URL, status: int, headers: Mapping[str, str], *, cross_origin: bool
) -> tuple[URL, bool]:
    """Where a redirect leads and whether it stays on the same origin.

    Raises ``RedirectError`` for one that must not be followed: no usable
    ``Location`` (no http(s) URL, a host that is not a host name or an IP
    address, a port out of range), credentials in the URL (``user:pass@``, on
    any origin), ``https`` to ``http``, or another origin when ``cross_origin``
    is False. The error names the location's origin, never its query string,
    which may hold a signature.
    """
    target = _location(current, headers.get("location", ""))
    if target is None:
        raise _redirect_error(status, headers, "a redirect without a usable Location")
    if target.raw_user is not None or target.raw_password is not None:
        raise _redirect_error(
            status, headers, f"a redirect with credentials in its URL ({origin(target)})"
        )
    if current.scheme == "https" and target.scheme == "http":
        raise _redirect_error(
            status, headers, f"a redirect from https to plain http ({origin(target)})"
        )
    same = origin(target) == origin(current)
    if not same and not cross_origin:
        raise _redirect_error(status, headers, f"a redirect to another origin ({origin(target)})")
    return target, same


def _location(current: URL, location: str) -> URL | None:
    """The absolute URL a ``Location`` names, when a request can be sent to it.

    yarl parses lazily: a bad port, a host that IDNA cannot decode or bytes
    that are not text only fail when read, so each part is read here, once.
    """
    if not location:
        return None
    try:
        if not location.isascii():
            # Not a URI as RFC 3986 spells one: percent-encoded when it is UTF-8
            # text, refused when it is not (bytes that no text spells).
            location.encode()
            location = str(URL(location))
        target = current.join(URL(location, encoded=True))
        host, port = target.host, target.port
    except (ValueError, TypeError):  # UnicodeError is a ValueError
        return None
    raw_host = target.raw_host or ""
    if target.scheme not in ("http", "https") or not host or port is None:
        return None
    if not 0 < port < 65536 or len(raw_host) > 253:
        return None
    if not (_HOST_NAME.fullmatch(raw_host) or _is_ip(raw_host)):
        return None
    return target


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _redirect_error(status: int, headers: Mapping[str, str], what: str) -> errors.RedirectError:
    return errors.RedirectError(
        f"HTTP {status}: refused to follow {what}",
        status_code=status,
        headers=headers,
        body=None,
        request_id=request_id(headers),
    )


# -- secrets ---------------------------------------------------------------


def cap_message(error: errors.AsyncVideosError) -> errors.AsyncVideosError:
    """Cap an error's message at ``MAX_MESSAGE_CHARS``: a server may send any length.

    The key needs no masking here: what a server sent was masked as it arrived
    (``_masking``), and the messages the transport builds are masked as made.
    """
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:
        error.message = message[:MAX_MESSAGE_CHARS] + "... (cut)"
        error.args = (error.message,)
    return error
