"""``open_ledger(url)``: a ledger from a URL, for settings and the command line.

``sqlite:///relative/jobs.db`` and ``sqlite:////absolute/jobs.db`` (SQLAlchemy's
convention: the path is what follows the third slash), with options as query
parameters: ``?lease_seconds=30&synchronous=normal&busy_timeout=10``.
``postgresql://...`` (and ``postgres://``) is the fleet backend's, from the
``postgres`` extra: this imports ``asyncvideos.ledger._postgres`` and calls its
``ledger_from_url(url) -> LedgerStore``; without that module (or its driver)
the error says what to install. Nothing is opened here: the ledger connects
on first use.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ._sqlite import SQLiteLedger
from ._store import LedgerStore

__all__ = ["POSTGRES_SCHEMES", "open_ledger"]

POSTGRES_SCHEMES = ("postgresql", "postgres")
_SQLITE_OPTIONS = {"lease_seconds": float, "synchronous": str, "busy_timeout": float}


def open_ledger(url: str) -> LedgerStore:
    """The ledger a URL names (not opened yet: it connects on first use).

    ``ValueError`` for a URL that names none; ``ImportError`` for
    ``postgresql://`` when the ``postgres`` extra is not installed.
    """
    if not isinstance(url, str):
        raise TypeError(f"ledger URL must be a str, got {type(url).__name__}")
    scheme, colon, _ = url.partition(":")
    scheme = scheme.strip().lower()
    if not colon or not scheme:
        raise ValueError(f"ledger URL must start with sqlite:// or postgresql://, got {url!r}")
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in POSTGRES_SCHEMES:
        try:
            from ._postgres import ledger_from_url  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ImportError(
                "A postgresql:// ledger needs the PostgreSQL backend: "
                "pip install 'asyncvideos[postgres]'"
            ) from exc
        ledger: LedgerStore = ledger_from_url(url)
        return ledger
    raise ValueError(f"ledger URL scheme {scheme!r} is not supported (sqlite:// or postgresql://)")


def _sqlite(url: str) -> SQLiteLedger:
    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError(
            f"a sqlite ledger URL has no host: sqlite:///relative.db or "
            f"sqlite:////absolute.db, got {url!r}"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path:
        raise ValueError(f"a sqlite ledger URL names a file, e.g. sqlite:///jobs.db; got {url!r}")
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = _SQLITE_OPTIONS.get(name)
        if kind is None:
            raise ValueError(
                f"unknown sqlite ledger option {name!r} (known: {', '.join(_SQLITE_OPTIONS)})"
            )
        if kind is float:
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"ledger option {name} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"ledger option {name} must be finite, got {value!r}")
            options[name] = number
        else:
            options[name] = value.lower()
    return SQLiteLedger(path, **options)
