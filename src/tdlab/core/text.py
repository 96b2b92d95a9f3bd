"""A small real text corpus, offline: the Python standard library's own source files.

Every Python installation carries its standard library as ``.py`` source, so a corpus of real,
structured text is on disk wherever tdlab runs — no download. :func:`stdlib_text` reads a
fixed list of modules (:data:`STDLIB_FILES`) in a fixed order, keeps the characters of a fixed
vocabulary (:data:`VOCAB`: newline and printable ASCII; anything else becomes ``"?"``) and cuts
the concatenation at ``size`` characters. The text is the same on every machine with the same
Python version (the files change a little between versions; the chapter records which).
Should the sources be missing (an embedded Python), :func:`grammar_text` generates
Python-like lines from a seeded toy grammar instead.

:func:`corpus` turns the text into a :class:`tdlab.core.data.Dataset` of next-token windows for
the engine: ``x`` (N, T) character tokens and ``y`` (N, T) the same window shifted by one
(position t predicts character t + 1). Train windows come from the first part of the text,
test windows from the rest.
"""
from __future__ import annotations

import random
import sys
import sysconfig
from pathlib import Path

import torch

from tdlab.core.config import check_range, device as default_device
from tdlab.core.data import Dataset

# modules present (as .py source) in every CPython from 3.9 to 3.13, read in this order
STDLIB_FILES = ("textwrap.py", "heapq.py", "bisect.py", "colorsys.py", "fnmatch.py", "shlex.py", "string.py",
                "glob.py", "queue.py", "sched.py", "copy.py", "abc.py", "numbers.py", "reprlib.py", "random.py",
                "statistics.py", "fractions.py", "calendar.py", "base64.py", "csv.py", "functools.py",
                "difflib.py", "dataclasses.py")
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))       # 96 symbols: newline and printable ASCII
UNKNOWN = "?"
_INDEX = {ch: i for i, ch in enumerate(VOCAB)}


def normalize(text: str) -> str:
    """``text`` in the vocabulary: tabs become four spaces, other characters outside :data:`VOCAB` ``"?"``."""
    text = text.replace("\t", "    ")
    return "".join(ch if ch in _INDEX else UNKNOWN for ch in text)


def encode(text: str) -> torch.Tensor:
    """Character tokens (int64) of a text in the vocabulary (:func:`normalize` it first)."""
    try:
        return torch.tensor([_INDEX[ch] for ch in text], dtype=torch.long)
    except KeyError as error:
        raise ValueError(f"character {error.args[0]!r} is not in the vocabulary; normalize() the text") from None


def decode(tokens) -> str:
    """The text of character tokens (any integer sequence or tensor)."""
    values = tokens.flatten().tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    return "".join(VOCAB[int(t)] for t in values)


def stdlib_dir() -> Path:
    """Where this Python's standard library sources are."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_text(size: int = 262_144, files=STDLIB_FILES) -> str:
    """The first ``size`` characters of the normalized concatenation of ``files`` from the
    standard library (each file's text followed by a newline). ``FileNotFoundError`` if a file
    is missing or the files hold fewer than ``size`` characters."""
    check_range("size", size, 1)
    parts, total = [], 0
    for name in files:
        path = stdlib_dir() / name
        part = normalize(path.read_text(encoding="utf-8")) + "\n"
        parts.append(part)
        total += len(part)
        if total >= size:
            return "".join(parts)[:size]
    raise FileNotFoundError(f"the standard library files hold {total} characters, fewer than {size}")


def grammar_text(size: int = 262_144, seed: int = 0) -> str:
    """``size`` characters of Python-like lines from a seeded toy grammar: the fallback corpus."""
    rng = random.Random(seed)
    names = ["x", "y", "total", "count", "items", "value", "result", "index", "data", "key"]
    ops = ["+", "-", "*", "//", "%"]
    lines: list[str] = []
    length = 0
    while length < size:
        kind = rng.random()
        a, b = rng.choice(names), rng.choice(names)
        if kind < 0.3:
            line = f"{a} = {b} {rng.choice(ops)} {rng.randint(0, 99)}"
        elif kind < 0.5:
            line = f"for {a} in range({rng.randint(1, 20)}):\n    {b} = {b} {rng.choice(ops)} {a}"
        elif kind < 0.7:
            line = f"if {a} > {b}:\n    return {a}\nelse:\n    return {b}"
        elif kind < 0.85:
            line = f"def {a}_{b}({a}, {b}):\n    return {a} {rng.choice(ops)} {b}"
        else:
            line = f"print({a}, {b})"
        lines.append(line)
        length += len(line) + 1
    return ("\n".join(lines) + "\n")[:size]


def load_text(size: int = 262_144, source: str = "stdlib") -> tuple[str, str]:
    """``(text, description)``: the standard library text, or the grammar's when ``source="grammar"``
    or the sources are missing."""
    if source not in ("stdlib", "grammar"):
        raise ValueError(f"unknown text source {source!r}; allowed: stdlib, grammar")
    if source == "stdlib":
        try:
            version = ".".join(map(str, sys.version_info[:3]))
            return stdlib_text(size), f"Python {version} standard library ({len(STDLIB_FILES)} modules)"
        except (FileNotFoundError, OSError):
            pass
    return grammar_text(size), "generated Python-like grammar"


def windows(tokens: torch.Tensor, context: int, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token windows of a token stream: ``x[i] = tokens[s_i : s_i + T]``, ``y[i] = tokens[s_i + 1 :
    s_i + T + 1]``; the starts s_i are every T-th position (non-overlapping), or with ``count``,
    ``count`` starts evenly spread over the stream."""
    check_range("context", context, 1)
    last = tokens.numel() - context - 1                     # the largest start that leaves a target
    if last < 0:
        raise ValueError(f"a stream of {tokens.numel()} tokens is shorter than one window of {context} + 1")
    if count is None:
        starts = torch.arange(0, last + 1, context)
    else:
        check_range("count", count, 1)
        starts = torch.linspace(0, last, count).round().long()
    offsets = starts.unsqueeze(1) + torch.arange(context + 1)
    chunks = tokens[offsets]                                # (N, T + 1)
    return chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()


def corpus(context: int = 32, size: int = 262_144, test_fraction: float = 0.1, num_train: int | None = None,
           num_test: int | None = None, source: str = "stdlib", device=None) -> Dataset:
    """The character-level next-token :class:`~tdlab.core.data.Dataset` of :func:`load_text`.

    The first ``1 − test_fraction`` of the text gives the training windows, the rest the test
    windows (:func:`windows`: non-overlapping, or ``num_train`` / ``num_test`` evenly spread).
    ``x`` (N, T) and ``y`` (N, T) are int64 tokens, ``num_classes`` the vocabulary size; the engine
    trains on per-token cross-entropy (its logits (E, B, T, V) flattened to (E, B·T, V)).
    ``info`` records the source, its size and the vocabulary.
    """
    check_range("test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
    text, description = load_text(size, source)
    tokens = encode(text)
    cut = int(round(len(text) * (1 - test_fraction)))
    x_train, y_train = windows(tokens[:cut], context, num_train)
    x_test, y_test = windows(tokens[cut:], context, num_test)
    dev = device or default_device()
    return Dataset("text", x_train.to(dev), y_train.to(dev), x_test.to(dev), y_test.to(dev), len(VOCAB),
                   info={"source": description, "characters": len(text), "context": context,
                         "vocab": len(VOCAB), "split_at": cut})
