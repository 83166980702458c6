"""Shared fixtures: a fake API on loopback and a client on it, retries without sleeping;
a throwaway PostgreSQL server for the session and a fresh database per test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from postgres_server import INSTALL_HINT, PostgresServer, required, unavailable

from asyncvideos import AsyncVideos
from asyncvideos.testing import FakeVideosAPI, no_retry_waits

# Property tests: 100 examples each in the default run, to keep the README's test
# command short; CI runs them again with HYPOTHESIS_PROFILE=thorough (1,000 each).
settings.register_profile("quick", max_examples=100)
settings.register_profile("thorough", max_examples=1_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

# A shell that starts the suite in the background (``pytest &``) ignores SIGINT in
# it, and so in the CLI subprocesses the Ctrl-C tests send it to: restore it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    """Retries compute and log their waits but do not sleep, so the suite stays fast."""
    with no_retry_waits():
        yield


@pytest.fixture
async def api() -> AsyncIterator[FakeVideosAPI]:
    """A fake API whose jobs finish in about 0.06 s of real time, polled every 10 ms."""
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as fake:
        yield fake


@pytest.fixture
async def client(api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    """A client on ``api`` with the default retry budget."""
    async with api.client() as videos:
        yield videos


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trust store knows, made with ``openssl``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _without_postgres(reason: str) -> None:
    """Skip with the reason and the fix; fail instead where CI requires PostgreSQL."""
    message = f"PostgreSQL tests need a server: {reason}"
    if required():
        pytest.fail(f"{message} (ASYNCVIDEOS_REQUIRE_POSTGRES is set)", pytrace=False)
    pytest.skip(f"{message}; to run them: {INSTALL_HINT} && pip install -e '.[test]'")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (tests/postgres_server.py)."""
    reason = unavailable()
    if reason is not None:
        _without_postgres(reason)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _without_postgres("the psycopg driver is not installed")
    server = PostgresServer()
    try:
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _without_postgres(f"it did not start: {error}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url.rsplit("/", 1)[1])
