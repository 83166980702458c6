"""One rate budget per key across a fleet (asyncvideos/_budget.py and its PostgreSQL store).

The rules are pure and tested on their own; then clients that stand for a fleet's
processes share one store through real HTTP against the fake's rate limit; then
the PostgreSQL store, where many connections exchange on one budget at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from asyncvideos import AsyncVideos, AsyncVideosError
from asyncvideos._budget import (
    COLD_SPACING,
    HORIZON,
    LOOKAHEAD,
    REFRESH,
    BudgetRow,
    MemoryBudgetStore,
    Report,
    SharedPacer,
    budget_name,
    exchange,
    fleet_spacing,
)
from asyncvideos._pacing import Budget
from asyncvideos._retry import retry_waits_enabled
from asyncvideos.testing import FakeVideosAPI, RateLimit


class TestRules:
    """``exchange``: what the store runs under the row's lock."""

    def test_a_new_budget_starts_cautious(self) -> None:
        row, grant = exchange(None, 100.0, Report(), 50)
        assert grant.spacing == COLD_SPACING
        # Slots within HORIZON from now: a lease is a fraction of a second's worth.
        assert grant.count == math.floor(HORIZON / COLD_SPACING)
        assert grant.delay == 0
        assert row.next_at == pytest.approx(100.0 + grant.count * COLD_SPACING)

    def test_successive_grants_never_overlap(self) -> None:
        row, first = exchange(None, 0.0, Report(spacing=0.01, spacing_for=60), 10)
        row, second = exchange(row, 0.0, Report(), 10)
        assert first.count == second.count == 10
        assert second.delay == pytest.approx(first.delay + first.count * first.spacing)
        assert row.issued == 20

    def test_the_last_budget_headers_set_the_fleets_spacing(self) -> None:
        row, grant = exchange(None, 0.0, Report(spacing=0.1, spacing_for=5), 100)
        assert grant.spacing == 0.1
        assert grant.count == 2  # HORIZON's worth
        row, grant = exchange(row, 1.0, Report(spacing=0.02, spacing_for=5), 100)
        # Averaged, each report moving it at most twofold: one response tells the
        # rate only to within a request.
        assert grant.spacing == pytest.approx(0.7 * 0.1 + 0.3 * 0.05)
        # After the headers' reset, they no longer hold.
        assert row.interval(6.5) < 0.02

    def test_a_pause_holds_every_grant_until_it_ends(self) -> None:
        row, _ = exchange(None, 0.0, Report(spacing=0.01, spacing_for=60), 1)
        row, grant = exchange(row, 1.0, Report(pause=2.0), 3)
        assert grant.pause == pytest.approx(2.0)
        assert grant.count == 3
        assert grant.delay == pytest.approx(2.0)
        row, other = exchange(row, 1.5, Report(), 3)  # another process, later
        assert other.delay == pytest.approx(1.5 + 3 * 0.01)

    def test_beyond_the_lookahead_one_slot_at_a_time(self) -> None:
        row, _ = exchange(None, 0.0, Report(spacing=0.01, spacing_for=60), 1)
        row, grant = exchange(row, 0.0, Report(pause=LOOKAHEAD + 1), 3)
        assert grant.count == 1
        assert grant.delay == pytest.approx(LOOKAHEAD + 1)
        # On a cold start (nothing learned), the lookahead is HORIZON.
        row, _ = exchange(None, 0.0, Report(), 1)
        for _ in range(3):
            row, grant = exchange(row, 0.0, Report(), 5)
        assert grant.delay > HORIZON
        assert grant.count == 1

    def test_with_nothing_in_force_requests_go_free(self) -> None:
        row = BudgetRow(next_at=0.0)  # learned long ago: nothing holds now
        row, grant = exchange(row, 50.0, Report(), 10)
        assert grant.free_for == REFRESH
        assert grant.count == 0

    def test_the_slow_start_speeds_up_until_the_first_429(self) -> None:
        row = BudgetRow.new(0.0)
        assert row.interval(1.0) == pytest.approx(COLD_SPACING / 2)
        row, grant = exchange(row, 1.0, Report(pause=0.01, estimate=True), 1)
        assert not row.slow_start
        # The first guess is the 429's wait (a bucket's refill time for one request),
        # or a little over the spacing that met it.
        assert grant.spacing == pytest.approx(max(0.01, 1.1 * COLD_SPACING / 2))

    def test_the_estimate_measures_the_slots_that_got_through(self) -> None:
        row, _ = exchange(None, 0.0, Report(pause=0.01, estimate=True), 0)
        row, _ = exchange(row, 0.02, Report(), 40)
        issued = row.issued
        row, _ = exchange(row, 2.0, Report(pause=0.01, estimate=True), 1)
        # 2 s over the slots issued since the first pause (less the one that met it).
        assert row.estimated == pytest.approx(1.1 * 2.0 / (issued - 1))

    def test_headers_with_a_limit_tell_the_refill_rate(self) -> None:
        # 10 of 20 spent, back in 0.25 s: 40 requests/s, sent a little under it.
        half = Budget(remaining=10, reset=0.25, limit=20)
        assert fleet_spacing(half) == pytest.approx(1.05 * 0.25 / 10)
        # A full bucket tells no rate ...
        assert fleet_spacing(Budget(remaining=20, reset=0.0, limit=20)) is None
        # ... nor headers without a limit: the pacer's rule then.
        assert fleet_spacing(Budget(remaining=3, reset=1.0)) == pytest.approx(0.25)

    def test_budgets_are_named_by_a_hash(self) -> None:
        key = "sk-fleet-secret-0123456789"
        name = budget_name("https://api.openai.com/v1", key)
        assert key not in name
        assert "secret" not in name
        assert name != budget_name("https://api.openai.com/v1", key + "x")
        assert name != budget_name("https://gateway.example/v1", key)
        assert name == budget_name("https://api.openai.com/v1", key)


