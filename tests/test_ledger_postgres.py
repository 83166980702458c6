"""``PostgresLedger`` on a real PostgreSQL server: the backend contract, migrations,
the fleet's own guarantees (many connections racing), purging, URLs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
from ledger_contract import LedgerContract, MakeStore, created, intent

from asyncvideos import LedgerError
from asyncvideos.ledger import Change, VideoOwnedError, open_ledger
from asyncvideos.ledger._postgres import CHANNEL, MIGRATIONS, PostgresLedger
from asyncvideos.ledger._postgres_writes import HOLD, SPACING


@pytest.fixture
async def make_store(postgres_url: str) -> AsyncIterator[MakeStore]:
    stores: list[PostgresLedger] = []

    async def make(lease_seconds: float) -> PostgresLedger:
        store = PostgresLedger(postgres_url, lease_seconds=lease_seconds, max_connections=4)
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


class TestContract(LedgerContract):
    """The contract every backend meets, on one database and several pools."""


async def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        cursor = await connection.execute(statement.encode())
        return await cursor.fetchall() if cursor.description is not None else []


class TestSchema:
    async def test_a_new_database_is_migrated_once_by_racing_workers(
        self, postgres_url: str
    ) -> None:
        stores = [PostgresLedger(postgres_url) for _ in range(6)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
        finally:
            for store in stores:
                await store.close()
        assert await _sql(postgres_url, "SELECT version FROM schema_version") == [
            (len(MIGRATIONS),)
        ]

    async def test_a_first_schema_gets_the_new_rate_budgets(
        self, postgres_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Version 1's rate_budgets (the first rules' layout, a row in it) is replaced
        by the current one: the rows are the next moments' schedule, dropped."""
        from asyncvideos._budget import Report
        from asyncvideos.ledger import _postgres

        monkeypatch.setattr(_postgres, "MIGRATIONS", MIGRATIONS[:1])
        async with PostgresLedger(postgres_url):
            pass
        await _sql(
            postgres_url,
            "INSERT INTO rate_budgets VALUES ('old', 0, 0, 0, 0, 0, 0, true, NULL, 0, 0, now())",
        )
        monkeypatch.setattr(_postgres, "MIGRATIONS", MIGRATIONS)
        async with PostgresLedger(postgres_url) as ledger:
            assert ledger.schema_version == len(MIGRATIONS) == 2
            assert ledger.rate_budgets is not None
            grant = await ledger.rate_budgets.exchange("old", Report(), 2)
            assert grant.count == 2  # a new budget: the slow start's block
        columns = await _sql(
            postgres_url,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'rate_budgets' AND column_name = 'generation'",
        )
        assert columns == [("generation",)]

    async def test_a_newer_schema_is_refused(self, postgres_url: str) -> None:
        async with PostgresLedger(postgres_url):
            pass
        await _sql(postgres_url, "UPDATE schema_version SET version = 99")
        store = PostgresLedger(postgres_url)
        with pytest.raises(LedgerError, match="newer than"):
            await store.open()
        await store.close()

    async def test_an_unreachable_database_is_a_ledger_error(self, postgres_url: str) -> None:
        store = PostgresLedger(postgres_url.rsplit("/", 1)[0] + "/no_such_db")
        with pytest.raises(LedgerError, match="Cannot open the ledger"):
            await store.open()
        await store.close()


