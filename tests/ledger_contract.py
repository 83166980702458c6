"""What every ledger backend must do: ``LedgerStore``'s contract, backend-free.

A backend's test module subclasses ``LedgerContract`` and provides one fixture,
``make_store``: an async factory ``(lease_seconds) -> LedgerStore``, opened,
every store it makes on the same (fresh, per test) database, each with its
own connection, so that races between them are real. The fixture closes them.
``tests/test_ledger_sqlite.py`` does it for SQLite; the PostgreSQL backend's
tests do the same against a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from asyncvideos.ledger import (
    Change,
    Intent,
    LedgerStore,
    VideoOwnedError,
    fingerprint,
)

MakeStore = Callable[[float], Awaitable[LedgerStore]]
LONG = 600.0
#: Short enough to expire within a test, long enough that a claim is observable.
SHORT = 0.2


def intent(key: str, prompt: str = "a paper boat", **fields: object) -> Intent:
    body = {"prompt": prompt, **fields}
    return Intent(
        key=key,
        operation="create",
        fingerprint=fingerprint("create", body),
        prompt=prompt,
        request={"path": "/videos", "json": body},
        model=fields.get("model"),  # type: ignore[arg-type]
        size=fields.get("size"),  # type: ignore[arg-type]
        seconds=fields.get("seconds"),  # type: ignore[arg-type]
    )


async def created(store: LedgerStore, key: str, video_id: str) -> None:
    """An entry ``key`` whose POST answered with ``video_id``."""
    await store.begin(intent(key), owner="maker")
    change = Change(state="created", video_id=video_id, status="queued", lease="release")
    assert await store.update(key, change, states=("intent",), owner="maker") is not None


class LedgerContract:
    """The behaviour both backends share (see ``asyncvideos/ledger/_store.py``)."""

    # -- begin ---------------------------------------------------------------

    async def test_begin_writes_an_intent_held_by_its_owner(self, make_store: MakeStore) -> None:
        """The first begin writes the entry in state intent, leased to its owner."""
        store = await make_store(LONG)
        entry, written = await store.begin(intent("k1", model="sora-2"), owner="a")
        assert written
        assert (entry.key, entry.state, entry.owner, entry.model) == ("k1", "intent", "a", "sora-2")
        assert entry.request == {
            "path": "/videos",
            "json": {"prompt": "a paper boat", "model": "sora-2"},
        }
        assert entry.lease_expires_at is not None
        # In seconds: pytest's oldest supported approx compares no timedelta.
        lease = (entry.lease_expires_at - entry.created_at).total_seconds()
        assert lease == pytest.approx(LONG, abs=5)
        assert await store.get("k1") == entry

    async def test_a_second_begin_returns_the_entry_and_writes_nothing(
        self, make_store: MakeStore
    ) -> None:
        """A key already there is not overwritten, whatever the new intent says."""
        store = await make_store(LONG)
        first, _ = await store.begin(intent("k1"), owner="a")
        again, written = await store.begin(intent("k1", prompt="another"), owner="b")
        assert not written
        assert again == first

    async def test_racing_begins_write_one_entry(self, make_store: MakeStore) -> None:
        """Many connections beginning one key at once: exactly one writes it."""
        stores = [await make_store(LONG) for _ in range(4)]
        results = await asyncio.gather(
            *(stores[n % 4].begin(intent("race"), owner=f"o{n}") for n in range(16))
        )
        winners = [entry.owner for entry, written in results if written]
        assert len(winners) == 1
        assert {entry.owner for entry, _ in results} == set(winners)

    async def test_a_rejected_key_may_be_sent_again(self, make_store: MakeStore) -> None:
        """begin over a rejected entry starts a clean intent (any fingerprint)."""
        store = await make_store(LONG)
        await store.begin(intent("k1"), owner="a")
        rejected = Change(state="rejected", error_code="invalid_value", lease="release")
        assert await store.update("k1", rejected, states=("intent",), owner="a") is not None
        entry, written = await store.begin(intent("k1", prompt="fixed"), owner="b")
        assert written
        assert (entry.state, entry.prompt, entry.owner, entry.error_code) == (
            "intent",
            "fixed",
            "b",
            None,
        )

    # -- claim ---------------------------------------------------------------

    async def test_a_live_lease_is_not_claimed(self, make_store: MakeStore) -> None:
        """Another owner's current lease holds; the owner itself renews it."""
        store = await make_store(LONG)
        first, _ = await store.begin(intent("k1"), owner="a")
        assert await store.claim("k1", owner="b", states=("intent",)) is None
        renewed = await store.claim("k1", owner="a", states=("intent",))
        assert renewed is not None
        assert renewed.owner == "a"
        assert renewed.lease_expires_at is not None
        assert first.lease_expires_at is not None
        assert renewed.lease_expires_at >= first.lease_expires_at

    async def test_an_expired_lease_is_claimed_once(self, make_store: MakeStore) -> None:
        """After expiry one claimant wins; the others see it held."""
        store = await make_store(SHORT)
        await store.begin(intent("k1"), owner="dead")
        await asyncio.sleep(SHORT * 1.5)
        others = [await make_store(LONG) for _ in range(3)]
        claims = await asyncio.gather(
            *(s.claim("k1", owner=f"o{n}", states=("intent",)) for n, s in enumerate(others))
        )
        assert len([c for c in claims if c is not None]) == 1

    async def test_a_dead_owner_is_replaced_at_once(self, make_store: MakeStore) -> None:
        """replacing= takes a live lease from an owner known to be dead."""
        store = await make_store(LONG)
        await store.begin(intent("k1"), owner="dead")
        assert await store.claim("k1", owner="b", states=("intent",), replacing="other") is None
        taken = await store.claim("k1", owner="b", states=("intent",), replacing="dead")
        assert taken is not None
        assert taken.owner == "b"

    async def test_a_claim_checks_the_state_and_writes_its_change(
        self, make_store: MakeStore
    ) -> None:
        """A claim in the wrong state is refused; its change is written with it."""
        store = await make_store(LONG)
        await created(store, "k1", "video_1")
        assert await store.claim("k1", owner="b", states=("intent",)) is None
        change = Change(target="/tmp/out.mp4", variant="video")
        taken = await store.claim("k1", owner="b", states=("created",), change=change)
        assert taken is not None
        assert (taken.owner, taken.target, taken.variant) == ("b", "/tmp/out.mp4", "video")

    # -- update --------------------------------------------------------------

    async def test_update_writes_only_when_its_conditions_hold(self, make_store: MakeStore) -> None:
        """Wrong state or wrong owner: None and nothing written."""
        store = await make_store(LONG)
        await store.begin(intent("k1"), owner="a")
        change = Change(state="created", video_id="video_1", lease="release")
        assert await store.update("k1", change, states=("ambiguous",)) is None
        assert await store.update("k1", change, states=("intent",), owner="b") is None
        entry = await store.get("k1")
        assert entry is not None
        assert (entry.state, entry.video_id, entry.owner) == ("intent", None, "a")
        done = await store.update("k1", change, states=("intent",), owner="a")
        assert done is not None
        assert (done.state, done.video_id, done.owner, done.lease_expires_at) == (
            "created",
            "video_1",
            None,
            None,
        )
        assert await store.update("nobody", change, states=("intent",)) is None

    async def test_update_writes_every_column(self, make_store: MakeStore) -> None:
        """Each Change field reads back as written; UNSET ones are left alone."""
        store = await make_store(LONG)
        await created(store, "k1", "video_1")
        entry = await store.get("k1")
        assert entry is not None
        later = entry.created_at + timedelta(days=1)
        change = Change(
            state="downloaded",
            status="completed",
            error_code="c",
            error_message="m",
            expires_at=later,
            candidates=("video_2", "video_3"),
            target="/x/y.mp4",
            variant="video",
            content_size=123,
            content_sha256="ab" * 32,
            downloaded_at=later,
        )
        done = await store.update("k1", change, states=("created",))
        assert done is not None
        for name, value in change.columns().items():
            assert getattr(done, name) == value, name
        assert done.video_id == "video_1"
        assert done.updated_at >= entry.updated_at
        assert await store.get("k1") == done

    async def test_record_writes_without_reading_back(self, make_store: MakeStore) -> None:
        """record(): update's conditions and rules, True or False for the outcome."""
        store = await make_store(LONG)
        await created(store, "k1", "video_1")
        assert await store.record("k1", Change(status="in_progress"), states=("created",))
        assert not await store.record("k1", Change(status="x"), states=("intent",))
        assert not await store.record("k1", Change(status="x"), states=("created",), owner="b")
        entry = await store.get("k1")
        assert entry is not None
        assert entry.status == "in_progress"
        await store.begin(intent("k2"), owner="b")
        with pytest.raises(VideoOwnedError):
            await store.record("k2", Change(video_id="video_1"), states=("intent",))

    async def test_a_lease_is_renewed_or_released_by_update(self, make_store: MakeStore) -> None:
        store = await make_store(LONG)
        first, _ = await store.begin(intent("k1"), owner="a")
        renewed = await store.update("k1", Change(lease="renew"), states=("intent",), owner="a")
        assert renewed is not None
        assert renewed.owner == "a"
        assert renewed.lease_expires_at is not None
        assert first.lease_expires_at is not None
        assert renewed.lease_expires_at >= first.lease_expires_at
        released = await store.update("k1", Change(lease="release"), states=("intent",))
        assert released is not None
        assert (released.owner, released.lease_expires_at) == (None, None)

    async def test_a_video_belongs_to_one_entry(self, make_store: MakeStore) -> None:
        """A second entry cannot take a job another one owns."""
        store = await make_store(LONG)
        await created(store, "k1", "video_1")
        await store.begin(intent("k2"), owner="b")
        with pytest.raises(VideoOwnedError) as caught:
            await store.update(
                "k2", Change(state="created", video_id="video_1"), states=("intent",)
            )
        assert (caught.value.video_id, caught.value.owner_key) == ("video_1", "k1")
        entry = await store.get("k2")
        assert entry is not None
        assert (entry.state, entry.video_id) == ("intent", None)

    # -- reads ---------------------------------------------------------------

    async def test_find_and_owned(self, make_store: MakeStore) -> None:
        store = await make_store(LONG)
        await created(store, "k1", "video_1")
        await created(store, "k2", "video_2")
        found = await store.find("video_2")
        assert found is not None
        assert found.key == "k2"
        assert await store.find("video_9") is None
        assert await store.owned(["video_1", "video_9", "video_2", "video_1"]) == {
            "video_1": "k1",
            "video_2": "k2",
        }
        assert await store.owned([]) == {}

    async def test_select_pages_in_order(self, make_store: MakeStore) -> None:
        """Pages follow (created_at, key) with no gap or repeat; filters apply."""
        store = await make_store(LONG)
        for n in range(7):
            await store.begin(intent(f"k{n}"), owner="a")
        await store.update("k3", Change(state="created", video_id="v3"), states=("intent",))
        seen = []
        after = None
        while page := await store.select(after=after, limit=3):
            seen.extend(entry.key for entry in page)
            after = page[-1]
        assert seen == [f"k{n}" for n in range(7)]
        assert [e.key for e in await store.select(states=("created",))] == ["k3"]
        assert await store.select(states=()) == []
        everything = await store.entries()
        assert [e.key for e in everything] == seen
        since = everything[4].created_at
        assert [e.key for e in await store.entries(since=since)] == seen[4:]
        assert [e.key for e in await store.entries(state=["created", "failed"])] == ["k3"]
        assert len(await store.entries(state="intent")) == 6

    async def test_entries_checks_its_arguments(self, make_store: MakeStore) -> None:
        store = await make_store(LONG)
        with pytest.raises(ValueError, match="state"):
            await store.entries(state="done")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="state"):
            await store.entries(state=3)  # type: ignore[arg-type]

    async def test_claim_next_takes_free_entries_once(self, make_store: MakeStore) -> None:
        """Two workers claiming together never get the same entry."""
        store = await make_store(LONG)
        for n in range(6):
            await created(store, f"k{n}", f"v{n}")
        a, b = await make_store(LONG), await make_store(LONG)
        first, second = await asyncio.gather(
            a.claim_next(owner="a", states=("created",), limit=4),
            b.claim_next(owner="b", states=("created",), limit=4),
        )
        keys = [e.key for e in first] + [e.key for e in second]
        assert sorted(keys) == [f"k{n}" for n in range(6)]
        assert await store.claim_next(owner="c", states=("created",)) == []

    # -- for callers -----------------------------------------------------------

    async def test_resolve_adopts_a_job_or_frees_the_key(self, make_store: MakeStore) -> None:
        store = await make_store(LONG)
        for key in ("k1", "k2"):
            await store.begin(intent(key), owner="a")
            change = Change(state="ambiguous", candidates=("v1", "v2"), lease="release")
            await store.update(key, change, states=("intent",))
        adopted = await store.resolve("k1", video_id="v2")
        assert (adopted.state, adopted.video_id, adopted.candidates) == ("created", "v2", ())
        freed = await store.resolve("k2", video_id=None)
        assert (freed.state, freed.video_id) == ("rejected", None)
        assert (await store.begin(intent("k2"), owner="b"))[1]
        with pytest.raises(ValueError, match="not ambiguous"):
            await store.resolve("k1", video_id=None)
        with pytest.raises(ValueError, match="no entry"):
            await store.resolve("k9", video_id=None)

    async def test_resolve_refuses_a_job_another_entry_owns(self, make_store: MakeStore) -> None:
        store = await make_store(LONG)
        await created(store, "k1", "v1")
        await store.begin(intent("k2"), owner="a")
        await store.update("k2", Change(state="ambiguous"), states=("intent",))
        with pytest.raises(ValueError, match="v1"):
            await store.resolve("k2", video_id="v1")

    async def test_record_status_moves_a_created_entry_only(self, make_store: MakeStore) -> None:
        store = await make_store(LONG)
        await created(store, "k1", "v1")
        done = await store.record_status(
            "v1", status="failed", state="failed", error_code="x", error_message="y"
        )
        assert done is not None
        assert (done.state, done.status, done.error_code) == ("failed", "failed", "x")
        assert await store.record_status("v1", status="completed", state="completed") is None
        assert await store.record_status("v9", status="completed", state="completed") is None
