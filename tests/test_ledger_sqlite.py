"""``SQLiteLedger`` on real files: the backend contract, migrations, durability settings."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from conditions import until
from ledger_contract import LedgerContract, MakeStore, intent

from asyncvideos import LedgerError
from asyncvideos.ledger import Change, SQLiteLedger, VideoOwnedError, open_ledger
from asyncvideos.ledger import _sqlite as sqlite_backend


@pytest.fixture
async def make_store(tmp_path: Path) -> AsyncIterator[MakeStore]:
    stores: list[SQLiteLedger] = []

    async def make(lease_seconds: float) -> SQLiteLedger:
        store = SQLiteLedger(tmp_path / "jobs.db", lease_seconds=lease_seconds)
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


class TestContract(LedgerContract):
    """The contract every backend meets, on one SQLite file and several connections."""


def status_on_disk(path: Path, key: str) -> object:
    """``key``'s status as another connection reads it (what is committed)."""
    with closing(sqlite3.connect(path)) as connection:
        row = connection.execute("SELECT status FROM jobs WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def pragma(path: Path, name: str) -> object:
    with closing(sqlite3.connect(path)) as connection, connection:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]


class TestOpening:
    async def test_the_file_and_its_folders_are_made_in_wal_mode(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "jobs.db"
        async with SQLiteLedger(path) as store:
            assert await store.entries() == []
        assert path.is_file()
        assert pragma(path, "journal_mode") == "wal"
        with closing(sqlite3.connect(path)) as connection, connection:
            assert connection.execute("SELECT version FROM schema_version").fetchall() == [(1,)]

    async def test_calls_run_off_the_event_loop_thread(self, tmp_path: Path) -> None:
        """Every database call runs on the ledger's own thread."""
        threads: set[str] = set()

        def trace(statement: str) -> None:
            threads.add(threading.current_thread().name)

        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            await store._run(lambda connection, _: connection.set_trace_callback(trace))
            await store.begin(intent("k1"), owner="a")
            await store.get("k1")
        assert threads
        assert all(name.startswith("asyncvideos-ledger") for name in threads)
        assert threading.current_thread().name not in threads

    async def test_concurrent_first_uses_open_once(self, tmp_path: Path) -> None:
        store = SQLiteLedger(tmp_path / "jobs.db")
        try:
            results = await asyncio.gather(*(store.get(f"k{n}") for n in range(8)))
            assert results == [None] * 8
        finally:
            await store.close()

    async def test_a_closed_ledger_refuses_work(self, tmp_path: Path) -> None:
        store = SQLiteLedger(tmp_path / "jobs.db")
        await store.open()
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await store.get("k1")

    async def test_a_file_that_is_not_a_database_is_a_ledger_error(self, tmp_path: Path) -> None:
        path = tmp_path / "jobs.db"
        path.write_bytes(b"this is no database" * 100)
        store = SQLiteLedger(path)
        with pytest.raises(LedgerError, match="Cannot open the ledger"):
            await store.open()
        with pytest.raises(LedgerError):  # a failed open can be tried again
            await store.open()

    async def test_a_failed_open_leaves_no_thread(self, tmp_path: Path) -> None:
        (tmp_path / "jobs.db").write_bytes(b"no database" * 100)
        before = {thread.ident for thread in threading.enumerate()}
        for _ in range(3):
            with pytest.raises(LedgerError):
                await SQLiteLedger(tmp_path / "jobs.db").open()
        await asyncio.sleep(0.05)
        alive = [
            thread
            for thread in threading.enumerate()
            if thread.ident not in before and thread.name == "asyncvideos-ledger"
        ]
        for thread in alive:
            thread.join(5)
        assert not any(thread.is_alive() for thread in alive)

    async def test_a_folder_in_the_way_is_a_ledger_error(self, tmp_path: Path) -> None:
        (tmp_path / "jobs.db").mkdir()
        with pytest.raises(LedgerError):
            await SQLiteLedger(tmp_path / "jobs.db").open()

    @pytest.mark.parametrize(("setting", "expected"), [("full", 2), ("normal", 1)])
    async def test_synchronous(self, tmp_path: Path, setting: str, expected: int) -> None:
        store = SQLiteLedger(tmp_path / "jobs.db", synchronous=setting)  # type: ignore[arg-type]
        async with store:
            value = await store._run(
                lambda connection, _: connection.execute("PRAGMA synchronous").fetchone()[0]
            )
            assert value == expected


class TestMigrations:
    """A schema_version table and numbered forward migrations, on real files."""

    async def test_a_newer_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "jobs.db"
        async with SQLiteLedger(path) as store:
            await store.begin(intent("k1"), owner="a")
        with closing(sqlite3.connect(path)) as connection, connection:
            connection.execute("UPDATE schema_version SET version = 99")
        with pytest.raises(LedgerError, match=r"schema version 99, newer .* \(1\)"):
            await SQLiteLedger(path).open()
        with closing(sqlite3.connect(path)) as connection, connection:  # and nothing was changed
            assert connection.execute("SELECT version FROM schema_version").fetchall() == [(99,)]

    async def test_two_version_rows_are_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "jobs.db"
        async with SQLiteLedger(path):
            pass
        with closing(sqlite3.connect(path)) as connection, connection:
            connection.execute("INSERT INTO schema_version VALUES (1)")
        with pytest.raises(LedgerError, match="schema_version rows"):
            await SQLiteLedger(path).open()

    async def test_a_later_migration_applies_once_and_keeps_the_entries(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A version-1 file meets code with a migration 2: applied once, data kept."""
        path = tmp_path / "jobs.db"
        async with SQLiteLedger(path) as store:
            await store.begin(intent("k1"), owner="a")
        migration = ("CREATE TABLE notes (key TEXT)", "INSERT INTO notes VALUES ('migrated')")
        monkeypatch.setattr(sqlite_backend, "MIGRATIONS", (*sqlite_backend.MIGRATIONS, migration))
        for _ in range(2):
            async with SQLiteLedger(path) as store:
                entry = await store.get("k1")
                assert entry is not None
                assert entry.prompt == "a paper boat"
        with closing(sqlite3.connect(path)) as connection, connection:
            assert connection.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
            assert connection.execute("SELECT key FROM notes").fetchall() == [("migrated",)]

    async def test_a_failed_migration_leaves_the_file_as_it_was(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "jobs.db"
        async with SQLiteLedger(path):
            pass
        broken = ("CREATE TABLE notes (key TEXT)", "THIS IS NOT SQL")
        monkeypatch.setattr(sqlite_backend, "MIGRATIONS", (*sqlite_backend.MIGRATIONS, broken))
        with pytest.raises(LedgerError):
            await SQLiteLedger(path).open()
        with closing(sqlite3.connect(path)) as connection, connection:
            assert connection.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            assert "notes" not in tables


class TestArguments:
    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"path": 3}, TypeError, "path"),
            ({"path": ""}, ValueError, "path"),
            ({"path": ":memory:"}, ValueError, "outlives"),
            ({"lease_seconds": 0}, ValueError, "lease_seconds"),
            ({"lease_seconds": float("inf")}, ValueError, "lease_seconds"),
            ({"lease_seconds": "5"}, TypeError, "lease_seconds"),
            ({"synchronous": "off"}, ValueError, "synchronous"),
            ({"busy_timeout": -1}, ValueError, "busy_timeout"),
            ({"busy_timeout": True}, TypeError, "busy_timeout"),
            ({"clock": 5}, TypeError, "clock"),
        ],
    )
    def test_bad_settings(
        self, tmp_path: Path, options: dict[str, object], error: type[Exception], match: str
    ) -> None:
        given = {"path": tmp_path / "jobs.db", **options}
        with pytest.raises(error, match=match):
            SQLiteLedger(**given)  # type: ignore[arg-type]


class TestOpenLedger:
    def test_sqlite_urls(self) -> None:
        relative = open_ledger("sqlite:///data/jobs.db")
        assert isinstance(relative, SQLiteLedger)
        assert str(relative.path) == "data/jobs.db"
        absolute = open_ledger("sqlite:////var/lib/app/jobs%20x.db?lease_seconds=2.5")
        assert isinstance(absolute, SQLiteLedger)
        assert str(absolute.path) == "/var/lib/app/jobs x.db"
        assert absolute.lease_seconds == 2.5
        tuned = open_ledger("SQLITE:///j.db?synchronous=NORMAL&busy_timeout=1")
        assert isinstance(tuned, SQLiteLedger)
        assert (tuned.synchronous, tuned.busy_timeout) == ("normal", 1.0)
        assert repr(tuned) == "SQLiteLedger('j.db')"

    @pytest.mark.parametrize(
        ("url", "error", "match"),
        [
            (b"sqlite:///x.db", TypeError, "str"),
            ("jobs.db", ValueError, "sqlite://"),
            ("mysql://host/db", ValueError, "mysql"),
            ("sqlite://host/x.db", ValueError, "no host"),
            ("sqlite:///", ValueError, "names a file"),
            ("sqlite:///x.db?color=red", ValueError, "color"),
            ("sqlite:///x.db?lease_seconds=soon", ValueError, "number"),
            ("sqlite:///x.db?lease_seconds=nan", ValueError, "finite"),
            ("sqlite:///x.db?lease_seconds=0", ValueError, "lease_seconds"),
            ("sqlite:///x.db?synchronous=off", ValueError, "synchronous"),
        ],
    )
    def test_bad_urls(self, url: object, error: type[Exception], match: str) -> None:
        with pytest.raises(error, match=match):
            open_ledger(url)  # type: ignore[arg-type]

    def test_postgresql_without_the_extra_says_what_to_install(self) -> None:
        # In a fresh interpreter where psycopg cannot be imported (the extra missing).
        code = (
            "import sys; sys.modules['psycopg'] = None\n"
            "from asyncvideos.ledger import open_ledger\n"
            "try:\n"
            "    open_ledger('postgresql://localhost/jobs')\n"
            "except ImportError as error:\n"
            "    print(error)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert "pip install 'asyncvideos[postgres]'" in out

    def test_postgresql_with_the_extra_is_the_fleet_ledger(self) -> None:
        from asyncvideos.ledger import PostgresLedger

        assert isinstance(open_ledger("postgresql://localhost/jobs"), PostgresLedger)


class TestManyOpeners:
    async def test_connections_opening_a_new_file_together_all_get_in(self, tmp_path: Path) -> None:
        for attempt in range(20):
            path = tmp_path / f"jobs-{attempt}.db"
            stores = [SQLiteLedger(path) for _ in range(6)]
            try:
                await asyncio.gather(*(store.open() for store in stores))
                assert await stores[0].entries() == []
            finally:
                for store in stores:
                    await store.close()


class TestGroupCommit:
    async def test_concurrent_writes_share_commits(self, tmp_path: Path) -> None:
        """Writes waiting together are one transaction: far fewer commits than writes."""
        statements: list[str] = []
        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            await store._run(lambda connection, _: connection.set_trace_callback(statements.append))
            results = await asyncio.gather(
                *(store.begin(intent(f"k{n}"), owner="a") for n in range(50))
            )
            assert all(written for _, written in results)
            assert len(await store.entries()) == 50
        commits = [statement for statement in statements if statement == "COMMIT"]
        assert 1 <= len(commits) <= 25

    async def test_a_failed_write_is_undone_alone(self, tmp_path: Path) -> None:
        """In one batch, the write that breaks a rule fails; the others are kept."""
        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            for n in range(10):
                await store.begin(intent(f"k{n}"), owner="a")
            outcomes = await asyncio.gather(
                *(
                    store.update(
                        f"k{n}",
                        Change(state="created", video_id="same" if n in (3, 7) else f"v{n}"),
                        states=("intent",),
                    )
                    for n in range(10)
                ),
                return_exceptions=True,
            )
            failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
            assert len(failures) == 1
            assert isinstance(failures[0], VideoOwnedError)
            owned = await store.owned([f"v{n}" for n in range(10)] + ["same"])
        assert len(owned) == 9


async def test_the_table_has_a_column_for_each_field_of_entry(tmp_path: Path) -> None:
    """Rows are read into an Entry by position, from the columns named after its fields."""
    import attrs

    from asyncvideos.ledger import Entry

    async with SQLiteLedger(tmp_path / "jobs.db") as store:
        await store.begin(intent("k1"), owner="a")
    with closing(sqlite3.connect(tmp_path / "jobs.db")) as connection:
        table = {row[1] for row in connection.execute("PRAGMA table_info(jobs)")}
    assert table == {field.name for field in attrs.fields(Entry)}


class TestNote:
    async def test_a_noted_write_is_seen_by_every_later_call(self, tmp_path: Path) -> None:
        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            await store.begin(intent("k1"), owner="a")
            await store.note("k1", Change(status="in_progress"), states=("intent",))
            entry = await store.get("k1")  # queued after the note: sees it
            assert entry is not None
            assert entry.status == "in_progress"

    async def test_a_noted_write_no_call_follows_is_written_soon(self, tmp_path: Path) -> None:
        """Held for the next call, a note still goes on its own (``HOLD`` s later)."""
        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            await store.begin(intent("k1"), owner="a")
            await store.note("k1", Change(status="in_progress"), states=("intent",))

            def written() -> bool:
                return status_on_disk(tmp_path / "jobs.db", "k1") == "in_progress"

            await until(written, "the noted status on disk")

    async def test_a_noted_write_is_written_before_the_ledger_closes(self, tmp_path: Path) -> None:
        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            await store.begin(intent("k1"), owner="a")
            await store.note("k1", Change(status="in_progress"), states=("intent",))
        assert status_on_disk(tmp_path / "jobs.db", "k1") == "in_progress"

    async def test_a_client_closing_writes_the_statuses_of_a_ledger_it_leaves_open(
        self, tmp_path: Path
    ) -> None:
        from asyncvideos.testing import FakeVideosAPI

        store = SQLiteLedger(tmp_path / "jobs.db")
        try:
            async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as api:
                async with api.client(ledger=store) as videos:
                    await videos.create_and_wait("a paper boat", idempotency_key="k1")
                # No later call, no HOLD's wait: the client's close wrote it.
                assert status_on_disk(tmp_path / "jobs.db", "k1") == "completed"
        finally:
            await store.close()

    async def test_a_noted_write_that_fails_is_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            await store.begin(intent("k1"), owner="a")
            await store.begin(intent("k2"), owner="a")
            await store.update("k1", Change(video_id="v1"), states=("intent",))
            await store.note("k2", Change(video_id="v1"), states=("intent",))
            entry = await store.get("k2")
            assert entry is not None
            assert entry.video_id is None
        assert "could not record a status of k2" in caplog.text

    async def test_noting_opens_the_ledger_when_needed(self, tmp_path: Path) -> None:
        store = SQLiteLedger(tmp_path / "jobs.db")
        try:
            await store.note("k1", Change(status="x"), states=("created",))  # nothing to write
            assert await store.entries() == []
        finally:
            await store.close()


class TestPurge:
    """``purge(older_than=)`` on a real file: finished and old only, in one statement."""

    async def test_finished_entries_older_than_the_age_are_purged(self, tmp_path: Path) -> None:
        from datetime import timedelta

        from ledger_contract import created

        now = [1_000_000.0]
        async with SQLiteLedger(tmp_path / "jobs.db", clock=lambda: now[0]) as store:
            await created(store, "old-done", "v1")
            await store.update("old-done", Change(state="failed"), states=("created",))
            await created(store, "old-open", "v2")
            await store.begin(intent("old-intent"), owner="maker")
            now[0] += 10 * 86400
            await created(store, "new-done", "v3")
            await store.update("new-done", Change(state="downloaded"), states=("created",))
            assert await store.purge(older_than=timedelta(days=7)) == 1
            # Unfinished entries are kept however old; a second purge finds nothing.
            assert sorted(e.key for e in await store.entries()) == [
                "new-done",
                "old-intent",
                "old-open",
            ]
            assert await store.purge(older_than=timedelta(days=7)) == 0
            now[0] += 1
            assert await store.purge(older_than=timedelta(0)) == 1
        with closing(sqlite3.connect(tmp_path / "jobs.db")) as db:
            keys = sorted(key for (key,) in db.execute("SELECT key FROM jobs"))
        assert keys == ["old-intent", "old-open"]

    async def test_purge_checks_its_argument(self, tmp_path: Path) -> None:
        from datetime import timedelta

        async with SQLiteLedger(tmp_path / "jobs.db") as store:
            with pytest.raises(TypeError, match="older_than must be a timedelta"):
                await store.purge(older_than=7)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="older_than must not be negative"):
                await store.purge(older_than=timedelta(days=-1))

    def test_the_command_purges_a_sqlite_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from ledger_contract import created

        from asyncvideos._cli import main

        path = tmp_path / "jobs.db"

        async def seed() -> None:
            async with SQLiteLedger(path, clock=lambda: 1_000_000.0) as store:
                await created(store, "old", "v1")
                await store.update("old", Change(state="expired"), states=("created",))
                await created(store, "open", "v2")

        asyncio.run(seed())
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.delenv("ASYNCVIDEOS_LEDGER", raising=False)
        assert main(["purge", "--older-than", "30d", "--ledger", f"sqlite:///{path}"]) == 0
        assert capsys.readouterr().out == "1\n"
        monkeypatch.setenv("ASYNCVIDEOS_LEDGER", f"sqlite:///{path}")
        assert main(["purge", "--older-than", "30d"]) == 0
        assert capsys.readouterr().out == "0\n"
        with closing(sqlite3.connect(path)) as db:
            assert list(db.execute("SELECT key FROM jobs")) == [("open",)]
