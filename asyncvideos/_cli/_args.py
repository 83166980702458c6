"""The command line's grammar: argparse only, so ``--help`` and usage errors stay fast.

Global options are accepted before or after the command name: the top parser
holds their defaults, and every command's parser repeats them with
``default=SUPPRESS``, so a value typed after the command overrides one typed
before it, and one not typed after it leaves the earlier value alone
(``--header`` and ``--query`` add up instead). ``serve`` takes only its own
options, ``demo`` only the output ones: a client option given to either is a
usage error rather than silently ignored.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ._jobs import add_ledger_option
from ._jobs import add_parsers as add_ledger_parsers

VARIANT_SUFFIXES = {"video": ".mp4", "thumbnail": ".webp", "spritesheet": ".jpg"}

_EPILOG = """\
Settings default to the environment: OPENAI_API_KEY, OPENAI_BASE_URL (or
OPENAI_API_BASE), OPENAI_ORG_ID (or OPENAI_ORGANIZATION), OPENAI_PROJECT_ID.
Output is a table on a terminal and JSON lines otherwise (or with --json).
--timeout bounds each request; --wait-timeout the whole wait of a command that waits.
Exit codes: 0 success, 1 API or network error, 2 usage error, 130 interrupted,
143 or 129 stopped by SIGTERM or SIGHUP.
Try it without a key: `asyncvideos demo`, or `asyncvideos serve` in another shell.
"""


def positive_float(text: str) -> float:
    """argparse type: a number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def rate_limit(text: str) -> object:
    """argparse type: ``REQUESTS/DURATION`` such as ``300/60s``, as the fake's ``RateLimit``."""
    from ..testing._ratelimit import RateLimit  # the fake is imported only for serve

    try:
        return RateLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """argparse type: an integer of 1 or more."""
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Header or parameter names whose values are credentials: masked in --debug and errors.
_CREDENTIAL = re.compile(
    r"authorization|key|token|secret|password|passwd|cookie|signature|credential", re.I
)


def is_credential(name: str) -> bool:
    """Whether a header or query parameter named ``name`` likely carries a secret."""
    return bool(_CREDENTIAL.search(name))


def header(text: str) -> tuple[str, str]:
    """argparse type: ``NAME:VALUE`` (spaces after the colon are dropped)."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not _HEADER_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE with a header name, got {text!r}")
    return name, value.strip()


def query(text: str) -> tuple[str, str]:
    """argparse type: ``NAME=VALUE``."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


# Each group's options, as (destination, flag, value when not given): serve and demo
# refuse those they would ignore.
CONNECTION_OPTIONS: tuple[tuple[str, str, object], ...] = (
    ("api_key", "--api-key", None),
    ("base_url", "--base-url", None),
    ("organization", "--organization", None),
    ("project", "--project", None),
    ("request_timeout", "--timeout", None),
    ("max_retries", "--max-retries", None),
    ("headers", "--header", []),
    ("queries", "--query", []),
)
OUTPUT_OPTIONS: tuple[tuple[str, str, object], ...] = (
    ("json", "--json", False),
    ("table", "--table", False),
    ("progress", "--progress", None),
    ("debug", "--debug", False),
)


def _add_global_options(
    parser: argparse.ArgumentParser, *, top: bool, connection: bool = True
) -> None:
    """The options every command takes; ``top`` gives them their defaults.

    ``connection``: also the client's (key, URL, timeouts, headers); ``demo`` has
    only the output ones.
    """

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options (before or after the command)")
    if connection:
        _add_connection_options(group, default, top=top)
    _add_output_options(group, default)


def _add_connection_options(group: Any, default: Any, *, top: bool) -> None:
    # After the command, --header/--query go to their own list, added to the first one's.
    after = "" if top else "_after"
    group.add_argument(
        "--api-key", default=default(None), metavar="KEY", help="API key (default: $OPENAI_API_KEY)"
    )
    group.add_argument(
        "--base-url",
        default=default(None),
        metavar="URL",
        help="API base URL (default: $OPENAI_BASE_URL or https://api.openai.com/v1)",
    )
    group.add_argument(
        "--organization", default=default(None), metavar="ORG", help="default: $OPENAI_ORG_ID"
    )
    group.add_argument(
        "--project", default=default(None), metavar="PROJECT", help="default: $OPENAI_PROJECT_ID"
    )
    group.add_argument(
        "--timeout",
        dest="request_timeout",
        type=positive_float,
        default=default(None),
        metavar="S",
        help="seconds allowed for each request (default: 600); see --wait-timeout",
    )
    group.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=default(None),
        metavar="N",
        help="retries of a failed request (default: 2)",
    )
    group.add_argument(
        "--header",
        dest="headers" + after,
        action="append",
        type=header,
        default=default(None),
        metavar="NAME:VALUE",
        help="send this header with every request (repeatable)",
    )
    group.add_argument(
        "--query",
        dest="queries" + after,
        action="append",
        type=query,
        default=default(None),
        metavar="NAME=VALUE",
        help="add this query parameter to every request (repeatable)",
    )


def _add_output_options(group: Any, default: Any) -> None:
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON lines (the default when stdout is not a terminal)",
    )
    group.add_argument(
        "--table",
        action="store_true",
        default=default(False),
        help="print a table even when stdout is not a terminal",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=default(None),
        help="live progress on stderr (default: when stderr is a terminal)",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="log requests and retries to stderr; show tracebacks",
    )


def _ids(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "ids",
        nargs="+",
        metavar="ID",
        help=f"{what}; '-' reads ids from stdin (one a line, or JSON lines with an 'id')",
    )


def _wait_timeout(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--wait-timeout", type=positive_float, metavar="S", help=help)


def _wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="wait until the job finishes")
    _wait_timeout(parser, "with --wait: give up after S seconds in all (default: no limit)")


