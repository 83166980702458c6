"""A job's row as both ledgers store it: the columns of the table ``jobs``.

The columns are ``Entry``'s fields, named alike and read in their order, so a row
read back is an ``Entry`` field for field. What the SQLite and the PostgreSQL
ledger share of them is here; how each database stores a value (a time as Unix
seconds or as ``timestamptz``, a list as JSON text or ``jsonb``) is its own
module's business.
"""

from __future__ import annotations

import attrs

from ._store import Entry

__all__ = ["CLEARED", "COLUMNS", "INTENT_COLUMNS", "REWRITTEN", "TIMES"]

#: Every column, in the order a row is read: ``Entry``'s fields.
COLUMNS: tuple[str, ...] = tuple(field.name for field in attrs.fields(Entry))
#: The columns that hold a time.
TIMES = frozenset({"created_at", "updated_at", "expires_at", "downloaded_at", "lease_expires_at"})
#: Reset when a rejected entry's key is sent again: the new intent starts clean.
CLEARED = (
    "video_id",
    "status",
    "error_code",
    "error_message",
    "expires_at",
    "candidates",
    "target",
    "variant",
    "content_size",
    "content_sha256",
    "downloaded_at",
)
#: What ``begin`` writes of an intent, besides its lease and its times.
INTENT_COLUMNS = (
    "key",
    "operation",
    "fingerprint",
    "state",
    "model",
    "prompt",
    "size",
    "seconds",
    "source_video_id",
    "request",
    "owner",
)
#: What a key sent again after its rejection writes anew: the intent but its key,
#: its lease and its times (``CLEARED`` is the rest).
REWRITTEN = (*INTENT_COLUMNS[1:], "lease_expires_at", "created_at", "updated_at")