def _queued_creates(videos: AsyncVideos, n: int, tag: str) -> list[asyncio.Task[None]]:
    async def one(i: int) -> None:
        await videos.create_and_wait(f"{tag} {i}", max_retries=8, wait_timeout=60)

    return [asyncio.ensure_future(one(i)) for i in range(n)]


async def _fleet_run(api: FakeVideosAPI, clients: list[AsyncVideos], jobs: int) -> int:
    tasks = [t for i, c in enumerate(clients) for t in _queued_creates(c, jobs, f"p{i}")]
    failed = 0
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, AsyncVideosError):
            failed += 1
        elif isinstance(result, BaseException):
            raise result
    return failed


@pytest.fixture
async def limited() -> AsyncIterator[FakeVideosAPI]:
    """The fake limited to 40 requests/s in a bucket of 20; jobs take 0.5 s."""
    async with FakeVideosAPI(
        rate_limit=RateLimit(requests=20, per=0.5),
        queue_seconds=0,
        run_seconds=0.5,
        poll_after_ms=250,
    ) as api:
        yield api


@pytest.mark.slow  # two real-time runs under a limit (about 6 s): CI runs -m slow
class TestAFleetSharesOneBudget:
    """Four clients on one key, as four processes would be, each creating 15 jobs at once."""

    async def test_sharing_a_store_keeps_the_fleet_under_the_limit(
        self, limited: FakeVideosAPI
    ) -> None:
        store = MemoryBudgetStore()
        clients = [limited.client() for _ in range(4)]
        for client in clients:
            client._share_rate_budget(store)
        with retry_waits_enabled():
            failed = await _fleet_run(limited, clients, 15)
        for client in clients:
            await client.close()
        assert failed == 0
        # A bucket of 20 is met a few times while the slow start finds its rate.
        assert limited.rate_limited <= 0.05 * len(limited.requests)
        # Slots are leased several at a time: far fewer exchanges than requests.
        assert store.exchanges < len(limited.requests) / 2

    async def test_separate_pacers_meet_the_limit_often(self, limited: FakeVideosAPI) -> None:
        """The counterpart, so the test above can fail: each client learns alone."""
        clients = [limited.client() for _ in range(4)]
        with retry_waits_enabled():
            await _fleet_run(limited, clients, 15)
        for client in clients:
            await client.close()
        assert limited.rate_limited > 0.1 * len(limited.requests)


