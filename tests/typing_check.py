"""Exercises the public API for mypy --strict; checked, never run (not collected by pytest)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncGenerator
from pathlib import Path

import aiohttp

import asyncvideos
from asyncvideos import (
    AsyncVideos,
    Character,
    DeletedVideo,
    RawResponse,
    RetryDetails,
    Video,
    VideoPage,
    WaitResult,
)
from asyncvideos.ledger import (
    AmbiguousCreateError,
    ContentExpiredError,
    Entry,
    LedgerStore,
    PostgresLedger,
    SQLiteLedger,
    State,
    open_ledger,
)
from asyncvideos.testing import FakeVideosAPI, Fault, ManualClock
from asyncvideos.webhooks import WebhookEvent, WebhookReceiver


async def public_api() -> None:
    async with FakeVideosAPI(clock=ManualClock()) as api:
        api.seed(3)
        api.inject(Fault(status=500), times=1)
        videos: AsyncVideos = api.client(max_retries=1)
        async with videos:
            video: Video = await videos.retrieve("video_1", timeout=5.0)
            again: Video = await videos.retrieve(video, timeout=aiohttp.ClientTimeout(total=3))
            async for item in videos.list(limit=5, order="desc"):
                item_id: str = item.id
            async for item in videos.list(all=True, after=again.id):
                finished: bool = item.is_finished
            page: VideoPage = await videos.list_page(limit=100, order="asc", after=None)
            async for each in videos.pages(after=page.last_id):
                more: bool = each.has_more
            created: Video = await videos.create("a cat", seconds=4, size="1280x720")
            await videos.create("a cat", input_reference=Path("ref.png"))
            await videos.create("a cat", input_reference={"image_url": "https://x/y.png"})
            await videos.remix(created, "a dog")
            await videos.edit(Path("clip.mp4"), "brighter")
            await videos.extend(created, "longer", 8)
            character: Character = await videos.create_character("Mo", Path("mo.mp4"))
            await videos.retrieve_character("char_1")
            deleted: DeletedVideo = await videos.delete(created)
            data: bytes = await videos.download_content(created, variant="thumbnail")
            async for chunk in videos.iter_content(created, chunk_size=1 << 20):
                size: int = len(chunk)
            path: Path = await videos.download(created, "out/v.mp4", overwrite=True)
            final: Video = await videos.wait(created, wait_timeout=60, poll_interval=2.0)
            final = await videos.create_and_wait("a cat", wait_timeout=600)
            raw: RawResponse[Video] = await videos.with_raw_response.retrieve("video_1")
            request_id: str | None = raw.request_id
            parsed: Video = raw.parse()
            await videos.create("a cat", extra_body={"custom_llm_provider": "vertex"})
            async with videos.open_content(created, variant="thumbnail") as body:
                length: int | None = body.content_length
                async for piece in body:
                    size = len(piece)
            async for result in videos.wait_many([created, "video_2"], concurrency=8):
                outcome: WaitResult = result
                if result.ok:
                    status: str | None = result.video.status
                else:
                    failure: Exception = result.error
            final = await videos.wait(created, wait_timeout=60, request_timeout=5.0)
    del item_id, finished, more, character, deleted, data, size, path, final, outcome, failure
    del status, request_id, parsed, length
    seen: list[RetryDetails] = []
    paced = AsyncVideos(
        api_key="sk-x",
        max_requests_per_second=5.0,
        pacing=True,
        on_retry=seen.append,
        max_response_bytes=1 << 20,
        webhooks=WebhookReceiver(FakeVideosAPI.generate_webhook_secret()),
        webhook_fallback_interval=30.0,
        max_download_bytes=1 << 30,
        max_empty_pages=1000,
    )
    await paced.close()
    receiver = WebhookReceiver(FakeVideosAPI.generate_webhook_secret(), remember_events=100)
    events: AsyncGenerator[WebhookEvent, None] = receiver.events(max_queued=100)
    await events.aclose()
    await ledgered()
    fleet = PostgresLedger("postgresql://worker@db/jobs", lease_seconds=30.0)
    async with fleet:
        purged: int = await fleet.purge(older_than=datetime.timedelta(days=30))
        unfinished: list[State] = ["created"]
        claimed: list[Entry] = await fleet.claim_next(owner="w1", states=unfinished)
    del purged, claimed
    print(asyncvideos.__version__)


async def ledgered() -> None:
    async with FakeVideosAPI(idempotency_keys=False, idempotency_ttl=None) as api:
        ledger: LedgerStore = SQLiteLedger(
            Path("jobs.db"), lease_seconds=30.0, synchronous="normal"
        )
        other: LedgerStore = open_ledger("sqlite:///other.db")

        def created(entry: Entry) -> None:
            print(entry.key, entry.video_id)

        async with api.client(
            ledger=ledger, reconcile="adopt", on_created=created, clock_skew=60.0
        ) as videos:
            try:
                video: Video = await videos.create_and_wait("a cat", idempotency_key="order-1")
            except AmbiguousCreateError as error:
                key: str = error.key
                candidates: tuple[str, ...] = error.candidates
                assert videos.ledger is not None
                settled: Entry = await videos.ledger.resolve(key, video_id=candidates[0])
                del settled
            else:
                try:
                    await videos.download(video, Path("out.mp4"))
                except ContentExpiredError as expired:
                    print(expired.video_id, expired.expires_at)
            async for result in videos.resume(download_dir="videos", wait_timeout=60.0):
                ledger_key: str | None = result.key
                del ledger_key
            state: State = "created"
            entries: list[Entry] = await ledger.entries(state=state)
            del entries
        await other.close()
        async with AsyncVideos(api_key="sk-x", ledger="sqlite:///jobs.db") as by_url:
            assert by_url.ledger is not None


if __name__ == "__main__":
    asyncio.run(public_api())
