"""Validators: each setting's one check, with an error that names the problem and what would be valid.

Nothing here imports torch or numpy; every entry point (the CLI, Python keywords, lmms-eval model
arguments, the demo's widgets) checks its values through these.

>>> check_count("limit", 3), parse_layers("-2:", 4)
(3, (2, 3))
"""

from __future__ import annotations

import numbers
import unicodedata
from collections.abc import Sequence
from typing import Any

from .errors import InputError


def check_kernel(kernel: Any, grid: tuple[int, int] | None = None) -> int:
    """A mean-filter size: an odd integer ≥ 1 (1 = no filter), and, given the map's grid, no wider
    than the grid (a wider one averages the whole map into one value).

    >>> check_kernel(3)
    3
    >>> check_kernel(1001, (24, 24))
    Traceback (most recent call last):
    attnprompt.errors.InputError: kernel 1001 is wider than the 24×24 grid it filters; give an odd kernel up to 23
    """
    if isinstance(kernel, bool) or not isinstance(kernel, numbers.Integral) or kernel < 1 or kernel % 2 == 0:
        raise InputError(f"kernel must be an odd integer ≥ 1 (1 = no filter); got {kernel!r}")
    kernel = int(kernel)
    if grid is not None and kernel > max(grid):
        largest = max(grid) - (1 - max(grid) % 2)
        raise InputError(
            f"kernel {kernel} is wider than the {grid[0]}×{grid[1]} grid it filters; give an odd kernel up to {largest}"
        )
    return kernel


