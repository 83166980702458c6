"""Check every link inside a built site: ``python .ci/check_site_links.py site [/base/]``.

mkdocs (``--strict``, with ``validation`` in mkdocs.yml) checks the links written in
the Markdown pages; this checks the HTML it produced, so the navigation, the theme's
links and the cross-references mkdocstrings makes from docstrings are checked too.
A relative ``href`` or ``src`` must name a file of the site (a folder means its
``index.html``), and its ``#fragment`` an ``id`` (or ``name``) in that file. Links
to other sites are left alone: CI has no network. A link from the root (``/base/x``,
as in mkdocs' 404 page) is read under ``base``, the path of the site's URL (default
``/``). Exit status 1 lists the broken links, one per line as ``page: link``.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name in ("href", "src") and not (tag == "link" and "preconnect" in str(attrs)):
                self.links.append(value)


def _read(path: Path, pages: dict[Path, _Page]) -> _Page:
    if path not in pages:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        pages[path] = page
    return pages[path]


def broken_links(site: Path, base: str = "/") -> list[str]:
    """``page: link`` for each link of the site that leads nowhere."""
    site = site.resolve()
    base = "/" + base.strip("/") + "/" if base.strip("/") else "/"
    pages: dict[Path, _Page] = {}
    broken = []
    for html in sorted(site.rglob("*.html")):
        for link in _read(html, pages).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue
            path = unquote(parts.path)
            if path.startswith("/"):  # from the root of the site's URL
                if not path.startswith(base):
                    broken.append(f"{html.relative_to(site)}: {link}")
                    continue
                target = (site / path[len(base) :]).resolve()
            else:
                target = html if not path else (html.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or not target.is_relative_to(site):
                broken.append(f"{html.relative_to(site)}: {link}")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and fragment not in _read(target, pages).ids:
                broken.append(f"{html.relative_to(site)}: {link}")
    return broken


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: check_site_links.py SITE_DIR [BASE_PATH]", file=sys.stderr)
        return 2
    broken = broken_links(Path(argv[0]), *argv[1:])
    for line in broken:
        print(line)
    pages = sum(1 for _ in Path(argv[0]).rglob("*.html"))
    print(f"{len(broken)} broken links in {pages} pages", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