class _Refused(argparse.Action):
    """An option that is an error with a hint (instead of a bare "unrecognized")."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(str(self.const))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="asyncvideos",
        description="Create, list, wait for and download OpenAI video generation jobs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help: str, *, options: str = "all", aliases: Sequence[str] = ()
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, aliases=list(aliases))
        if options != "none":
            _add_global_options(sub, top=False, connection=options == "all")
        return sub

    # `retrieve`, the library's name for it, is the same command.
    get = command("get", "Show one or more jobs.", aliases=["retrieve"])
    _ids(get, "job ids")

    list_ = command("list", "List jobs: one page (20), or all of them with --all (streamed).")
    list_.add_argument("--limit", type=int, metavar="N", help="jobs per page (default: 20)")
    list_.add_argument("--order", choices=("asc", "desc"), default="asc", help="default: asc")
    list_.add_argument("--all", action="store_true", help="every job, page after page")
    list_.add_argument("--after", metavar="ID", help="start after this job id")

    create = command("create", "Start a video generation job.")
    create.add_argument("prompt", metavar="PROMPT")
    create.add_argument("--model", help="e.g. sora-2, sora-2-pro")
    create.add_argument("--seconds", help="clip length in seconds (Sora models: 4, 8 or 12)")
    create.add_argument("--size", help="WIDTHxHEIGHT, e.g. 720x1280")
    create.add_argument(
        "--input-reference", metavar="PATH", help="an image to guide the first frame"
    )
    _wait_option(create)
    add_ledger_option(create)

    remix = command("remix", "Start a new job from a completed one and a new prompt.")
    remix.add_argument("id", metavar="ID")
    remix.add_argument("prompt", metavar="PROMPT")
    _wait_option(remix)
    add_ledger_option(remix)

    delete = command("delete", "Delete jobs.")
    _ids(delete, "job ids")

    wait = command("wait", "Wait until jobs finish, all together.")
    _ids(wait, "job ids")
    _wait_timeout(wait, "give up after S seconds for the whole wait (default: no limit)")

    download = command("download", "Download jobs' videos, thumbnails or spritesheets.")
    _ids(download, "job ids, downloaded one after the other")
    download.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="file to write, for one id (default: ./ID.mp4, .webp or .jpg)",
    )
    download.add_argument(
        "--variant", choices=tuple(VARIANT_SUFFIXES), default="video", help="default: video"
    )
    download.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _wait_option(download)

    serve = command(
        "serve", "Run the bundled fake API as a local server, until Ctrl-C.", options="none"
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=non_negative_int, default=8080, help="default: 8080")
    serve.add_argument(
        "--jobs", type=non_negative_int, default=25, metavar="N", help="jobs to seed (25)"
    )
    serve.add_argument(
        "--speed",
        type=positive_float,
        default=1.0,
        metavar="X",
        help="jobs run X times faster; timestamps stay real (1)",
    )
    serve.add_argument(
        "--api-key",
        dest="server_key",
        metavar="KEY",
        help="the key clients must send (default: a fixed fake key, printed)",
    )
    serve.add_argument(
        "--key",
        action=_Refused,
        nargs="?",
        const="the server's key is given as --api-key KEY",
        help=argparse.SUPPRESS,
    )
    serve.add_argument(
        "--webhook-url", metavar="URL", help="POST signed events there when jobs finish"
    )
    serve.add_argument(
        "--webhook-secret", metavar="WHSEC", help="sign them with this (default: a new one)"
    )
    serve.add_argument(
        "--rate-limit",
        type=rate_limit,
        metavar="N/TIME",
        help="answer 429 beyond N requests per TIME, e.g. 300/60s (default: no limit)",
    )
    serve.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log each request's headers (credentials masked) and body too; show tracebacks",
    )

    demo = command(
        "demo",
        "Show the whole workflow on an embedded fake API (no key needed).",
        options="output",
    )
    demo.add_argument(
        "--output", metavar="DIR", help="put the downloaded file here (default: a temp dir)"
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder and its video (an --output folder is always kept)",
    )
    demo.add_argument(
        "--jobs", type=positive_int, default=12, metavar="N", help="jobs to create (12)"
    )
    demo.add_argument(
        "--speed", type=positive_float, default=2.0, metavar="X", help="jobs run X times faster (2)"
    )

    add_ledger_parsers(command)

    from ._webhooks import add_parser as add_webhooks_parser

    add_webhooks_parser(
        command("webhooks", "Receive webhook events: `webhooks listen`.", options="none")
    )
    return parser


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` (``sys.argv[1:]`` when None); argparse exits on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("headers", "queries"):
        merged = [*(getattr(args, name) or ()), *(getattr(args, name + "_after", None) or ())]
        setattr(args, name, merged)
        if hasattr(args, name + "_after"):
            delattr(args, name + "_after")
    if args.command == "retrieve":
        args.command = "get"
    ignored = {
        # serve logs its requests on stderr; --debug adds their headers and bodies.
        "serve": CONNECTION_OPTIONS + tuple(o for o in OUTPUT_OPTIONS if o[0] != "debug"),
        "demo": CONNECTION_OPTIONS,
        "webhooks": CONNECTION_OPTIONS,
        "jobs": CONNECTION_OPTIONS,
        "purge": CONNECTION_OPTIONS + OUTPUT_OPTIONS,
    }
    for name, flag, unset in ignored.get(args.command, ()):
        if getattr(args, name) != unset:
            parser.error(f"{args.command} does not take {flag}; see {args.command} --help")
    if getattr(args, "wait_timeout", None) is not None and not getattr(args, "wait", True):
        parser.error("--wait-timeout needs --wait")
    args.wait_timeout = getattr(args, "wait_timeout", None)
    return args
