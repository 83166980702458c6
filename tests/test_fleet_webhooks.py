"""Webhooks that reach the replica that waits, through a PostgreSQL ledger.

Two replicas, each its own ``WebhookReceiver``, ``PostgresLedger`` and client, on
one database; the fake sends every event to replica A's URL (as a balancer that
picked A would), while replica B waits on the job. B's fallback poll is a minute
away, so its wait ends early only if A's event reached it through the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import pytest
from ledger_contract import created
from test_webhooks import serving

from asyncvideos import Video
from asyncvideos.ledger._postgres import PostgresLedger
from asyncvideos.ledger._postgres_events import EVENTS_CHANNEL, EventRelay, decode, encode
from asyncvideos.testing import FakeVideosAPI
from asyncvideos.webhooks import WebhookEvent, WebhookReceiver


@attrs.define
class Fleet:
    api: FakeVideosAPI
    receivers: list[WebhookReceiver]
    ledgers: list[PostgresLedger]
    relays: list[EventRelay]


@asynccontextmanager
async def fleet(url: str, replicas: int = 2) -> AsyncIterator[Fleet]:
    secret = FakeVideosAPI.generate_webhook_secret()
    async with AsyncExitStack() as stack:
        receivers = [WebhookReceiver(secret) for _ in range(replicas)]
        hook = await stack.enter_async_context(serving(receivers[0]))
        ledgers = [
            await stack.enter_async_context(PostgresLedger(url, max_connections=2))
            for _ in range(replicas)
        ]
        relays = [
            await stack.enter_async_context(ledger.share_webhooks(receiver))
            for ledger, receiver in zip(ledgers, receivers, strict=True)
        ]
        api = await stack.enter_async_context(
            FakeVideosAPI(webhook_url=hook, webhook_secret=secret, speed=20.0, poll_after_ms=50)
        )
        yield Fleet(api, receivers, ledgers, relays)


class TestEventsReachEveryReplica:
    async def test_a_wait_on_another_replica_ends_on_the_event(self, postgres_url: str) -> None:
        async with fleet(postgres_url) as f:
            assert all(relay.listening for relay in f.relays)
            async with f.api.client(webhooks=f.receivers[1]) as replica_b:
                job = await replica_b.create("a paper boat")
                f.api.clear_requests()
                # The fallback poll is 60 s away: only the event can end this wait.
                done = await replica_b.wait(Video(id=job.id, status="in_progress"), wait_timeout=15)
            assert done.status == "completed"
            # One retrieve after the event (the server agreeing), no polling before.
            assert len(f.api.requests) <= 2
            assert f.relays[1].heard >= 1

    async def test_a_final_event_is_recorded_in_the_ledger(self, postgres_url: str) -> None:
        async with fleet(postgres_url) as f:
            async with f.api.client() as client:
                job = await client.create("a paper boat")
            await created(f.ledgers[0], "order-7", job.id)
            event = await asyncio.wait_for(anext(f.receivers[1].events()), 15)
            assert (event.type, event.video_id) == ("video.completed", job.id)
            await asyncio.sleep(0)  # the receiving replica records before it notifies
            entry = await f.ledgers[1].get("order-7")
            assert entry is not None
            assert (entry.state, entry.status) == ("completed", "completed")

    async def test_a_replica_delivers_each_event_once(self, postgres_url: str) -> None:
        """Its own event comes back through the database: a duplicate, dropped."""
        async with fleet(postgres_url, replicas=1) as f:
            events = f.receivers[0].events()
            async with f.api.client() as client:
                await client.create("a paper boat")
            first = await asyncio.wait_for(anext(events), 15)
            for _ in range(100):
                if f.relays[0].heard:
                    break
                await asyncio.sleep(0.02)
            assert f.relays[0].heard == 1
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(anext(events), 0.3)
            assert first.type == "video.completed"

    async def test_a_database_that_fails_is_logged_not_raised(
        self, postgres_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with fleet(postgres_url, replicas=1) as f:
            await f.ledgers[0]._pool.close()  # type: ignore[union-attr]
            event = WebhookEvent("evt_1", "video.completed", _when(), "video_1")
            await f.relays[0].publish(event)
        assert any("Could not share webhook event evt_1" in r.message for r in caplog.records)


def _when() -> object:
    from datetime import datetime, timezone

    return datetime(2026, 1, 1, tzinfo=timezone.utc)


class TestNotifications:
    def test_an_event_round_trips(self) -> None:
        event = WebhookEvent("evt_1", "video.completed", _when(), "video_1")  # type: ignore[arg-type]
        payload = encode(event)
        assert payload is not None
        back = decode(payload)
        assert back == event
        assert back is not None
        assert back.raw["data"] == {"id": "video_1"}

    @pytest.mark.parametrize(
        "payload",
        [
            "probe:1234",
            "[]",
            '{"id": "", "type": "x", "created_at": 1}',
            '{"id": "e", "type": "x", "created_at": true}',
            '{"id": "e", "type": "x", "created_at": 1e400}',
            '{"id": "e", "type": "x", "created_at": 1, "video_id": 5}',
            '{"id": "e", "type": "x", "created_at": 1e300}',
        ],
    )
    def test_anything_else_is_ignored(self, payload: str) -> None:
        assert decode(payload) is None

    def test_an_event_too_long_to_notify_is_not_sent(self) -> None:
        event = WebhookEvent("e" * 8000, "video.completed", _when(), "v")  # type: ignore[arg-type]
        assert encode(event) is None


class TestWithoutListen:
    async def test_a_listen_that_hears_nothing_is_said_once(
        self, postgres_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The probe after LISTEN never comes back (as through a transaction pooler)."""
        import asyncvideos.ledger._postgres_events as events

        # The probe goes to a channel nobody listens on: what a pooler does to LISTEN.
        monkeypatch.setattr(events, "PROBE_SECONDS", 0.3)
        original = PostgresLedger._rows

        async def elsewhere(
            self: PostgresLedger, statement: str, parameters: object = None
        ) -> object:
            if isinstance(parameters, tuple) and str(parameters[1]).startswith("probe:"):
                parameters = ("nobody_listens", parameters[1])
            return await original(self, statement, parameters)

        monkeypatch.setattr(PostgresLedger, "_rows", elsewhere)
        caplog.set_level(logging.WARNING, "asyncvideos")
        async with (
            PostgresLedger(postgres_url) as ledger,
            ledger.share_webhooks(
                WebhookReceiver(FakeVideosAPI.generate_webhook_secret())
            ) as relay,
        ):
            assert not relay.listening
        warnings = [r for r in caplog.records if "LISTEN does not reach this process" in r.message]
        assert len(warnings) == 1
        assert EVENTS_CHANNEL == "asyncvideos_events"