class TestAFleetOnOneDatabase:
    """Workers with a pool each, as processes would be, racing on the same entries."""

    async def test_sixteen_workers_racing_one_key_make_one_intent(
        self, make_store: MakeStore
    ) -> None:
        workers = [await make_store(600) for _ in range(8)]
        results = await asyncio.gather(
            *(workers[n % 8].begin(intent("order-1"), owner=f"w{n}") for n in range(16))
        )
        assert sum(written for _, written in results) == 1

    async def test_claim_next_never_blocks_on_another_workers_claim(
        self, make_store: MakeStore, postgres_url: str
    ) -> None:
        store = await make_store(600)
        for n in range(4):
            await created(store, f"k{n}", f"v{n}")
        import psycopg

        # Another worker holds k0's row locked mid-transaction: skipped, not waited on.
        async with await psycopg.AsyncConnection.connect(postgres_url) as holder:
            await holder.execute("SELECT 1 FROM jobs WHERE key = 'k0' FOR UPDATE")
            claimed = await asyncio.wait_for(
                store.claim_next(owner="b", states=("created",), limit=10), 5
            )
            assert [e.key for e in claimed] == ["k1", "k2", "k3"]
            await holder.rollback()

    async def test_a_dead_workers_leases_expire_and_move_on(self, make_store: MakeStore) -> None:
        dead = await make_store(0.2)
        for n in range(3):
            await created(dead, f"k{n}", f"v{n}")
        assert len(await dead.claim_next(owner="dead", states=("created",))) == 3
        alive = await make_store(600)
        assert await alive.claim_next(owner="alive", states=("created",)) == []
        await asyncio.sleep(0.3)
        taken = await alive.claim_next(owner="alive", states=("created",))
        assert [e.owner for e in taken] == ["alive"] * 3

    async def test_record_status_notifies_every_listener(
        self, make_store: MakeStore, postgres_url: str
    ) -> None:
        import psycopg

        store = await make_store(600)
        await created(store, "k1", "v1")
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as listener:
            await listener.execute(f"LISTEN {CHANNEL}")
            assert await store.record_status("v1", status="completed", state="completed")
            heard = [n async for n in listener.notifies(timeout=5, stop_after=1)]
        assert [(n.channel, n.payload) for n in heard] == [(CHANNEL, "v1")]


class TestPurge:
    async def test_finished_entries_older_than_the_age_are_purged(
        self, make_store: MakeStore, postgres_url: str
    ) -> None:
        store = await make_store(600)
        await created(store, "old-done", "v1")
        await store.update("old-done", Change(state="failed"), states=("created",))
        await created(store, "old-open", "v2")
        await created(store, "new-done", "v3")
        await store.update("new-done", Change(state="failed"), states=("created",))
        await _sql(
            postgres_url,
            "UPDATE jobs SET updated_at = now() - interval '10 days' WHERE key LIKE 'old-%'",
        )
        assert await store.purge(older_than=timedelta(days=7)) == 1
        assert [e.key for e in await store.entries()] == ["old-open", "new-done"]

    async def test_purge_checks_its_argument(self, make_store: MakeStore) -> None:
        store = await make_store(600)
        with pytest.raises(TypeError, match="timedelta"):
            await store.purge(older_than=7)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="negative"):
            await store.purge(older_than=timedelta(days=-1))


class TestConstruction:
    def test_a_url_or_a_pool(self) -> None:
        with pytest.raises(TypeError, match="url or a pool"):
            PostgresLedger()
        with pytest.raises(TypeError, match="pool must be"):
            PostgresLedger(pool=object())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_connections"):
            PostgresLedger("postgresql://x/y", max_connections=0)

    def test_the_repr_shows_no_credentials(self) -> None:
        ledger = PostgresLedger("postgresql://me:s3cret@db.example:5433/jobs?sslmode=require")
        assert repr(ledger) == "PostgresLedger('postgresql://db.example:5433/jobs')"

    def test_open_ledger_takes_the_ledgers_options_from_the_url(self) -> None:
        ledger = open_ledger("postgresql://db/jobs?lease_seconds=30&sslmode=require")
        assert isinstance(ledger, PostgresLedger)
        assert ledger.lease_seconds == 30
        assert ledger._url == "postgresql://db/jobs?sslmode=require"

    async def test_a_borrowed_pool_is_left_open(self, postgres_url: str) -> None:
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(postgres_url, open=False) as pool:
            async with PostgresLedger(pool=pool) as ledger:
                await ledger.begin(intent("k1"), owner="a")
            assert not pool.closed
            async with pool.connection() as connection:
                cursor = await connection.execute("SELECT key FROM jobs")
                assert await cursor.fetchall() == [("k1",)]


