"""Client settings and where each comes from: arguments first, then environment.

Everything here is checked once, at construction, so that a bad setting fails
before any request with an error that names it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

import aiohttp
import attrs

from . import _validate as check
from ._masking import mask_secret
from ._version import __version__

logger = logging.getLogger("asyncvideos")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: The default of ``max_response_bytes`` (written out in the constructor's
#: signature too, so the reference shows the value): a page of 100 jobs is about
#: 60 KiB, so this leaves room for any real response.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MIN_RESPONSE_BYTES = 1024
#: 600 s for a whole attempt, 5 s to open a socket. ``sock_connect`` rather
#: than ``connect`` so that time spent queued for a free pooled connection
#: (hundreds of pollers, one bounded pool) does not count as a connect timeout.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=600.0, sock_connect=5.0)
USER_AGENT = f"asyncvideos/{__version__} (aiohttp/{aiohttp.__version__})"

ApiKey: TypeAlias = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""The API key: a str, or a callable (sync or async) returning one, called before
each request, for credentials that rotate."""
TimeoutSetting: TypeAlias = float | int | aiohttp.ClientTimeout | None
"""A per-request limit: seconds for each attempt (connecting within 5 s of it), an
``aiohttp.ClientTimeout`` for finer control, or None for no limit. The client's
default is 600 s per attempt, 5 s to open a socket."""
AuthScheme: TypeAlias = Literal["bearer", "api-key"]
"""How the key is sent: ``"bearer"`` (``Authorization: Bearer <key>``) or
``"api-key"`` (an ``api-key: <key>`` header, as Azure OpenAI wants)."""


class NotGiven(Enum):
    """Type of ``NOT_GIVEN``: "use the client's setting", so None can mean "no limit"."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN = NotGiven.NOT_GIVEN


def check_base_url(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"base_url must be a str, got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not carry a query or fragment, got {value!r}")
    if parts.username or parts.password:
        raise ValueError("base_url must not carry credentials; pass api_key= instead")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        logger.warning(
            "base_url %s uses plain http to a host other than loopback: "
            "the API key travels unencrypted",
            value,
        )
    return value.strip().rstrip("/")


def is_loopback(host: str) -> bool:
    """``localhost``, all of ``127.0.0.0/8`` and ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _first_env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


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
    max_response_bytes: int

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
    max_response_bytes: int,
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
    organization = check.optional_str(organization, "organization") or _first_env(
        "OPENAI_ORG_ID", "OPENAI_ORGANIZATION"
    )
    project = check.optional_str(project, "project") or _first_env("OPENAI_PROJECT_ID")
    return Settings(
        api_key=api_key,
        base_url=check_base_url(base_url),
        organization=organization,
        project=project,
        timeout=DEFAULT_TIMEOUT if timeout is NOT_GIVEN else check.timeout(timeout),
        max_retries=check.max_retries(max_retries),
        default_headers=check.headers(default_headers, "default_headers"),
        default_query=check.str_mapping(default_query, "default_query"),
        auth_scheme=auth_scheme,
        max_response_bytes=check.integer(
            max_response_bytes, "max_response_bytes", low=MIN_RESPONSE_BYTES
        ),
    )
