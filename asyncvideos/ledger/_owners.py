"""Who holds a ledger entry: owner strings, and whether their process is gone.

An owner is ``host|pid-namespace|pid|start|call``: the machine, the process
(its pid namespace and start time tell a container's pid 7 from the host's,
and a reused pid from the one that held the lease) and the call within it.
A lease normally ends when it expires; a process on the same host, in the
same pid namespace, that no longer exists (or is a zombie, or whose pid now
belongs to a later process) has lost its leases at once, so a service that
restarts after ``kill -9`` reconciles its jobs without waiting out a lease.
Anywhere that cannot be told (another host, another namespace, no
``/proc``), the lease's expiry decides.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid

__all__ = ["owner_is_dead", "new_owner"]

_calls = itertools.count(1)
_identity: tuple[int, str] | None = None


def _proc_stat(pid: int | str) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from ``/proc/<pid>/stat``, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces or parentheses: read after the last ")".
    fields = text.rpartition(")")[2].split()
    if len(fields) < 20:  # pragma: no cover - not a Linux /proc
        return None
    return fields[0], fields[19]


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # pragma: no cover - not Linux: liveness is left to lease expiry
        return ""


def identity() -> str:
    """This process, as ``host|namespace|pid|start`` (recomputed after a fork)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        stat = _proc_stat("self")
        start = "" if stat is None else stat[1]
        _identity = (pid, f"{socket.gethostname()}|{_pid_namespace()}|{pid}|{start}")
    return _identity[1]


def new_owner(token: str | None = None) -> str:
    """An owner for one call of this process: its identity and a call id."""
    return f"{identity()}|{token or uuid.uuid4().hex[:12]}.{next(_calls)}"


def owner_is_dead(owner: str) -> bool:
    """Whether the process behind ``owner`` is certainly gone (False when unsure)."""
    parts = owner.split("|")
    if len(parts) != 5:
        return False
    host, namespace, pid, start, _ = parts
    mine = identity().split("|")
    if not namespace or (host, namespace) != (mine[0], mine[1]) or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False  # this process: its own calls are tracked in memory
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    return state in ("Z", "X", "x") or (bool(start) and started != start)