class TestAFleetOfClients:
    """``AsyncVideos(ledger="postgresql://...")``: paid calls, budget and events shared."""

    async def test_replicas_racing_one_key_pay_once(self, postgres_url: str) -> None:
        from asyncvideos.testing import FakeVideosAPI

        async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as api:
            replicas = [api.client(ledger=postgres_url) for _ in range(4)]
            try:
                for replica in replicas:
                    await replica.__aenter__()
                videos = await asyncio.gather(
                    *(
                        replica.create("a paper boat", idempotency_key="order-42")
                        for replica in replicas
                        for _ in range(3)
                    )
                )
            finally:
                for replica in replicas:
                    await replica.close()
            posts = [r for r in api.requests if r.method == "POST"]
            assert len({video.id for video in videos}) == 1
            assert len(api.videos) == 1
            assert len(posts) == 1

    async def test_the_clients_share_the_keys_budget_and_the_webhooks(
        self, postgres_url: str
    ) -> None:
        from asyncvideos._budget import SharedPacer
        from asyncvideos.testing import FakeVideosAPI
        from asyncvideos.webhooks import WebhookReceiver

        receiver = WebhookReceiver(FakeVideosAPI.generate_webhook_secret())
        async with FakeVideosAPI(speed=100.0) as api:
            async with api.client(ledger=postgres_url, webhooks=receiver) as videos:
                assert isinstance(videos._pacer, SharedPacer)
                assert receiver._relay is not None
                await videos.create("a paper boat")
            assert receiver._relay is None  # closed with the client
            async with api.client(ledger=postgres_url, pacing=False) as unpaced:
                assert not isinstance(unpaced._pacer, SharedPacer)


