"""Calling a function the caller gave, which may be sync or async."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


async def call_back(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, awaited when it returns an awaitable."""
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
