"""Client settings and where each comes from: arguments first, then environment.

Everything here is checked once, at construction, so that a bad setting fails
before any request with an error that names it.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import attrs

from ._protocol import mask_secret
from ._version import __version__

logger = logging.getLogger("asyncvideos")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MAX_RETRIES = 2
MAX_RETRIES_LIMIT = 100
#: 600 s for a whole attempt, 5 s to open a socket. ``sock_connect`` rather
#: than ``connect`` so that time spent queued for a free pooled connection
#: (hundreds of pollers, one bounded pool) does not count as a connect timeout.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=600.0, sock_connect=5.0)
USER_AGENT = f"asyncvideos/{__version__} (aiohttp/{aiohttp.__version__})"

ApiKey = str | Callable[[], str] | Callable[[], Awaitable[str]]
TimeoutSetting = float | int | aiohttp.ClientTimeout | None
AuthScheme = Literal["bearer", "api-key"]
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class NotGiven(Enum):
    """Type of ``NOT_GIVEN``: "use the client's setting", so None can mean "no limit"."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN = NotGiven.NOT_GIVEN


def check_max_retries(value: object, name: str = "max_retries") -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_RETRIES_LIMIT:
        raise ValueError(f"{name} must be between 0 and {MAX_RETRIES_LIMIT}, got {value}")
    return value


def check_timeout(value: object, name: str = "timeout") -> aiohttp.ClientTimeout:
    """Turn a timeout setting into the per-attempt ``ClientTimeout``."""
    if value is None:
        return aiohttp.ClientTimeout(total=None, sock_connect=None)
    if isinstance(value, aiohttp.ClientTimeout):
        for field in ("total", "connect", "sock_read", "sock_connect"):
            limit = getattr(value, field)
            if limit is not None and not 0 < limit < math.inf:
                raise ValueError(f"{name}.{field} must be positive and finite, got {limit}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be seconds (a number), an aiohttp.ClientTimeout or None, "
            f"got {type(value).__name__}"
        )
    if not 0 < value < math.inf:  # also rejects NaN; None, not inf, means "no limit"
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value}")
    return aiohttp.ClientTimeout(total=float(value), sock_connect=min(5.0, float(value)))


def check_base_url(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"base_url must be a str, got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not carry a query or fragment, got {value!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        logger.warning(
            "base_url %s uses plain http to a host other than loopback: "
            "the API key travels unencrypted",
            value,
        )
    return value.strip().rstrip("/")


def check_str_mapping(value: object, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{name} must map str to str, got {key!r}: {type(item).__name__}")
    return dict(value)


# RFC 9110 token characters for a header name; a value may not hold CR, LF or NUL.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")


def check_headers(value: object, name: str) -> dict[str, str]:
    """A str-to-str mapping that is safe to send as headers (no header injection)."""
    headers = check_str_mapping(value, name)
    for key, item in headers.items():
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"{name} has an invalid header name: {key!r}")
        if _HEADER_VALUE_FORBIDDEN.search(item):
            raise ValueError(f"{name}[{key!r}] must not contain CR, LF or NUL")
    return headers


def _first_env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _optional_str(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    return value or None


@attrs.frozen(slots=True, repr=False)
class Settings:
    """Resolved client settings. Its repr masks the key."""

    api_key: ApiKey
    base_url: str
    organization: str | None
    project: str | None
    timeout: aiohttp.ClientTimeout
    max_retries: int
    default_headers: dict[str, str]
    default_query: dict[str, str]
    auth_scheme: AuthScheme

    def __repr__(self) -> str:
        key = self.api_key
        shown = mask_secret(key) if isinstance(key, str) else "<callable>"
        return f"Settings(base_url={self.base_url!r}, api_key={shown!r})"


def resolve_settings(
    *,
    api_key: ApiKey | None,
    base_url: str | None,
    organization: str | None,
    project: str | None,
    timeout: TimeoutSetting | NotGiven,
    max_retries: int,
    default_headers: Mapping[str, str] | None,
    default_query: Mapping[str, str] | None,
    auth_scheme: AuthScheme,
) -> Settings:
    """Check every constructor argument and fill the gaps from the environment."""
    if api_key is None:
        api_key = _first_env("OPENAI_API_KEY")
        if api_key is None:
            raise ValueError(
                "No API key: pass api_key= or set the OPENAI_API_KEY environment variable"
            )
    elif isinstance(api_key, str):
        if not api_key.strip():
            raise ValueError("api_key must not be empty")
    elif not callable(api_key):
        raise TypeError(f"api_key must be a str or a callable, got {type(api_key).__name__}")
    if auth_scheme not in ("bearer", "api-key"):
        raise ValueError(f"auth_scheme must be 'bearer' or 'api-key', got {auth_scheme!r}")
    if base_url is None:
        base_url = _first_env("OPENAI_BASE_URL", "OPENAI_API_BASE") or DEFAULT_BASE_URL
    organization = _optional_str(organization, "organization") or _first_env(
        "OPENAI_ORG_ID", "OPENAI_ORGANIZATION"
    )
    project = _optional_str(project, "project") or _first_env("OPENAI_PROJECT_ID")
    return Settings(
        api_key=api_key,
        base_url=check_base_url(base_url),
        organization=organization,
        project=project,
        timeout=DEFAULT_TIMEOUT if timeout is NOT_GIVEN else check_timeout(timeout),
        max_retries=check_max_retries(max_retries),
        default_headers=check_headers(default_headers, "default_headers"),
        default_query=check_str_mapping(default_query, "default_query"),
        auth_scheme=auth_scheme,
    )
