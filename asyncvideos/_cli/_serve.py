"""``asyncvideos serve``: the bundled fake API as a standalone local server.

The set-up lines (the URL and key to export) go to stdout; the request log to
stderr, one line per request, with each request's headers (credentials masked)
and body under ``--debug``: what a client under test really sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from ..testing import DEFAULT_API_KEY, FakeVideosAPI
from ._commands import Context
from ._terminal import Redacted


@contextlib.contextmanager
def request_log(err: Redacted, *, debug: bool) -> Iterator[None]:
    """The fake's request log (``asyncvideos.testing``) on ``err`` while the block runs."""
    log = logging.getLogger("asyncvideos.testing")
    details = logging.getLogger("asyncvideos.testing.details")
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    previous = log.level, log.propagate, details.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    details.setLevel(logging.DEBUG if debug else logging.INFO)  # INFO: none of its lines
    log.propagate = False  # --debug's own handler on "asyncvideos" would repeat each line
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(previous[0])
        log.propagate = previous[1]
        details.setLevel(previous[2])


async def serve(ctx: Context) -> int:
    """Serve ``FakeVideosAPI`` seeded with ``--jobs`` jobs until interrupted."""
    args = ctx.args
    with request_log(ctx.err, debug=args.debug):
        return await _serve(ctx)


async def _serve(ctx: Context) -> int:
    args = ctx.args
    # The fake's own key, never the caller's OPENAI_API_KEY: it is printed below.
    key = args.server_key or DEFAULT_API_KEY
    api = FakeVideosAPI(
        api_key=key,
        host=args.host,
        port=args.port,
        speed=args.speed,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        rate_limit=args.rate_limit,
    )
    async with api:
        api.seed(args.jobs)
        out = ctx.out.stream
        limit = args.rate_limit
        limited = f", limited to {limit.requests} requests per {limit.per:g} s" if limit else ""
        detail = "with headers and bodies" if args.debug else "(--debug adds headers and bodies)"
        out.write(
            f"# Fake Videos API on {api.base_url} with {args.jobs} jobs{limited}; "
            "Ctrl-C stops it.\n"
            f"# Requests are logged on stderr {detail}.\n"
            "# Point the client or the command line at it with:\n"
            f"export OPENAI_BASE_URL={api.base_url} OPENAI_API_KEY={key}\n"
        )
        if api.webhook_secret is not None and not args.webhook_secret:
            # A secret made for this run (never one the caller gave): shown, as it is needed.
            out.write(
                f"# Webhook events go to {args.webhook_url}, signed with:\n"
                f"export OPENAI_WEBHOOK_SECRET={api.webhook_secret}\n"
            )
        elif api.webhook_secret is not None:
            out.write(f"# Webhook events go to {args.webhook_url}, signed with your secret.\n")
        out.flush()
        await asyncio.Event().wait()
    return 0  # pragma: no cover - only Ctrl-C ends the wait above