class TestPurgeCommand:
    """``asyncvideos purge --older-than AGE --ledger URL``: no key needed."""

    def test_it_prints_how_many_were_purged(
        self, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from asyncvideos._cli import main

        async def seed() -> None:
            async with PostgresLedger(postgres_url) as ledger:
                await created(ledger, "old", "v1")
                await ledger.update("old", Change(state="failed"), states=("created",))
            await _sql(postgres_url, "UPDATE jobs SET updated_at = now() - interval '40 days'")

        asyncio.run(seed())
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        assert main(["purge", "--older-than", "30d", "--ledger", postgres_url]) == 0
        assert capsys.readouterr().out == "1\n"
        monkeypatch.setenv("ASYNCVIDEOS_LEDGER", postgres_url)
        assert main(["purge", "--older-than", "30d"]) == 0
        assert capsys.readouterr().out == "0\n"

    def test_its_usage_errors(
        self, tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from asyncvideos._cli import main

        monkeypatch.delenv("ASYNCVIDEOS_LEDGER", raising=False)
        assert main(["purge", "--older-than", "30d"]) == 2
        assert "no ledger" in capsys.readouterr().err
        assert main(["purge", "--older-than", "a month"]) == 2
        assert "expected an age" in capsys.readouterr().err


class TestEdges:
    def test_arguments_are_checked(self) -> None:
        with pytest.raises(TypeError, match="url must be a str"):
            PostgresLedger(b"postgresql://x/y")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="prepare_threshold"):
            PostgresLedger("postgresql://x/y", prepare_threshold=-1)
        assert PostgresLedger("postgresql://x/y").schema_version == len(MIGRATIONS)

    async def test_a_closed_ledger_refuses_to_open(self, postgres_url: str) -> None:
        ledger = PostgresLedger(postgres_url)
        await ledger.close()
        with pytest.raises(RuntimeError, match="closed"):
            await ledger.open()

    async def test_empty_state_sets_match_nothing(self, make_store: MakeStore) -> None:
        store = await make_store(600)
        await created(store, "k1", "v1")
        assert await store.claim("k1", owner="a", states=()) is None
        assert await store.update("k1", Change(status="x"), states=()) is None
        assert await store.claim_next(owner="a", states=()) == []

    async def test_a_state_of_no_ledger_goes_as_a_parameter(
        self, make_store: MakeStore, postgres_url: str
    ) -> None:
        # The ledger's own states are literals in the statement; any other string
        # a caller names is a parameter, matched exactly and never SQL.
        store = await make_store(600)
        await created(store, "k1", "v1")
        await created(store, "k2", "v2")
        odd = "x'); DELETE FROM jobs; --"
        assert await store.update("k1", Change(status="s"), states=[odd]) is None  # type: ignore[list-item]
        changed = await store.update("k1", Change(status="s"), states=["created", odd])  # type: ignore[list-item]
        assert changed is not None
        assert changed.status == "s"
        await _sql(
            postgres_url, "UPDATE jobs SET state = 'x''); DELETE FROM jobs; --' WHERE key = 'k2'"
        )
        claimed = await store.claim("k2", owner="a", states=[odd])  # type: ignore[list-item]
        assert claimed is not None
        assert claimed.owner == "a"
        assert len(await _sql(postgres_url, "SELECT key FROM jobs")) == 2

    async def test_two_version_rows_are_refused(self, postgres_url: str) -> None:
        async with PostgresLedger(postgres_url):
            pass
        await _sql(postgres_url, "INSERT INTO schema_version VALUES (1)")
        ledger = PostgresLedger(postgres_url)
        with pytest.raises(LedgerError, match="schema_version rows"):
            await ledger.open()
        await ledger.close()

    async def test_an_older_schema_is_migrated_forward(
        self, postgres_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from asyncvideos.ledger import _postgres

        async with PostgresLedger(postgres_url):
            pass
        later = (*MIGRATIONS, ("CREATE INDEX jobs_by_owner ON jobs (owner)",))
        monkeypatch.setattr(_postgres, "MIGRATIONS", later)
        async with PostgresLedger(postgres_url) as ledger:
            assert ledger.schema_version == len(later)
        assert await _sql(postgres_url, "SELECT version FROM schema_version") == [(len(later),)]
        indexes = await _sql(postgres_url, "SELECT indexname FROM pg_indexes")
        assert ("jobs_by_owner",) in indexes

    async def test_a_ledger_on_a_pool_says_so_and_checks_its_receiver(
        self, postgres_url: str
    ) -> None:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(postgres_url, open=False)
        async with pool, PostgresLedger(pool=pool) as ledger:
            assert repr(ledger) == "PostgresLedger(pool=...)"
            with pytest.raises(TypeError, match="WebhookReceiver"):
                async with ledger.share_webhooks(object()):  # type: ignore[arg-type]
                    pass

    async def test_a_callable_key_keeps_its_own_budget(
        self, postgres_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        import logging

        from asyncvideos import AsyncVideos
        from asyncvideos._budget import SharedPacer
        from asyncvideos.testing import FakeVideosAPI

        caplog.set_level(logging.INFO, "asyncvideos")
        async with FakeVideosAPI() as api:

            async def key() -> str:
                return api.api_key

            async with AsyncVideos(api_key=key, base_url=api.base_url, ledger=postgres_url) as v:
                assert not isinstance(v._pacer, SharedPacer)
        assert any("keeps its own rate budget" in r.message for r in caplog.records)


class TestGroupedWrites:
    """``record`` and ``note`` of many keys go in one statement, each under its own
    condition, and are seen by every later call (``_postgres_writes``)."""

    async def test_records_made_together_are_one_statement(
        self, make_store: MakeStore, postgres_url: str
    ) -> None:
        store = await make_store(600)
        assert isinstance(store, PostgresLedger)
        keys = [f"k{n}" for n in range(40)]
        for key in keys:
            await store.begin(intent(key), owner="maker")
        await created(store, "done", "v-done")  # its condition does not hold
        before = store.grouped_writes.statements
        written = await asyncio.gather(
            *(
                store.record(
                    key,
                    Change(state="created", video_id=f"v-{key}", status="queued", lease="release"),
                    states=("intent",),
                )
                for key in [*keys, "done"]
            )
        )
        assert written == [True] * 40 + [False]
        assert store.grouped_writes.statements - before == 1
        rows = await _sql(postgres_url, "SELECT key, video_id, owner FROM jobs ORDER BY key")
        assert ("k7", "v-k7", None) in rows
        assert ("done", "v-done", None) in rows

    async def test_the_write_whose_job_has_another_entry_fails_alone(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store(600)
        await created(store, "first", "v1")
        for key in ("a", "b", "c"):
            await store.begin(intent(key), owner="maker")
        change = Change(state="created", status="queued", lease="release")
        results = await asyncio.gather(
            *(
                store.record(key, attrs.evolve(change, video_id=video), states=("intent",))
                for key, video in (("a", "va"), ("b", "v1"), ("c", "vc"))
            ),
            return_exceptions=True,
        )
        assert (results[0], results[2]) == (True, True)
        assert isinstance(results[1], VideoOwnedError)
        assert (results[1].video_id, results[1].owner_key) == ("v1", "first")
        entry = await store.get("b")
        assert entry is not None
        assert entry.state == "intent"

    async def test_held_statuses_are_seen_by_later_calls_in_order(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store(600)
        assert isinstance(store, PostgresLedger)
        for n in range(3):
            await created(store, f"k{n}", f"v{n}")
        await store.note("k0", Change(status="in_progress"), states=("created",))
        await store.note("k0", Change(state="completed", status="completed"), states=("created",))
        # Its condition no longer holds once the one before it is written.
        await store.note("k0", Change(status="queued"), states=("created",))
        await store.note("k1", Change(status="in_progress"), states=("created",))
        assert store.grouped_writes.writes == 0  # held, not written yet
        entry = await store.get("k0")  # a keyed call waits for that key's writes
        assert entry is not None
        assert (entry.state, entry.status) == ("completed", "completed")
        await store.note("k2", Change(status="in_progress"), states=("created",))
        found = await store.select(states=("created",))  # any other call, for all of them
        assert [(e.key, e.status) for e in found] == [("k1", "in_progress"), ("k2", "in_progress")]

    async def test_a_status_nobody_asks_for_is_written_within_the_hold(
        self, make_store: MakeStore, postgres_url: str
    ) -> None:
        store = await make_store(600)
        assert isinstance(store, PostgresLedger)
        await created(store, "k0", "v0")
        await store.note("k0", Change(status="in_progress"), states=("created",))
        await asyncio.sleep(HOLD * 4)
        assert await _sql(postgres_url, "SELECT status FROM jobs") == [("in_progress",)]

    async def test_closing_writes_the_held_statuses(self, postgres_url: str) -> None:
        store = PostgresLedger(postgres_url)
        await created(store, "k0", "v0")
        await store.note("k0", Change(status="in_progress"), states=("created",))
        await store.close()
        assert await _sql(postgres_url, "SELECT status FROM jobs") == [("in_progress",)]

    async def test_a_status_the_database_refuses_is_logged(
        self, make_store: MakeStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = await make_store(600)
        for n in range(3):
            await created(store, f"k{n}", f"v{n}")
        too_big = Change(content_size=2**70)  # beyond BIGINT: the statement fails
        await store.note("k0", too_big, states=("created",))  # alone
        await store.get("k0")
        await store.note("k1", too_big, states=("created",))  # a group
        await store.note("k2", too_big, states=("created",))
        await store.select()
        warnings = [r.getMessage() for r in caplog.records if "could not record" in r.getMessage()]
        assert len(warnings) == 3
        assert all("database failed" in text for text in warnings)

    async def test_writes_of_every_kind_go_in_one_statement(self, make_store: MakeStore) -> None:
        store = await make_store(600)
        assert isinstance(store, PostgresLedger)
        for key in ("a", "b", "c", "d"):
            await store.begin(intent(key), owner=f"o-{key}")
        for key in ("e", "f"):
            await created(store, key, f"v-{key}")
        store.grouped_writes.statements = 0
        renew, release = Change(lease="renew"), Change(status="x", lease="release")
        await store.note("e", Change(status="in_progress"), states=("created",))
        results = await asyncio.gather(
            store.record("a", renew, states=("intent",), owner="o-a"),
            store.record("b", renew, states=("intent",), owner="someone else"),
            store.record("c", release, states=("intent",), owner="o-c"),
            store.record("d", attrs.evolve(release, video_id="v-d"), states=("intent",)),
            # Its states do not hold: "f" is created.
            store.record("f", Change(status="gone"), states=("intent", "rejected")),
        )
        assert results == [True, False, True, True, False]
        assert store.grouped_writes.statements == 1
        entries = {key: await store.get(key) for key in "abcdef"}
        found = {
            key: (e.owner, e.status, e.video_id) for key, e in entries.items() if e is not None
        }
        assert found == {
            "a": ("o-a", None, None),
            "b": ("o-b", None, None),
            "c": (None, "x", None),
            "d": (None, "x", "v-d"),
            "e": (None, "in_progress", "v-e"),
            "f": (None, "queued", "v-f"),
        }
        leases = {key: e.lease_expires_at for key, e in entries.items() if e is not None}
        assert [leases[key] is None for key in "abcd"] == [False, False, True, True]

    async def test_begins_and_writes_made_together_are_one_statement(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store(600)
        assert isinstance(store, PostgresLedger)
        await store.begin(intent("there", "an older prompt"), owner="first")
        await store.begin(intent("refused"), owner="first")
        rejected = Change(state="rejected", error_code="invalid_value", lease="release")
        assert await store.record("refused", rejected, states=("intent",))
        await created(store, "made", "v-made")
        store.grouped_writes.statements = 0
        begun = asyncio.gather(
            *(store.begin(intent(key), owner="second") for key in ("new", "there", "refused"))
        )
        recorded = store.record("made", Change(status="in_progress"), states=("created",))
        (new, there, refused), written = await asyncio.gather(begun, recorded)
        assert store.grouped_writes.statements == 1
        assert written
        assert (new[1], new[0].key, new[0].owner, new[0].state) == (True, "new", "second", "intent")
        # An entry that is there is handed back as it is, unless it was rejected.
        assert (there[1], there[0].prompt, there[0].owner) == (False, "an older prompt", "first")
        assert (refused[1], refused[0].error_code, refused[0].owner) == (True, None, "second")
        assert new[0] == await store.get("new")

    async def test_a_begin_meeting_an_entry_written_meanwhile_reads_it(
        self, make_store: MakeStore, postgres_url: str
    ) -> None:
        import psycopg

        store = await make_store(600)
        await store.get("warm")  # opened: the begin below waits only on the row
        async with await psycopg.AsyncConnection.connect(postgres_url) as other:
            await other.execute(
                "INSERT INTO jobs (key, operation, fingerprint, state, prompt, request, "
                "created_at, updated_at) VALUES ('k', 'create', 'f', 'intent', 'theirs', "
                "'{}', now(), now())"
            )
            # Its INSERT waits on the other's uncommitted row, then finds it there,
            # after the statement's snapshot: read again.
            begun = asyncio.ensure_future(store.begin(intent("k"), owner="mine"))
            await asyncio.sleep(0.3)
            assert not begun.done()
            await other.commit()
        entry, written = await begun
        assert (written, entry.prompt) == (False, "theirs")

    async def test_the_intents_are_written_when_a_write_with_them_fails(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store(600)
        await created(store, "first", "v1")
        await store.begin(intent("b"), owner="maker")
        change = Change(state="created", video_id="v1", status="queued", lease="release")
        results = await asyncio.gather(
            store.record("b", change, states=("intent",)),
            store.begin(intent("c"), owner="maker"),
            return_exceptions=True,
        )
        assert isinstance(results[0], VideoOwnedError)
        assert results[1] == (await store.get("c"), True)

    async def test_a_client_closing_writes_the_statuses_of_a_ledger_it_leaves_open(
        self, postgres_url: str
    ) -> None:
        from asyncvideos.testing import FakeVideosAPI

        store = PostgresLedger(postgres_url)
        try:
            async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as api:
                async with api.client(ledger=store) as videos:
                    await videos.create_and_wait("a paper boat", idempotency_key="k1")
                # No later call, no HOLD's wait: the client's close wrote it.
                rows = await _sql(postgres_url, "SELECT state, status FROM jobs")
                assert rows == [("completed", "completed")]
        finally:
            await store.close()

    async def test_a_busy_ledgers_statements_start_a_spacing_apart(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store(600)
        assert isinstance(store, PostgresLedger)
        for key in ("a", "b", "c"):
            await created(store, key, f"v-{key}")
        loop = asyncio.get_running_loop()
        grouped = store.grouped_writes
        starts: list[float] = []
        execute = grouped._execute

        async def timed(statement: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
            starts.append(loop.time())
            return await execute(statement, parameters)

        # The statements of the grouped writes, and of one write alone.
        grouped._execute = store._execute = timed  # type: ignore[method-assign]
        await asyncio.sleep(SPACING)
        first = asyncio.ensure_future(store.record("a", Change(status="x"), states=("created",)))
        await asyncio.sleep(0)  # its statement is on its way: the next two wait
        rest = [store.record(key, Change(status="x"), states=("created",)) for key in "bc"]
        assert await asyncio.gather(first, *rest) == [True, True, True]
        assert len(starts) == 2
        assert starts[1] - starts[0] >= SPACING
