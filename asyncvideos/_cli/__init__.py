"""The ``asyncvideos`` command line: ``main(argv) -> exit code``.

``_args`` is the grammar (argparse), ``_commands`` one coroutine per command,
``_output`` tables and JSON lines, ``_progress`` live displays (rich, lazily),
``_serve`` and ``_demo`` the bundled fake API as a server and as a tour.
Errors end as one line on stderr and an exit code: 0 success, 1 an API or
network error, 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

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


class _Redacted:
    """A text stream that writes through to another, with the API key masked."""

    def __init__(self, stream: TextIO, secret: str | None) -> None:
        self._stream = stream
        self._secret = secret

    def redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    def write(self, text: str) -> int:
        return self._stream.write(self.redact(text))

    def flush(self) -> None:
        self._stream.flush()


@contextlib.contextmanager
def _debug_logging(enabled: bool, err: _Redacted) -> Iterator[None]:
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


def _run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .._errors import AsyncVideosError
    from ._commands import Context, UsageError, describe
    from ._output import Output
    from ._progress import console

    secret = args.api_key or os.environ.get("OPENAI_API_KEY")
    err = _Redacted(stderr, secret)
    table = args.table or (not args.json and _is_tty(stdout))
    progress = _is_tty(stderr) if args.progress is None else args.progress
    ctx = Context(
        args=args,
        out=Output(stdout, as_json=not table, terminal=table and _is_tty(stdout)),
        err=err,  # type: ignore[arg-type]
        console=console(stderr, force=bool(args.progress)) if progress else None,
    )

    def fail(code: int, message: str) -> int:
        if args.debug:
            err.write(traceback.format_exc())
        err.write(f"asyncvideos: error: {message}\n")
        err.flush()
        return code

    with _debug_logging(args.debug, err):
        try:
            return asyncio.run(_dispatch(ctx))
        except KeyboardInterrupt:
            err.write("asyncvideos: interrupted\n")
            return 130
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
    return options


async def _dispatch(ctx: Any) -> int:
    from .._videos import AsyncVideos
    from ._commands import COMMANDS, UsageError

    args = ctx.args
    if args.command == "serve":
        from ._serve import serve

        return await serve(ctx)
    if args.command == "demo":
        from ._demo import demo

        return await demo(ctx)
    if not (args.api_key or os.environ.get("OPENAI_API_KEY")):
        raise UsageError(
            "no API key: pass --api-key or set OPENAI_API_KEY "
            "(or try `asyncvideos demo`, which needs none)"
        )
    async with AsyncVideos(**client_options(args)) as client:
        return await COMMANDS[args.command](ctx, client)
