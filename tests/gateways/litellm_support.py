"""What the gateway tests share: the running proxy's handle, its key, LiteLLM's ids.

(A module of its own rather than conftest.py, which tests cannot import reliably.)
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest

from asyncvideos import AsyncVideos

#: Names the ``litellm`` executable (of LiteLLM's own virtual environment).
ENV_VARIABLE = "ASYNCVIDEOS_LITELLM"
#: The proxy's own key, which clients send; the fake's key stays between the two servers.
MASTER_KEY = "sk-litellm-test-0123456789abcdef"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def must_run() -> bool:
    """In CI with the variable set, a LiteLLM that is missing or broken is a failure."""
    return in_ci() and bool(os.environ.get(ENV_VARIABLE))


def find_litellm() -> str | None:
    """The ``litellm`` executable: ``$ASYNCVIDEOS_LITELLM``, else ``litellm`` on PATH."""
    named = os.environ.get(ENV_VARIABLE)
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("litellm")


def fail_or_skip(reason: str) -> None:
    if must_run():
        pytest.fail(f"{reason} (CI=true and {ENV_VARIABLE} is set: LiteLLM must run here)")
    pytest.skip(reason, allow_module_level=True)


def require_litellm() -> str:
    """The ``litellm`` executable; else skip the calling module (fail it in CI)."""
    executable = find_litellm()
    if executable is None:
        named = os.environ.get(ENV_VARIABLE)
        where = f"{ENV_VARIABLE}={named} is not executable" if named else "not on PATH"
        fail_or_skip(
            f"LiteLLM is not installed ({where}): python -m venv .venv-litellm && "
            ".venv-litellm/bin/pip install -r tests/gateways/requirements.txt && "
            f"export {ENV_VARIABLE}=$PWD/.venv-litellm/bin/litellm"
        )
    assert executable is not None
    return executable


@attrs.frozen
class Gateway:
    """A running LiteLLM proxy: where it is, which version, and its log."""

    base_url: str
    root_url: str
    version: str
    log_path: Path
    started_in: float

    def client(self, **options: Any) -> AsyncVideos:
        """An ``AsyncVideos`` on the proxy with its master key."""
        options.setdefault("api_key", MASTER_KEY)
        options.setdefault("max_retries", 0)
        return AsyncVideos(base_url=self.base_url, **options)


# LiteLLM's video ids: ``video_`` + base64 of ``litellm:key:value;key:value;...``.

PREFIX = "video_"


def decode_litellm_id(video_id: str) -> dict[str, str]:
    """The fields LiteLLM packs into an id (provider, model, upstream id, deployment).

    Raises ``ValueError`` for an id that is not one of LiteLLM's.
    """
    if not video_id.startswith(PREFIX):
        raise ValueError(f"not a video id: {video_id!r}")
    payload = video_id[len(PREFIX) :]
    try:
        text = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValueError(f"not a LiteLLM id: {video_id!r}") from error
    if not text.startswith("litellm:"):
        raise ValueError(f"not a LiteLLM id: {video_id!r}")
    fields = {}
    for pair in text[len("litellm:") :].split(";"):
        key, _, value = pair.partition(":")
        fields[key] = value
    return fields


def upstream_id(video_id: str) -> str:
    """The id the upstream API gave the job that LiteLLM's ``video_id`` wraps."""
    return decode_litellm_id(video_id)["video_id"]
