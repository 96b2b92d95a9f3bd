"""The library's layout shows its layers (issue 33): the core imports neither the book's machinery nor the
methods, and the machinery no method; every part of the book has its methods' folder of the same name; the old flat names still import, as
the same module, with a warning naming the new home."""
import ast
import importlib
import warnings
from pathlib import Path

import pytest

import tdlab

SRC = Path(tdlab.__file__).parent
BOOK = SRC.parents[1] / "book"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


@pytest.mark.parametrize("path", sorted((SRC / "core").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_the_core_imports_neither_the_book_nor_the_methods(path):
    wrong = sorted(n for n in imported(path) if n.startswith(("tdlab.book", "tdlab.methods")))
    assert not wrong, f"core/{path.name} imports {wrong}: the core must not depend on the layers above it"


@pytest.mark.parametrize("path", sorted((SRC / "book").glob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_the_books_machinery_imports_no_method(path):
    wrong = sorted(n for n in imported(path) if n.startswith("tdlab.methods"))
    assert not wrong, f"book/{path.name} imports {wrong}: a method's figure lives beside its method"


def test_every_part_of_the_book_has_its_methods_folder():
    parts = sorted(p.name.split("_", 1)[1] for p in BOOK.iterdir() if p.is_dir() and p.name[:2].isdigit())
    assert parts, "no parts under book/"
    missing = [p for p in parts if not (SRC / "methods" / p / "__init__.py").exists()]
    assert not missing, f"book parts without a folder under tdlab/methods: {missing}"
    extra = sorted(p.name for p in (SRC / "methods").iterdir() if p.is_dir() and p.name != "__pycache__"
                   and p.name not in parts)
    assert not extra, f"method folders that are no part of the book: {extra}"


def test_every_moved_name_imports_as_its_new_home_with_a_warning():
    for old, new in tdlab.MOVED.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(f"tdlab.{old}")
        assert module is importlib.import_module(new), old
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught) or \
            getattr(tdlab, old, None) is module, old                    # warned once, when first imported
    modules = {f"tdlab.{'.'.join((p.parent if p.name == '__init__.py' else p.with_suffix('')).relative_to(SRC).parts)}"
               for p in SRC.rglob("*.py")}                       # a package (core/losses/) by its folder's name
    assert set(tdlab.MOVED.values()) <= modules                      # every old name has a home that exists
    assert not [p for p in SRC.glob("*.py") if p.name != "__init__.py"], "a module left in the flat top folder"
