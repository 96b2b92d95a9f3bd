"""The repository's address is set in one place, `repository.url` in `_config.yml`; this writes it
everywhere else a reader meets it (the README's clone and read-online lines, the book's base URL,
every chapter's Colab install cell).

    python tools/set_repository.py            # rewrite the other places from _config.yml
    python tools/set_repository.py --check    # exit 1, naming the files, if any place disagrees

To move the book: change `repository.url` in `_config.yml`, run this, commit.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
PAGES = re.compile(r"https://[A-Za-z0-9_.-]+\.github\.io/[A-Za-z0-9_.-]+/")


def addresses() -> tuple[str, str]:
    """(repository URL, the Pages URL of the book) from ``_config.yml``."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    owner, name = url.split("/")[-2:]
    return url, f"https://{owner.lower()}.github.io/{name}/"


def rewritten(text: str, url: str, pages: str, only_install: bool = False) -> str:
    if only_install:                    # the Colab cell: the clone of the book
        return GITHUB.sub(url, text)
    return PAGES.sub(pages, GITHUB.sub(url, text))


def places(url: str, pages: str):
    """(path, current text, text it should have) for every place that names the repository."""
    for path in (ROOT / "README.md", ROOT / "_config.yml"):
        text = path.read_text()
        yield path, text, rewritten(text, url, pages)
    for path in sorted((ROOT / "book").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = nb.cells[0]
        fixed = rewritten(cell.source, url, pages, only_install=True)
        if fixed != cell.source:
            cell.source = fixed
            yield path, "", nbformat.writes(nb)
        else:
            yield path, "", ""


def main() -> int:
    url, pages = addresses()
    wrong = []
    for path, text, should in places(url, pages):
        if path.suffix == ".ipynb":
            if should:
                wrong.append(path)
                if "--check" not in sys.argv:
                    path.write_text(should)
        elif text != should:
            wrong.append(path)
            if "--check" not in sys.argv:
                path.write_text(should)
    if "--check" in sys.argv and wrong:
        print("these files name another repository than _config.yml's repository.url (" + url + "): "
              + ", ".join(str(p.relative_to(ROOT)) for p in wrong) + "; run `python tools/set_repository.py`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
