"""The API reference (``docs/``, built by mkdocs) documents every public name.

Building it is CI's job (``mkdocs build --strict``); this only checks that no public
name of ``asyncvideos`` or ``asyncvideos.testing`` is missing from its pages, so a
new export cannot go undocumented.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import asyncvideos
import asyncvideos.ledger
import asyncvideos.testing
import asyncvideos.webhooks

DOCS = Path(__file__).resolve().parents[1] / "docs"
PACKAGE = str(Path(asyncvideos.__file__).parent)


def _resolve(entry: str) -> object:
    module, _, name = entry.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return importlib.import_module(entry)


def documented() -> set[str]:
    pages = "\n".join(path.read_text(encoding="utf-8") for path in DOCS.rglob("*.md"))
    return set(re.findall(r"^::: ([\w.]+)$", pages, re.MULTILINE))


@pytest.mark.parametrize(
    ("module", "prefix"),
    [
        (asyncvideos, "asyncvideos."),
        (asyncvideos.testing, "asyncvideos.testing."),
        (asyncvideos.webhooks, "asyncvideos.webhooks."),
        (asyncvideos.ledger, "asyncvideos.ledger."),
    ],
)
def test_every_public_name_has_a_reference_entry(module: object, prefix: str) -> None:
    public = {name for name in module.__all__ if not name.startswith("__")}  # type: ignore[attr-defined]
    # A name re-exported from another public module is documented once, there.
    entries = {entry: _resolve(entry) for entry in documented()}
    missing = sorted(
        name
        for name in public
        if not any(value is getattr(module, name) for value in entries.values())
    )
    assert missing == [], f"add to a page under docs/api/: {missing}"


def test_every_entry_is_public() -> None:
    """No page documents a name that is not exported (private modules excepted)."""
    modules = {
        "asyncvideos": asyncvideos,
        "asyncvideos.testing": asyncvideos.testing,
        "asyncvideos.webhooks": asyncvideos.webhooks,
        "asyncvideos.ledger": asyncvideos.ledger,
    }
    for entry in documented() - set(modules):  # a module's own docstring
        module, _, name = entry.rpartition(".")
        if name.startswith("_") or module.rpartition(".")[2].startswith("_"):
            continue
        assert name in modules[module].__all__, entry


def _public_functions() -> Iterator[tuple[str, Any]]:
    """Every public function and method the reference shows, inherited ones included."""
    for module in (asyncvideos, asyncvideos.testing, asyncvideos.webhooks):
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value):
                yield name, value
            elif inspect.isclass(value):
                for attribute, member in inspect.getmembers(value, inspect.isfunction):
                    if not attribute.startswith("_") or attribute == "__init__":
                        yield f"{name}.{attribute}", member


def test_defaults_are_values_not_constant_names() -> None:
    """A signature in the reference shows ``concurrency: int = 16``, never the name of a
    private constant (``DEFAULT_WAIT_CONCURRENCY``); ``NOT_GIVEN`` is the one sentinel."""
    checked = 0
    for qualname, function in _public_functions():
        if not function.__code__.co_filename.startswith(PACKAGE):
            continue  # generated (attrs' __init__ shows its fields' own defaults) or aiohttp's
        source = textwrap.dedent(inspect.getsource(function))
        definition = ast.parse(source).body[0]
        assert isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef))
        arguments = definition.args
        for default in [*arguments.defaults, *filter(None, arguments.kw_defaults)]:
            names = {n.id for n in ast.walk(default) if isinstance(n, ast.Name)}
            assert names <= {"NOT_GIVEN"}, f"{qualname}: default {ast.unparse(default)}"
            checked += 1
    assert checked > 50


GUIDE = DOCS / "guide"
TESTS = Path(__file__).resolve().parent


def test_the_cli_page_names_every_option() -> None:
    """docs/guide/cli.md lists what each command takes, so it cannot fall behind."""
    import argparse

    from asyncvideos._cli._args import build_parser

    page = (GUIDE / "cli.md").read_text(encoding="utf-8")
    parsers = [build_parser()]
    missing = []
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
                names = [
                    n
                    for n in action.choices
                    if not re.search(rf"(asyncvideos|webhooks) {n}\b", page)
                ]
                missing += [f"command {name}" for name in names]
            elif action.help != argparse.SUPPRESS:
                long = [o for o in action.option_strings if o.startswith("--")]
                if long and long[0] not in ("--help", "--version") and long[0] not in page:
                    missing.append(f"{parser.prog} {long[0]}")
    assert missing == []


def test_every_test_the_guarantees_cite_exists() -> None:
    """A guarantee names the tests that prove it: each file, class and test exists."""
    page = (DOCS / "explanation" / "guarantees.md").read_text(encoding="utf-8")
    sources = {path.name: path.read_text(encoding="utf-8") for path in TESTS.rglob("test_*.py")}
    everything = "\n".join(sources.values())
    cited = re.findall(r"`((?:tests/[\w/]+\.py)?(?:::)?(?:Test\w+)?(?:::test_\w+)?)`", page)
    checked = 0
    for citation in filter(None, cited):
        path, _, rest = (
            citation.partition("::") if citation.startswith("tests/") else ("", "", citation)
        )
        if path:
            assert (TESTS.parent / path).is_file(), citation
            text = sources[Path(path).name]
        else:
            text = everything
        for name in filter(None, rest.split("::")):
            kind = "class" if name.startswith("Test") else "def"
            assert re.search(rf"^\s*(async )?{kind} {name}\b", text, re.M), citation
        checked += 1
    assert checked >= 25
