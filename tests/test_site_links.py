"""``.ci/check_site_links.py``, which CI runs on the built documentation site, finds
the links that lead nowhere and only those."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

CHECKER = Path(__file__).resolve().parents[1] / ".ci" / "check_site_links.py"


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_site_links", CHECKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_broken_links_and_anchors_are_found(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="guide/">ok</a> <a href="guide/#setup">ok</a> <a href="#top">ok</a>'
        '<a id="top"></a> <a href="https://example.com/x">elsewhere</a>'
        '<a href="missing/">broken</a> <a href="guide/#nowhere">broken</a>'
        '<img src="img/logo.png"> <a href="../outside.html">broken</a>'
    )
    (tmp_path / "guide" / "index.html").write_text('<h2 id="setup">Set up</h2>')
    (tmp_path / "404.html").write_text('<a href="/docs/guide/">ok</a><a href="/other/">broken</a>')
    assert checker().broken_links(tmp_path, "/docs/") == [
        "404.html: /other/",
        "index.html: missing/",
        "index.html: guide/#nowhere",
        "index.html: img/logo.png",
        "index.html: ../outside.html",
    ]


def test_exit_status(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<a href="#here" id="here">fine</a>')
    module = checker()
    assert module.main([str(tmp_path)]) == 0
    (tmp_path / "index.html").write_text('<a href="gone.html">gone</a>')
    assert module.main([str(tmp_path)]) == 1
    assert module.main([]) == 2
