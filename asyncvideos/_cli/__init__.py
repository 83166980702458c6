"""The ``asyncvideos`` command line: ``main(argv) -> exit code``.

``_args`` is the grammar (argparse), ``_commands`` one coroutine per command,
``_output`` tables and JSON lines, ``_progress`` live displays (rich, lazily),
``_serve`` and ``_demo`` the bundled fake API as a server and as a tour.
Errors end as one line on stderr and an exit code: 0 success, 1 an API or
network error (or any other failure: never a raw traceback), 2 a usage error,
130 interrupted, 143 and 129 ended by SIGTERM and SIGHUP (which, like Ctrl-C,
cancel the command, so a download leaves no partial file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ._terminal import Redacted

__all__ = ["main"]

logger = logging.getLogger("asyncvideos")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from ._args import parse

    try:
        args = parse(argv)
    except SystemExit as exit:  # --help, --version, or a usage error argparse reported
        return exit.code if isinstance(exit.code, int) else 2
    return _run(args, sys.stdout, sys.stderr)


@contextlib.contextmanager
def _debug_logging(enabled: bool, err: Redacted) -> Iterator[None]:
    """With ``--debug``, the library's log (retries, resumes, requests) on stderr."""
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _secrets(args: argparse.Namespace) -> list[str | None]:
    """What stderr must never show: the key, and the values of credential-like headers."""
    from ._args import is_credential

    given = [*args.headers, *args.queries]
    found = [value for name, value in given if is_credential(name)]
    return [*found, args.api_key, os.environ.get("OPENAI_API_KEY")]


def _run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .._errors import AsyncVideosError
    from ._commands import Context, UsageError, describe
    from ._output import Output
    from ._progress import console
    from ._terminal import Redacted

    err = Redacted(stderr, _secrets(args))
    tty = _is_tty(stdout)
    table = args.table or (not args.json and tty)
    progress = _is_tty(stderr) if args.progress is None else args.progress
    ctx = Context(
        args=args,
        out=Output(stdout, as_json=not table, terminal=table and tty, tty=tty),
        err=err,
        console=console(stderr, force=bool(args.progress)) if progress else None,
    )
    ended_by: list[int] = []  # the signal (SIGTERM, SIGHUP) that cancelled the command

    def fail(code: int, message: str) -> int:
        if args.debug:
            err.write(traceback.format_exc())
        err.write(f"asyncvideos: error: {message}\n")
        err.flush()
        return code

    with _debug_logging(args.debug, err):
        try:
            return asyncio.run(_dispatch(ctx, ended_by))
        except KeyboardInterrupt:
            err.write("asyncvideos: interrupted\n")
            return 130
        except asyncio.CancelledError:
            if not ended_by:
                return fail(1, "cancelled")
            if ended_by[0] == signal.SIGINT:
                err.write("asyncvideos: interrupted\n")
                return 130
            err.write(f"asyncvideos: {signal.Signals(ended_by[0]).name}: stopped\n")
            return 128 + ended_by[0]
        except (UsageError, ValueError, TypeError, FileExistsError) as error:
            return fail(2, str(error))
        except AsyncVideosError as error:
            return fail(1, describe(error))
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as Unix tools do.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
            return 0
        except OSError as error:
            return fail(1, str(error))
        except Exception as error:  # a bug or a server we did not foresee: still one line
            return fail(1, f"{type(error).__name__}: {error}" if str(error) else repr(error))
        finally:
            # After the error line: what the user may do next (wait for a job again).
            for note in ctx.notes:
                err.write(note + "\n")
            err.flush()


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """``AsyncVideos`` arguments from the global options; None means the environment."""
    options: dict[str, Any] = {
        "api_key": args.api_key,
        "base_url": args.base_url,
        "organization": args.organization,
        "project": args.project,
    }
    if args.request_timeout is not None:
        options["timeout"] = args.request_timeout
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    if args.headers:
        options["default_headers"] = dict(args.headers)
    if args.queries:
        options["default_query"] = dict(args.queries)
    from ._jobs import ledger_url

    ledger = ledger_url(args)
    if ledger is not None and args.command in ("create", "remix", "resume"):
        options["ledger"] = ledger
        if args.command == "resume":
            options["reconcile"] = args.reconcile
    return options


def _log_extras(args: argparse.Namespace) -> None:
    """With ``--debug``: the headers and query parameters added to every request."""
    from ._args import is_credential

    for kind, pairs in (("header", args.headers), ("query parameter", args.queries)):
        for name, value in pairs:
            shown = "***" if is_credential(name) else value
            logger.debug("Sending %s %s: %s with every request", kind, name, shown)


@contextlib.contextmanager
def _on_signals(ended_by: list[int]) -> Iterator[None]:
    """While the block runs, SIGINT (Ctrl-C), SIGTERM and SIGHUP cancel the command.

    So its cleanup runs inside the loop (a download removes its partial file,
    connections are closed before the loop ends, on every Python). The
    handlers in place before are put back after.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop(signum: int) -> None:
        ended_by.append(signum)
        task.cancel()

    installed: dict[int, Any] = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None:  # pragma: no cover - Windows has no SIGHUP
            continue
        previous = signal.getsignal(signum)
        # An ignored signal stays ignored (`nohup asyncvideos download ...`).
        if previous is signal.SIG_IGN:
            continue
        # Not on Windows, nor off the main thread: the default action applies there.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop, signum)
            installed[signum] = previous
    try:
        yield
    finally:
        for signum, previous in installed.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous or signal.SIG_DFL)  # None: set outside Python


async def _dispatch(ctx: Any, ended_by: list[int]) -> int:
    with _on_signals(ended_by):
        return await _command(ctx)


async def _command(ctx: Any) -> int:
    from .._videos import AsyncVideos
    from ._commands import COMMANDS, UsageError

    args = ctx.args
    if args.command == "serve":
        from ._serve import serve

        return await serve(ctx)
    if args.command == "demo":
        from ._demo import demo

        return await demo(ctx)
    if args.command == "webhooks":
        from ._webhooks import run

        return await run(ctx)
    if args.command == "jobs":  # the ledger alone: no key needed
        from ._jobs import jobs

        return await jobs(ctx)
    if args.command == "purge":
        from ._jobs import purge

        return await purge(ctx)
    if not (args.api_key or os.environ.get("OPENAI_API_KEY")):
        raise UsageError(
            "no API key: pass --api-key or set OPENAI_API_KEY "
            "(or try `asyncvideos demo`, which needs none)"
        )
    _log_extras(args)
    async with AsyncVideos(**client_options(args)) as client:
        return await COMMANDS[args.command](ctx, client)
