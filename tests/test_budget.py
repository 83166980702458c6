"""One rate budget per key across a fleet (asyncvideos/_budget.py and its PostgreSQL store).

The rules are pure and tested on their own; then clients that stand for a fleet's
processes share one store through real HTTP against the fake's rate limit; then
the PostgreSQL store, where many connections exchange on one budget at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import attrs
import pytest

from asyncvideos import AsyncVideos, AsyncVideosError
from asyncvideos._budget import (
    COLD_SPACING,
    ESTIMATE_BLOCK,
    HEADROOM,
    MARGIN,
    MIN_BLOCK,
    MIN_MEASURE,
    PROBE_SLOTS,
    REFRESH,
    SLOW_START_BLOCK,
    SLOW_START_SECONDS,
    BudgetRow,
    MemoryBudgetStore,
    Report,
    SharedPacer,
    budget_name,
    exchange,
    refill_report,
)
from asyncvideos._pacing import Budget
from asyncvideos._retry import retry_waits_enabled
from asyncvideos.testing import FakeVideosAPI, RateLimit


def _headed(now: float = 0.0, rate: float = 10.0, level: float = 0.75) -> BudgetRow:
    """A budget that budget headers told: ``rate`` requests/s refill, the bucket at ``level``."""
    row, _ = exchange(None, now, Report(refill_spent=rate, refill_reset=1.0, level=level), 0)
    return row


class TestRules:
    """``exchange``: what the store runs under the row's lock."""

    def test_a_new_budget_starts_slow(self) -> None:
        row, grant = exchange(None, 100.0, Report(), 50)
        assert grant.spacing == COLD_SPACING
        # A slow start leases small blocks: what is leased when the first 429 comes
        # mostly meets 429s.
        assert grant.count == SLOW_START_BLOCK
        assert grant.delay == 0
        assert row.next_at == pytest.approx(100.0 + grant.count * COLD_SPACING)
        assert row.slow_start

    def test_successive_grants_never_overlap(self) -> None:
        row, first = exchange(_headed(), 0.0, Report(), 10)
        row, second = exchange(row, 0.0, Report(), 10)
        assert first.count == second.count == MIN_BLOCK
        assert second.delay == pytest.approx(first.delay + first.count * first.spacing)
        assert row.issued == 2 * MIN_BLOCK

    def test_headers_with_a_limit_tell_the_refill_rate(self) -> None:
        # 10 of 20 spent, back in 0.25 s: remaining is rounded down, so 9.5 came back.
        assert refill_report(Budget(remaining=10, reset=0.25, limit=20)) == (9.5, 0.25)
        assert refill_report(Budget(remaining=19, reset=0.05, limit=20)) == (1.0, 0.05)
        # A full bucket tells no rate, nor headers without a limit.
        assert refill_report(Budget(remaining=20, reset=0.0, limit=20)) is None
        assert refill_report(Budget(remaining=3, reset=1.0)) is None

    def test_the_fleet_sends_under_the_refill_rate_by_the_buckets_level(self) -> None:
        # At 3/4 full, the refill rate (where the bucket settles); at half, HEADROOM
        # under it; fuller, faster; emptier, slower.
        assert _headed(level=0.75).interval(0.0) == pytest.approx(1 / 10)
        assert _headed(level=0.5).interval(0.0) == pytest.approx(HEADROOM / 10)
        assert _headed(level=1.0).interval(0.0) < HEADROOM / 10 < _headed(level=0).interval(0.0)
        # The reports are averaged, weighted by the seconds they cover.
        row = _headed(rate=10.0)
        row, _ = exchange(row, 0.0, Report(refill_spent=20.0, refill_reset=1.0), 0)
        assert row.refill == pytest.approx(15.0)
        # A rate from headers holds 10 s without a newer report.
        assert row.headed(9.9)
        assert not row.headed(10.1)

    def test_a_big_change_of_spacing_rebuilds_the_schedule(self) -> None:
        row = _headed(rate=10.0)
        row, _ = exchange(row, 0.0, Report(), 4)
        generation = row.generation
        # A small change keeps the schedule ...
        row, _ = exchange(row, 0.0, Report(refill_spent=11.0, refill_reset=1.0), 0)
        assert row.generation == generation
        # ... a big one voids the reservations and starts a new one.
        row, grant = exchange(row, 0.0, Report(refill_spent=200.0, refill_reset=1.0), 1)
        assert row.generation == grant.generation == generation + 1

    def test_a_pause_holds_every_grant_until_it_ends(self) -> None:
        row, _ = exchange(_headed(), 0.0, Report(), 1)
        row, grant = exchange(row, 1.0, Report(pause=2.0, generation=row.generation), 3)
        assert grant.pause == pytest.approx(2.0)
        assert grant.count == 3
        assert grant.delay == pytest.approx(2.0)
        row, other = exchange(row, 1.5, Report(), 3)  # another process, later
        assert other.pause == pytest.approx(1.5)
        assert other.delay == pytest.approx(1.5 + 3 * grant.spacing)

    def test_a_429_on_an_older_schedule_is_an_echo(self) -> None:
        row = BudgetRow.new(0.0)
        row, _ = exchange(row, 0.0, Report(), 2)
        row, _ = exchange(row, 1.0, Report(pause=0.1, estimate=True, generation=0), 2)
        assert row.generation == row.event_generation == 1
        estimated = row.estimated
        # Another process's 429 on a slot leased before the event: no second cut.
        row, _ = exchange(row, 1.01, Report(pause=0.1, estimate=True, generation=0), 2)
        assert row.estimated == estimated
        assert row.generation == 1
        # One on the new schedule is a new event.
        row, _ = exchange(row, 1.2, Report(pause=0.1, estimate=True, generation=1), 2)
        assert row.generation == 2

    def test_the_slow_start_doubles_the_rate_until_the_first_429(self) -> None:
        row = BudgetRow.new(0.0)
        assert row.estimated_rate(0.0) == pytest.approx(1 / COLD_SPACING)
        row, _ = exchange(row, 0.0, Report(), 1000)
        row, _ = exchange(row, 0.0, Report(), 1000)
        # The rate rises with the slots used: ln 2 per slot at full use.
        assert row.next_at == pytest.approx(4 * COLD_SPACING)
        rate = row.estimated_rate(row.next_at)
        assert rate == pytest.approx(1 / COLD_SPACING + math.log(2) * 4)
        row, grant = exchange(row, row.next_at, Report(pause=0.05, estimate=True, generation=0), 1)
        assert not row.slow_start
        # The first event halves the rate, and remembers the one that failed.
        assert row.estimated == pytest.approx(rate / 2)
        assert row.ceiling == pytest.approx(rate)
        assert grant.delay == pytest.approx(0.05)

    def test_an_event_measures_the_rate_that_got_through(self) -> None:
        row = BudgetRow.new(0.0)
        row, _ = exchange(row, 0.0, Report(pause=0.01, estimate=True, generation=0), 0)
        # 40 slots used in the 2 s to the next event.
        for i in range(10):
            row, _ = exchange(row, 0.2 * i, Report(), 4)
        got = row.due(2.0) - row.mark_issued - 1
        assert got >= MIN_MEASURE
        row, _ = exchange(row, 2.0, Report(pause=0.01, estimate=True, generation=1), 0)
        assert row.measured
        assert row.ceiling == pytest.approx(got / 2.0)
        assert row.estimated == pytest.approx(got / 2.0 / MARGIN)

    def test_after_an_event_the_rate_recovers_then_probes_with_use(self) -> None:
        row = BudgetRow(
            next_at=0.0, estimated=5.0, ceiling=20.0, measured=True, slow_start=False, mark_at=0.0
        )
        # Back towards MARGIN under the ceiling within a few dozen slots (and the
        # probe's rise with them) ...
        recovered = attrs.evolve(row, issued=200, last_spacing=0.05)
        expected = 20 / MARGIN * MARGIN ** (200 / PROBE_SLOTS)
        assert recovered.estimated_rate(10.0) == pytest.approx(expected, rel=1e-3)
        # ... not within a handful.
        assert attrs.evolve(row, issued=4, last_spacing=0.05).estimated_rate(10.0) < 10
        # ... then MARGIN more every PROBE_SLOTS slots used, not with time alone.
        probed = attrs.evolve(row, estimated=20 / MARGIN, issued=PROBE_SLOTS, last_spacing=0.05)
        assert probed.estimated_rate(100.0) == pytest.approx(20.0)
        idle = attrs.evolve(probed, issued=0)
        assert idle.estimated_rate(100.0) == pytest.approx(20 / MARGIN)

    def test_a_slow_start_lease_is_a_short_time_of_the_rate(self) -> None:
        # At a low rate, SLOW_START_BLOCK slots; at a high one, SLOW_START_SECONDS'
        # worth (an exchange per two requests would be the store's whole load), and
        # never more than an estimate's block.
        for rate, expected in ((40.0, SLOW_START_BLOCK), (400.0, 4), (5000.0, ESTIMATE_BLOCK)):
            row = attrs.evolve(BudgetRow.new(0.0), estimated=rate)
            _, grant = exchange(row, 0.0, Report(), 100)
            assert grant.spacing == pytest.approx(1 / rate)
            assert grant.count == expected
            assert (
                grant.count * grant.spacing
                <= max(SLOW_START_SECONDS, SLOW_START_BLOCK * grant.spacing) + 1e-9
            )

    def test_with_nothing_in_force_requests_go_free(self) -> None:
        row = BudgetRow(next_at=0.0)  # learned long ago: nothing holds now
        row, grant = exchange(row, 50.0, Report(), 10)
        assert grant.free_for == REFRESH
        assert grant.count == 0

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

    async def test_a_failed_exchange_lets_go_of_the_row(self, postgres_url: str) -> None:
        from psycopg_pool import AsyncConnectionPool

        from asyncvideos.ledger._postgres_budget import PostgresBudgetStore

        async with AsyncConnectionPool(
            postgres_url, min_size=2, max_size=2, open=False, kwargs={"autocommit": True}
        ) as pool:
            store = PostgresBudgetStore(pool)
            await store.create_table()
            await store.exchange("broken", Report(), 1)
            async with pool.connection() as connection:
                # A row the rules cannot read (an infinite idle time): they raise
                # once the row is locked.
                await connection.execute(
                    "UPDATE rate_budgets SET next_at = '-Infinity' WHERE name = 'broken'"
                )
            with pytest.raises(OverflowError):
                await store.exchange("broken", Report(), 1)
            async with pool.connection() as connection:
                # Rolled back at once: the row is free, and nothing was written.
                await connection.execute("SET lock_timeout = '1s'")
                async with connection.transaction():
                    cursor = await connection.execute(
                        "SELECT next_at FROM rate_budgets WHERE name = 'broken' FOR UPDATE"
                    )
                    assert await cursor.fetchone() == (-math.inf,)
                assert connection.info.transaction_status.name == "IDLE"

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
