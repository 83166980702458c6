"""The API reference (``docs/``, built by mkdocs) documents every public name.

Building it is CI's job (``mkdocs build --strict``); this only checks that no public
name of ``asyncvideos`` or ``asyncvideos.testing`` is missing from its pages, so a
new export cannot go undocumented.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import asyncvideos
import asyncvideos.ledger
import asyncvideos.testing
import asyncvideos.webhooks

DOCS = Path(__file__).resolve().parents[1] / "docs"


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
