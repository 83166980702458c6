"""A throwaway PostgreSQL server for the tests, the crash harness and the benchmarks.

``PostgresServer`` runs the server binaries of the Debian package (``postgresql-15``,
found by ``pg_config`` or under ``/usr/lib/postgresql/*/bin``) on a fresh data
directory in a temporary folder, listening on loopback only (a free port, and a Unix
socket in that folder), with ``trust`` authentication for the ``postgres`` role: a
server that nothing else can reach and that no one keeps. ``initdb`` and ``pg_ctl``
refuse to run as root, so as root they run as the unprivileged ``postgres`` user
(which the package creates); the folder is given to that user. The server is stopped
and its folder removed by ``stop()`` (or leaving the ``with`` block). It never touches
the machine's own cluster: no ``pg_ctlcluster``, no ``/etc/postgresql``, no
``/var/run/postgresql``.

``fsync`` is off by default. The tests kill *client* processes (workers SIGKILLed
mid-transaction), never the server or the machine: whatever a killed client had
committed is in the server's memory and WAL either way, and only an operating system
crash would need the flush to disk. Turning it off makes each commit, and so the
suite, several times faster on a loaded shared disk. The benchmarks pass
``fsync=True``: a commit's real cost is part of what they measure.

``unavailable()`` says why a server cannot run here (no binaries, no unprivileged
user), so tests skip with the reason and the command that installs it; with
``ASYNCVIDEOS_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) the fixtures fail instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "apt-get install -y postgresql-15"
REQUIRE_ENV = "ASYNCVIDEOS_REQUIRE_POSTGRES"
#: The unprivileged user the server runs as when the tests run as root.
SERVER_USER = "postgres"
#: The role the tests connect as (initdb's superuser), with trust authentication.
ROLE = "postgres"
_START_TIMEOUT = 60


def required() -> bool:
    """Whether a missing or failing PostgreSQL must fail the run (CI) instead of skip."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def find_binaries() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``, newest version first."""
    candidates: list[Path] = []
    explicit = os.environ.get("ASYNCVIDEOS_POSTGRES_BIN")
    if explicit:
        candidates.append(Path(explicit))
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))
    # Debian keeps the server binaries out of PATH, one folder per major version.
    found = glob.glob("/usr/lib/postgresql/*/bin")
    found.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    candidates.extend(Path(p) for p in reversed(found))
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None for this process's own user (not root)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(SERVER_USER)


def unavailable() -> str | None:
    """Why no throwaway server can run here, with the command that fixes it; else None."""
    if find_binaries() is None:
        return f"the PostgreSQL server binaries are not installed ({INSTALL_HINT})"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return (
                f"running as root, and initdb refuses root: no {SERVER_USER!r} user to run "
                f"it as ({INSTALL_HINT} creates one)"
            )
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One throwaway server; ``url(database)`` for a connection string.

    ``settings`` are extra ``postgres -c`` settings (``{"max_connections": "200"}``).
    """

    def __init__(
        self,
        *,
        fsync: bool = False,
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.fsync = fsync
        self.settings = dict(settings or {})
        self._bin = bin_dir or find_binaries()
        self.folder: Path | None = None
        self.port = 0
        self._user = _server_user()

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.folder is not None

    @property
    def data_dir(self) -> Path:
        assert self.folder is not None, "the server is not started"
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        """The folder holding the server's Unix socket (``host=`` in a libpq string)."""
        assert self.folder is not None, "the server is not started"
        return self.folder

    def start(self) -> None:
        """initdb a fresh data directory and start the server on a free loopback port."""
        if self._bin is None:
            raise RuntimeError(unavailable() or "no PostgreSQL binaries")
        if self.running:
            return
        # Short, under /tmp: a Unix socket path is limited to about 100 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="avpg-", dir="/tmp"))
        try:
            if self._user is not None:
                os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                ROLE,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # a throwaway cluster: nothing to flush before it starts
            )
            self._start_server()
        except BaseException:
            self._remove()
            raise

    def _start_server(self) -> None:
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "200",
            **self.settings,
        }
        # A free port can be taken between the probe and the bind: try a few.
        last = ""
        for _ in range(5):
            self.port = _free_port()
            arguments = " ".join(
                f"-c {name}={value}" for name, value in {**options, "port": self.port}.items()
            )
            log = self.folder / "server.log"  # type: ignore[operator]
            result = self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-w",
                "-t",
                str(_START_TIMEOUT),
                "-o",
                arguments,
                check=False,
            )
            if result.returncode == 0:
                return
            last = log.read_text(errors="replace")[-2000:] if log.exists() else result.stderr
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are closed) and remove its folder."""
        if not self.running:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
        finally:
            self._remove()

    def _remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bin is not None
        user = None if self._user is None else self._user.pw_uid
        group = None if self._user is None else self._user.pw_gid
        result = subprocess.run(
            [str(self._bin / tool), *args],
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            cwd=self.folder,  # the server user may not be able to read the caller's cwd
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT + 30,
            env={**os.environ, "LC_ALL": "C"},
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    # -- databases -------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` over loopback TCP."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None, *, template: str = "template1") -> str:
        """A new empty database (copied from ``template``); its URL."""
        name = name or f"t_{secrets.token_hex(6)}"
        if not name.replace("_", "").isalnum():
            raise ValueError(f"a plain database name, not {name!r}")
        # FILE_COPY copies the template in one go: twice as fast as WAL_LOG for a small
        # template, at the price of a checkpoint, which costs nothing without fsync.
        strategy = "WAL_LOG" if self.fsync else "FILE_COPY"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY {strategy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            connection.execute(sql.encode())


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


PGBOUNCER_HINT = "apt-get install -y pgbouncer"


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer",) if os.path.exists(path)), None
    )


class PgBouncer:
    """A throwaway PgBouncer in front of ``server``, in ``pool_mode`` (transaction by
    default), on a free loopback port; run as the server's unprivileged user."""

    def __init__(self, server: PostgresServer, *, pool_mode: str = "transaction") -> None:
        self._server = server
        self.pool_mode = pool_mode
        self.port = 0
        self.folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PgBouncer:
        binary = find_pgbouncer()
        if binary is None:
            raise RuntimeError(f"pgbouncer is not installed ({PGBOUNCER_HINT})")
        user = _server_user()
        self.folder = Path(tempfile.mkdtemp(prefix="avpgb-", dir="/tmp"))
        self.port = _free_port()
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self._server.port} user={ROLE}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.folder}\n"
            "auth_type = any\n"
            f"pool_mode = {self.pool_mode}\n"
            "default_pool_size = 4\n"
            "max_client_conn = 200\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n"
        )
        if user is not None:
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            os.chown(config, user.pw_uid, user.pw_gid)
        self._process = subprocess.Popen(
            [binary, str(config)],
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=[] if user is not None else None,
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port)
        except OSError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def url(self, database: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"