def check_enhance(enhance: Any) -> float:
    """An enhance coefficient: a finite number ≥ 0 (0 = off).

    >>> check_enhance("5")
    5.0
    """
    try:
        e = float(enhance)
    except (TypeError, ValueError):
        raise InputError(f"enhance must be a number ≥ 0 (0 = off); got {enhance!r}") from None
    if not (e >= 0 and e < float("inf")):
        raise InputError(f"enhance must be a finite number ≥ 0 (0 = off); got {enhance!r}")
    return e


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (a token budget, a batch size, a limit …), by its name.

    >>> check_count("max_new_tokens", 20), check_count("gallery", 0, minimum=0)
    (20, 0)
    >>> check_count("batch_size", 2.5)
    Traceback (most recent call last):
    attnprompt.errors.InputError: batch_size must be an integer ≥ 1; got 2.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, valid: Sequence[str]) -> None:
    """Raise a clear error unless ``value`` is one of ``valid``.

    >>> check_choice("parts", "all", ("both", "cls", "comp"))
    Traceback (most recent call last):
    attnprompt.errors.InputError: parts must be one of both, cls, comp; got 'all'
    """
    if value not in valid:
        raise InputError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def check_query(query: Any, name: str = "query") -> str:
    """Validate one query or question (called ``name`` in messages: ``QUESTION`` for the CLI's argument): a
    non-blank string. Returns it stripped.

    >>> check_query("  What colour is the star? ")
    'What colour is the star?'
    >>> check_query(" ", name="QUESTION")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.InputError: QUESTION is empty or only whitespace; give a question or a phrase ...
    """
    if not isinstance(query, str):
        raise InputError(f"{name} must be a string, got {type(query).__name__}")
    q = query.strip()
    if not q:
        raise InputError(f"{name} is empty or only whitespace; give a question or a phrase naming what to look at")
    bad = next((i for i, c in enumerate(q) if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
    if bad is not None:
        raise InputError(
            f"{name} holds the control character U+{ord(q[bad]):04X} at position {bad}; remove it (tokenizers and "
            "servers treat such characters differently)"
        )
    return q


def check_pairs(images: Sequence[Any], queries: Sequence[Any],
                suffixes: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """One query per image and one answer-format suffix per query: the queries checked
    (:func:`check_query`) and the suffixes (``""`` each when none are given).

    >>> check_pairs(["img"], [" the star "])
    (['the star'], [''])
    >>> check_pairs(["a", "b"], ["q"])
    Traceback (most recent call last):
    attnprompt.errors.InputError: got 2 images but 1 queries; give one query per image
    """
    if len(images) != len(queries):
        raise InputError(f"got {len(images)} images but {len(queries)} queries; give one query per image")
    suffixes = list(suffixes) if suffixes is not None else [""] * len(queries)
    if len(suffixes) != len(queries):
        raise InputError(f"got {len(suffixes)} suffixes for {len(queries)} queries; give one per query")
    return [check_query(q) for q in queries], suffixes



def check_gray(gray: Any) -> float:
    """The level masked pixels fade to: a number in [0, 255] (0 = black).

    >>> check_gray(128)
    128.0
    """
    try:
        g = float(gray)
    except (TypeError, ValueError):
        raise InputError(f"gray must be a level in [0, 255]; got {gray!r}") from None
    if not 0.0 <= g <= 255.0:
        raise InputError(f"gray must be a level in [0, 255]; got {gray!r}")
    return g


def parse_layers(spec: Any, depth: int, *, allow_fraction: bool = False) -> tuple[int, ...]:
    """Resolve a layer specification to sorted absolute block indices in ``[0, depth)``.

    Accepts an int (negative counts from the end: -1 is the last block), a sequence of ints,
    a string ``"-2"``, ``"20,22"`` or a slice ``"-4:"`` / ``"10:14"`` (Python slice semantics),
    and, with ``allow_fraction``, a fraction of the depth in (0, 1) as a float or a string
    (``0.5``, ``"0.5"``) or a slice of fractions (``"0.71:0.93"``: blocks round(0.71·depth) up to
    round(0.93·depth), exclusive — 20 to 25 of 28), so one setting fits models of any depth.

    >>> parse_layers(-2, 24), parse_layers("-3:", 24), parse_layers("1,3", 4)
    ((22,), (21, 22, 23), (1, 3))
    >>> parse_layers("0.5", 40, allow_fraction=True), parse_layers("0.71:0.93", 28, allow_fraction=True)
    ((20,), (20, 21, 22, 23, 24, 25))
    """

    def bad(why: str) -> InputError:
        extra = ", or a fraction of depth in (0, 1) like 0.5" if allow_fraction else ""
        return InputError(
            f"invalid layers {spec!r}: {why}; the model has {depth} blocks — give an index in "
            f"[-{depth}, {depth - 1}], a list like '20,22' or a slice like '-4:'{extra}"
        )

    def one(i: int) -> int:
        j = i + depth if i < 0 else i
        if not 0 <= j < depth:
            raise bad(f"index {i} is out of range")
        return j

    if isinstance(spec, bool):
        raise bad("not a layer index")
    if isinstance(spec, float):
        if not allow_fraction:
            raise bad("fractions are not accepted here")
        if not 0.0 < spec < 1.0:
            raise bad("a fraction must lie strictly between 0 and 1")
        return (min(depth - 1, int(round(spec * depth))),)
    if isinstance(spec, numbers.Integral):
        return (one(int(spec)),)
    if isinstance(spec, str):
        s = spec.strip()
        if ":" in s:
            return _layer_slice(s, depth, allow_fraction, bad)
        items = [x.strip() for x in s.split(",") if x.strip()]
        if not items:
            raise bad("empty")
        if len(items) == 1 and allow_fraction and "." in items[0]:
            try:
                fraction = float(items[0])
            except ValueError:
                raise bad(f"{items[0]!r} is not a number") from None
            return parse_layers(fraction, depth, allow_fraction=True)
        out = []
        for x in items:
            try:
                out.append(int(x))
            except ValueError:
                raise bad(f"{x!r} is not an integer") from None
        return tuple(sorted({one(i) for i in out}))
    if isinstance(spec, Sequence):
        if not spec:
            raise bad("empty")
        out = []
        for x in spec:
            if isinstance(x, bool) or not isinstance(x, numbers.Integral):
                raise bad(f"{x!r} is not an integer")
            out.append(one(int(x)))
        return tuple(sorted(set(out)))
    raise bad(f"unsupported type {type(spec).__name__}")


def check_layers(spec: Any, *, allow_fraction: bool = False) -> Any:
    """A layer specification checked for its form before any model is known (its range is checked against
    the model's depth when the model has loaded: :func:`parse_layers`). Returns it unchanged.

    >>> check_layers("-4:"), check_layers("0.71:0.93", allow_fraction=True)
    ('-4:', '0.71:0.93')
    >>> check_layers("abc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.InputError: invalid layers 'abc': 'abc' is not an integer; give an index (-2), ...
    """
    if spec is None:
        return spec
    try:
        parse_layers(spec, 1 << 20, allow_fraction=allow_fraction)
    except InputError as e:
        head = str(e).split(";")[0]
        extra = ", or a fraction of depth in (0, 1) like 0.5" if allow_fraction else ""
        raise InputError(f"{head}; give an index (-2), a list (20,22) or a slice (-4:){extra}") from None
    return spec


def _layer_slice(s: str, depth: int, allow_fraction: bool, bad: Any) -> tuple[int, ...]:
    """``"start:stop"`` (Python slice semantics, bounds within the depth) or, with ``allow_fraction``, a slice
    of fractions of the depth."""
    parts = s.split(":")
    if len(parts) != 2:
        raise bad("a slice has the form start:stop")
    if allow_fraction and "." in s:
        try:
            lo, hi = (float(p) if p.strip() else None for p in parts)
        except ValueError:
            raise bad("fraction bounds must be numbers") from None
        if any(f is not None and not 0.0 <= f <= 1.0 for f in (lo, hi)):
            raise bad("fraction bounds must lie between 0 and 1")
        start = 0 if lo is None else int(round(lo * depth))
        stop = depth if hi is None else int(round(hi * depth))
        idx = tuple(range(start, min(stop, depth)))
        if not idx:
            raise bad(f"the fractions select no block of {depth}")
        return idx
    try:
        first = int(parts[0]) if parts[0].strip() else None
        last = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise bad("slice bounds must be integers") from None
    for bound in (first, last):  # Python would clamp them silently
        if bound is not None and not -depth <= bound <= depth:
            raise bad(f"the slice bound {bound} reaches past the model's {depth} blocks")
    idx = tuple(range(depth)[slice(first, last)])
    if not idx:
        raise bad("the slice selects no block")
    return idx