class TestTheSharedPacer:
    async def test_a_callable_key_needs_a_budget_name(self, api: FakeVideosAPI) -> None:
        async def key() -> str:
            return api.api_key

        async with AsyncVideos(api_key=key, base_url=api.base_url) as videos:
            with pytest.raises(TypeError, match="needs a name"):
                videos._share_rate_budget(MemoryBudgetStore())
            videos._share_rate_budget(MemoryBudgetStore(), "team-a")
            assert isinstance(videos._pacer, SharedPacer)
            assert (await videos.create("a prompt")).id

    async def test_a_failing_store_lets_requests_go_and_says_so_once(
        self, api: FakeVideosAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Down:
            calls = 0

            async def exchange(self, name: str, report: Report, want: int) -> object:
                Down.calls += 1
                raise ConnectionError("the database is gone")

        async with api.client() as videos:
            videos._share_rate_budget(Down())  # type: ignore[arg-type]
            for _ in range(3):
                await videos.create("a prompt")
        assert Down.calls >= 1
        assert len(api.requests) == 3
        assert [r.message for r in caplog.records].count(
            "The shared rate budget's store failed (ConnectionError): requests go unpaced "
            "by the fleet until it answers"
        ) == 1


class TestThePostgresStore:
    """Eight pools, as eight processes would have, exchanging on one budget at once."""

    async def test_concurrent_exchanges_never_share_a_slot(self, postgres_url: str) -> None:
        from psycopg_pool import AsyncConnectionPool

        from asyncvideos.ledger._postgres_budget import PostgresBudgetStore

        pools = [
            AsyncConnectionPool(
                postgres_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
            )
            for _ in range(8)
        ]
        for pool in pools:
            await pool.open(wait=True)
        try:
            stores = [PostgresBudgetStore(pool) for pool in pools]
            await stores[0].create_table()
            await stores[0].exchange("fleet", Report(spacing=0.01, spacing_for=60), 0)

            async def lease(store: PostgresBudgetStore) -> int:
                total = 0
                for _ in range(10):
                    total += (await store.exchange("fleet", Report(), 2)).count
                return total

            counts = await asyncio.gather(*(lease(store) for store in stores))
            async with pools[0].connection() as connection:
                cursor = await connection.execute(
                    "SELECT issued, next_at - (SELECT min(next_at) FROM rate_budgets) "
                    "FROM rate_budgets WHERE name = 'fleet'"
                )
                issued, _ = await cursor.fetchone() or (0, 0)
            # Every slot granted is counted once: no two exchanges read the same row.
            assert sum(counts) == issued == 8 * 10 * 2
        finally:
            for pool in pools:
                await pool.close()

    async def test_a_fleet_on_postgres_stays_under_the_limit(
        self, postgres_url: str, limited: FakeVideosAPI
    ) -> None:
        from psycopg_pool import AsyncConnectionPool

        from asyncvideos.ledger._postgres_budget import PostgresBudgetStore

        async with AsyncConnectionPool(
            postgres_url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
        ) as pool:
            store = PostgresBudgetStore(pool)
            await store.create_table()
            clients = [limited.client() for _ in range(2)]
            for client in clients:
                client._share_rate_budget(store)
            with retry_waits_enabled():
                failed = await _fleet_run(limited, clients, 10)
            for client in clients:
                await client.close()
        assert failed == 0
        assert limited.rate_limited <= 0.05 * len(limited.requests)
        assert store.exchanges < len(limited.requests)


class TestDeadlines:
    """A waiter whose deadline comes before its turn leaves the queue (see _pacing)."""

    async def test_a_wait_past_its_deadline_gives_up(self) -> None:
        store = MemoryBudgetStore()
        pacer = SharedPacer(store, "b")
        loop = asyncio.get_running_loop()
        # Learn a slow spacing: one request per second for the fleet.
        store.rows["b"], _ = exchange(None, loop.time(), Report(spacing=1.0, spacing_for=60), 0)
        assert await pacer.before_request()  # the first slot, now
        assert not await pacer.before_request(loop.time() + 0.05)  # the next is 1 s away
        assert not await pacer.before_request(loop.time() - 1)  # already past
        assert not pacer._waiters


class TestA429:
    """A 429 pauses the client at once and reaches the fleet's row with the next exchange."""

    async def test_a_429_pauses_the_fleet_and_teaches_it_without_headers(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        import logging

        caplog.set_level(logging.INFO, "asyncvideos")
        store = MemoryBudgetStore()
        async with FakeVideosAPI(
            rate_limit=RateLimit(requests=2, per=0.1, headers=False), queue_seconds=0
        ) as api:
            clients = [api.client() for _ in range(2)]
            for client in clients:
                client._share_rate_budget(store)
            with retry_waits_enabled():
                # The cold spacing (20/s) is over this limit's burst of 2: 429s come.
                await asyncio.gather(
                    *(c.create(f"a boat {n}", max_retries=10) for n in range(8) for c in clients)
                )
            for client in clients:
                await client.close()
            assert api.rate_limited > 0
        (row,) = store.rows.values()
        assert not row.slow_start  # the first 429 ended the slow start ...
        assert row.estimated > 0  # ... and set the fleet's estimate
        assert row.pause_until > 0
        pauses = [r for r in caplog.records if "pausing every request of the fleet" in r.message]
        assert pauses
        assert len(pauses) <= api.rate_limited  # once per pause, not per 429 met during one

    async def test_a_spent_quota_does_not_pause(self, api: FakeVideosAPI) -> None:
        """A 429 that no wait helps (insufficient_quota) is the retry module's to raise."""
        from asyncvideos import QuotaExceededError
        from asyncvideos.testing import Fault

        store = MemoryBudgetStore()
        body = {"error": {"message": "quota", "type": "insufficient_quota", "code": None}}
        api.inject(Fault(status=429, body=body), times=5, method="POST")
        async with api.client() as videos:
            videos._share_rate_budget(store)
            with retry_waits_enabled(), pytest.raises(QuotaExceededError):
                await videos.create("a boat")
            assert isinstance(videos._pacer, SharedPacer)
            assert videos._pacer.paused_until == 0.0
