"""Durable jobs: a ledger, so a service that restarts neither loses a paid job nor pays twice.

Give ``AsyncVideos(ledger=...)`` a ``LedgerStore`` (``SQLiteLedger(path)``, or
``open_ledger("sqlite:///jobs.db")``) and every paid call (``create``,
``remix``, ``edit``, ``extend``, ``create_and_wait``) writes its intent before
the POST, the server's id as soon as it answers, the last status its waits
see, and where its content was downloaded. A call with a key the ledger
already knows returns that job instead of paying again; ``videos.resume()``
re-attaches to every unfinished job after a restart. See the guide page
``docs/guide/ledger.md`` for the policies and what is stored.

``PostgresLedger`` (``open_ledger("postgresql://...")``) is the ledger of a fleet:
many processes on one database (``docs/guide/fleets.md``). It needs the
``postgres`` extra and is imported on first use, so that importing this package
loads no database driver.
"""

from typing import TYPE_CHECKING, Any

from .._errors import AmbiguousCreateError, ContentExpiredError, LedgerError
from ._open import open_ledger
from ._sqlite import SQLiteLedger
from ._store import (
    FINISHED,
    STATES,
    UNFINISHED,
    Change,
    Entry,
    Intent,
    LedgerStore,
    Operation,
    State,
    VideoOwnedError,
    fingerprint,
)

__all__ = [
    "FINISHED",
    "STATES",
    "UNFINISHED",
    "AmbiguousCreateError",
    "Change",
    "ContentExpiredError",
    "Entry",
    "Intent",
    "LedgerError",
    "LedgerStore",
    "Operation",
    "PostgresLedger",
    "SQLiteLedger",
    "State",
    "VideoOwnedError",
    "fingerprint",
    "open_ledger",
]

if TYPE_CHECKING:
    from ._postgres import PostgresLedger


def __getattr__(name: str) -> Any:
    # PostgresLedger imports psycopg: only when asked for.
    if name == "PostgresLedger":
        from ._postgres import PostgresLedger

        return PostgresLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
