"""``asyncvideos webhooks listen``: receive webhook events and print the verified ones.

A local endpoint for trying webhooks out (with ``asyncvideos serve --webhook-url``,
or a tunnel from the real API): every POST, on any path, is verified with the
secret; a verified event is printed on stdout (a JSON line, or a table row on a
terminal) and answered 200; anything else is answered 400 and reported in one
line on stderr. The grammar is here too, argparse only, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from .._webhooks import WebhookEvent
    from ._commands import Context

SECRET_ENV = "OPENAI_WEBHOOK_SECRET"


def add_parser(webhooks: argparse.ArgumentParser) -> None:
    """The ``webhooks`` command's own subcommands (``listen``)."""
    actions = webhooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    listen = actions.add_parser(
        "listen",
        help="Print verified webhook events; reject the rest.",
        description=(
            "Listen for webhook events on HOST:PORT (any path), verify each one with the "
            "signing secret, print the verified events on stdout (JSON lines, or a table "
            "on a terminal) and reject the others with 400 and one line on stderr."
        ),
    )
    listen.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    listen.add_argument("--port", type=_port, default=8000, help="default: 8000")
    listen.add_argument(
        "--secret",
        metavar="WHSEC",
        help=f"the signing secret, whsec_... (default: ${SECRET_ENV})",
    )
    listen.add_argument(
        "--tolerance",
        type=float,
        default=300.0,
        metavar="S",
        help="accept timestamps this many seconds from now, either way (default: 300)",
    )
    for flag, help in (
        ("--json", "print JSON lines (the default when stdout is not a terminal)"),
        ("--table", "print a table even when stdout is not a terminal"),
        ("--debug", "show tracebacks"),
    ):
        listen.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {text!r}")
    return value


async def run(ctx: Context) -> int:
    """Run ``webhooks ACTION``."""
    return await listen(ctx)


async def listen(ctx: Context) -> int:
    """Serve until interrupted."""
    from aiohttp import web

    from .._errors import WebhookVerificationError
    from .._webhooks import WebhookReceiver, read_body
    from ._commands import UsageError

    args = ctx.args
    secret = args.secret or os.environ.get(SECRET_ENV)
    if not secret:
        raise UsageError(f"no webhook secret: pass --secret or set {SECRET_ENV}")
    receiver = WebhookReceiver(secret, tolerance=args.tolerance)
    printer = _Printer(ctx)

    async def handle(request: web.Request) -> web.Response:
        body = await read_body(request)
        try:
            event = await receiver.feed(body, request.headers) if body is not None else None
        except WebhookVerificationError as error:
            reason = str(error)
        else:
            if event is not None:
                printer.event(event)
                return web.Response(status=200, text="ok\n")
            reason = "the body is too large"
        ctx.err.write(f"asyncvideos: rejected webhook from {request.remote or '?'}: {reason}\n")
        ctx.err.flush()
        return web.Response(status=400, text=f"{reason}\n")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{_plain(str(host))}:{port}/"
        ctx.err.write(f"# Listening for webhook events on {url} (any path); Ctrl-C stops.\n")
        ctx.err.flush()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0  # pragma: no cover - only Ctrl-C (or cancellation) ends the wait above


class _Printer:
    """Verified events on stdout: JSON lines, or table rows with a header."""

    def __init__(self, ctx: Context) -> None:
        self.stream = ctx.out.stream
        self.as_json = ctx.out.as_json
        self.header = False

    def event(self, event: WebhookEvent) -> None:
        from ._output import iso

        if self.as_json:
            data: dict[str, Any] = dict(event.raw)
            data["created_at"] = iso(event.created_at)
            self.stream.write(json.dumps(data, ensure_ascii=False) + "\n")
        else:
            if not self.header:
                self.stream.write(f"{'CREATED':<20}  {'TYPE':<16}  {'VIDEO':<40}  EVENT\n")
                self.header = True
            created = event.created_at.strftime("%Y-%m-%d %H:%M:%S")
            cells = (_plain(event.type), _plain(event.video_id or "-"), _plain(event.id))
            self.stream.write(f"{created:<20}  {cells[0]:<16}  {cells[1]:<40}  {cells[2]}\n")
        self.stream.flush()


def _plain(text: str) -> str:
    """Text from the network made safe for a terminal: no control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)
