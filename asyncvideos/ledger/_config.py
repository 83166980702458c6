"""``AsyncVideos(ledger=..., reconcile=..., on_created=..., clock_skew=...)``, checked.

Imported by the client only when one of these is given, so a client without
a ledger imports nothing of it (no ``sqlite3``).
"""

from __future__ import annotations

import math

from .._validate import callback
from ._flow import RECONCILE_POLICIES, Journal, Newest, OnCreated
from ._open import open_ledger
from ._store import LedgerStore

__all__ = ["make_journal"]


def make_journal(
    ledger: object,
    *,
    reconcile: object,
    on_created: OnCreated | None,
    clock_skew: object,
    newest: Newest,
) -> Journal:
    """The client's ``Journal`` from its constructor's arguments, each checked."""
    if not isinstance(reconcile, str):
        raise TypeError(f"reconcile must be a str, got {type(reconcile).__name__}")
    if reconcile not in RECONCILE_POLICIES:
        raise ValueError(f"reconcile must be one of {RECONCILE_POLICIES}, got {reconcile!r}")
    callback(on_created, "on_created")
    if isinstance(clock_skew, bool) or not isinstance(clock_skew, (int, float)):
        raise TypeError(f"clock_skew must be a number of seconds, got {type(clock_skew).__name__}")
    if not (math.isfinite(clock_skew) and clock_skew >= 0):
        raise ValueError(f"clock_skew must be >= 0 and finite, got {clock_skew!r}")
    if ledger is None:
        raise ValueError("reconcile= and on_created= need a ledger: AsyncVideos(ledger=...)")
    if isinstance(ledger, str):
        store, owns = open_ledger(ledger), True
    elif isinstance(ledger, LedgerStore):
        store, owns = ledger, False
    else:
        raise TypeError(
            f"ledger must be a LedgerStore (such as SQLiteLedger) or a URL str, "
            f"got {type(ledger).__name__}"
        )
    return Journal(
        store,
        reconcile=reconcile,
        clock_skew=float(clock_skew),
        on_created=on_created,
        newest=newest,
        owns_store=owns,
    )