@pytest.fixture
def bouncer_url(postgres_server: Any, postgres_url: str) -> Iterator[str]:
    """``postgres_url`` through a PgBouncer in transaction mode."""
    from postgres_server import PGBOUNCER_HINT, PgBouncer, find_pgbouncer, required

    if find_pgbouncer() is None:
        message = f"PgBouncer is not installed ({PGBOUNCER_HINT})"
        if required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with PgBouncer(postgres_server) as bouncer:
        yield bouncer.url(postgres_url.rsplit("/", 1)[1])


class TestBehindPgBouncer:
    """A pooler in transaction mode: statements work, LISTEN does not, polling holds."""

    async def test_the_ledger_works_through_it(self, bouncer_url: str) -> None:
        async with PostgresLedger(bouncer_url) as ledger:
            # More than psycopg's prepare threshold (5): no prepared statement is used.
            for n in range(8):
                await created(ledger, f"k{n}", f"v{n}")
            claimed = await ledger.claim_next(owner="w", states=("created",))
            assert len(claimed) == 8
            assert ledger.rate_budgets is not None
            from asyncvideos._budget import Report

            first = await ledger.rate_budgets.exchange("b", Report(), 3)
            second = await ledger.rate_budgets.exchange("b", Report(), 3)
            # A new budget's slow-start blocks, one after the other.
            assert first.count == second.count == 2
            assert second.delay > first.delay

    async def test_listen_is_found_not_to_work_and_waits_poll(
        self, bouncer_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, "asyncvideos")
        secret = FakeVideosAPI.generate_webhook_secret()
        waiting, receiving = WebhookReceiver(secret), WebhookReceiver(secret)
        async with AsyncExitStack() as stack:
            hook = await stack.enter_async_context(serving(receiving))
            ledgers = [
                await stack.enter_async_context(PostgresLedger(bouncer_url)) for _ in range(2)
            ]
            relays = [
                await stack.enter_async_context(ledger.share_webhooks(receiver))
                for ledger, receiver in zip(ledgers, (waiting, receiving), strict=True)
            ]
            assert not any(relay.listening for relay in relays)
            api = await stack.enter_async_context(
                FakeVideosAPI(webhook_url=hook, webhook_secret=secret, speed=20.0)
            )
            async with api.client(webhooks=waiting, webhook_fallback_interval=0.5) as client:
                job = await client.create("a paper boat")
                done = await client.wait(Video(id=job.id, status="in_progress"), wait_timeout=15)
            assert done.status == "completed"
        warnings = [r for r in caplog.records if "LISTEN does not reach" in r.message]
        assert len(warnings) == 2  # once per relay


class TestALostConnection:
    async def test_the_listener_reconnects_and_hears_again(
        self, postgres_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import asyncvideos.ledger._postgres_events as events

        monkeypatch.setattr(events, "_RECONNECT_FIRST", 0.05)
        caplog.set_level(logging.WARNING, "asyncvideos")
        async with fleet(postgres_url) as f:
            # The database drops replica B's listening connection.
            rows = await f.ledgers[0]._rows(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
            )
            assert rows
            for _ in range(200):
                if any("lost the database" in r.message for r in caplog.records) and all(
                    relay.listening for relay in f.relays
                ):
                    break
                await asyncio.sleep(0.02)
            assert all(relay.listening for relay in f.relays)
            async with f.api.client(webhooks=f.receivers[1]) as replica_b:
                job = await replica_b.create("a paper boat")
                done = await replica_b.wait(Video(id=job.id, status="in_progress"), wait_timeout=15)
            assert done.status == "completed"
