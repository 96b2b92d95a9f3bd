"""The book's structure: stripped notebooks, every chapter in the toc, the chapter contract's fixed parts."""
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
CHAPTERS = [p for p in NOTEBOOKS if p.parent != ROOT / "book"]      # book/<part>/<chapter>.ipynb; not the ledger


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_there_are_chapters():
    assert CHAPTERS, "no chapter notebooks under book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `make strip`"
    assert "widgets" not in nb.metadata, f"{path.name}: stored widget state; run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_is_in_the_toc(path):
    assert str(path.relative_to(ROOT).with_suffix("")) in toc_files()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_contract_fixed_parts(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and "google.colab" in first.source and "pip install" in first.source
    text = "\n".join(c.source for c in nb.cells)
    for needed in ("Predict first", "Ours vs. the paper", "Exercises", "References",
                   "chapter.setup(", "interact.panel(", "claims.check("):
        assert needed in text, f"{path.name} lacks {needed!r}"


def test_toc_entries_exist():
    for entry in toc_files():
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


def test_config_fails_loudly():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["raise_on_error"] is True
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["launch_buttons"]["colab_url"] and config["repository"]["url"]


def test_the_repository_address_is_set_in_one_place():
    """_config.yml's repository.url; README, base URL and every Colab cell agree with it."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "tools" / "set_repository.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_colab_cell_installs_only_what_colab_lacks_and_is_hidden_in_the_page(path):
    cell = nbformat.read(path, as_version=4).cells[0]
    assert "--no-deps" in cell.source and "mnist1d" in cell.source   # tdlab.core.data imports mnist1d
    assert "==" not in cell.source, "never pin packages in the Colab cell (Colab's own stack would be replaced)"
    assert "remove-cell" in cell.metadata.get("tags", [])
