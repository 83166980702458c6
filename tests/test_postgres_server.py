"""The throwaway PostgreSQL server the tests start (tests/postgres_server.py).

What the PostgreSQL tests rely on: each test has a database of its own, the server
listens on loopback only, it runs as an unprivileged user, and stopping it leaves
no process and no folder behind. And ``import asyncvideos`` loads no driver.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from postgres_server import PostgresServer


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(sql.encode())
        return cursor.fetchall() if cursor.description is not None else []


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has exited: its parent has not reaped it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class TestFreshDatabases:
    """Each test's database starts empty, whatever the test before it left."""

    # Two tests, each leaving a table behind: whichever runs second finds none.
    @pytest.mark.parametrize("run", ["first", "second"])
    def test_a_database_starts_empty(self, postgres_url: str, run: str) -> None:
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert _query(postgres_url, tables) == [(0,)]
        _query(postgres_url, f"CREATE TABLE left_by_{run} (x int)")
        assert _query(postgres_url, tables) == [(1,)]

    def test_databases_are_distinct(
        self, postgres_server: PostgresServer, postgres_url: str
    ) -> None:
        other = postgres_server.create_database()
        try:
            assert other != postgres_url
            assert _query(other, "SELECT current_database()") != _query(
                postgres_url, "SELECT current_database()"
            )
        finally:
            postgres_server.drop_database(other.rsplit("/", 1)[1])


class TestTheServer:
    def test_it_listens_on_loopback_only(self, postgres_url: str) -> None:
        assert _query(postgres_url, "SHOW listen_addresses") == [("127.0.0.1",)]

    def test_it_runs_as_an_unprivileged_user(self, postgres_server: PostgresServer) -> None:
        pid = int((postgres_server.data_dir / "postmaster.pid").read_text().split()[0])
        assert os.stat(f"/proc/{pid}").st_uid != 0

    def test_stopping_leaves_nothing_behind(self) -> None:
        server = PostgresServer()
        server.start()
        folder = server.data_dir.parent
        pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        assert _running(pid)
        assert _query(server.url(), "SELECT 1") == [(1,)]
        server.stop()
        assert not folder.exists()
        assert not _running(pid)
        server.stop()  # twice is fine


def test_importing_asyncvideos_loads_no_database_driver() -> None:
    """The ledger's drivers are imported by the ledger that needs one, never before."""
    code = (
        "import sys, asyncvideos, asyncvideos.webhooks, asyncvideos.testing, asyncvideos.ledger; "
        "print(sorted(m for m in ('psycopg', 'psycopg_pool', 'asyncpg', 'psycopg2') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
