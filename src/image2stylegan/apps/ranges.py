"""Valid ranges of the numeric settings, declared once on the settings dataclasses and enforced there.

Every numeric field of a settings dataclass is declared with :func:`setting`, which records its :class:`Bound` (the
valid interval, whole numbers or not), the command-line option that sets it and what the value means, in the
field's metadata. The dataclass's ``__post_init__`` calls :func:`check_ranges`, so the CLI, the library, the
browser editor and the cluster runner (both send JSON that :func:`.requests.rebuild` turns into settings) refuse the
same values with the same one-line :class:`~image2stylegan.errors.InputError`, which names the option as a user
types it::

    --feather must be a number between 0 and 0.5 (the mask blur's Gaussian sigma as a fraction of the image side:
    0.03 is 3 %), got 3

NaN and infinities are outside every range; a whole-number setting refuses floats (3.0 included) and booleans.
A setting that no command-line option sets is named the same way (``--known-weight`` for ``known_weight``), so
the message is the same whoever gives the value. :func:`ranges_table` writes the table of
docs/algorithm.md#settings-and-their-valid-ranges (``python scripts/settings_table.py``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

__all__ = [
    "ALPHA",
    "AMOUNT",
    "FEATHER",
    "LAST_ROWS",
    "LEARNING_RATE",
    "LPIPS_TARGET",
    "MAX_RESOLUTION",
    "PSNR_TARGET",
    "RANGE_KEY",
    "ROW",
    "SEED",
    "STEPS",
    "STYLE_WEIGHT",
    "THRESHOLD",
    "TRUNCATION",
    "WEIGHT",
    "Bound",
    "check_choices",
    "check_not_all_zero",
    "check_ranges",
    "check_value",
    "choice",
    "field_option",
    "ranges_table",
    "setting",
]

RANGE_KEY = "range"
"""Field metadata keys: ``range`` (a :class:`Bound`), ``option`` (the CLI spelling), ``doc`` (what it means),
``optional`` (None allowed), ``items`` (the value is None or a non-empty sequence of values in the range) and
``choices`` (for text settings: the values allowed)."""


def _num(x: Any) -> str:
    """A number as a person writes it: 3 (not 3.0), 0.5, 1000000 (not 1e+06), 4294967295, nan, inf."""
    if isinstance(x, bool):
        return repr(x)
    if isinstance(x, numbers.Integral):
        return str(int(x))
    if isinstance(x, numbers.Real):
        x = float(x)
        if math.isfinite(x) and x.is_integer() and abs(x) < 1e16:
            return str(int(x))
        return repr(x)
    return repr(x)


@dataclass(frozen=True)
class Bound:
    """A valid interval: ``low`` .. ``high`` (None: unbounded on that side; ``*_open``: the end is excluded),
    whole numbers only when ``integer``. NaN and infinities are never inside."""

    low: float | None
    high: float | None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Integral) and not math.isfinite(float(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        """``a number between 0 and 0.5``, ``a whole number between 0 and 1000000``, ``a number greater than 0 and
        at most 1000``, ..."""
        kind = "a whole number" if self.integer else "a number"
        low = None if self.low is None else ("greater than " if self.low_open else "at least ") + _num(self.low)
        high = None if self.high is None else ("less than " if self.high_open else "at most ") + _num(self.high)
        if low and high and not self.low_open and not self.high_open:
            return f"{kind} between {_num(self.low)} and {_num(self.high)}"
        return " ".join([kind, " and ".join(part for part in (low, high) if part)]).strip()

    def interval(self) -> str:
        """The range in interval notation: ``[0, 0.5]``, ``(0, 1000]``; whole numbers as ``0 .. 1000000``."""
        low = "-inf" if self.low is None else _num(self.low)
        high = "inf" if self.high is None else _num(self.high)
        if self.integer:
            return f"{low} .. {high} (whole)"
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


STEPS = Bound(0, 1_000_000, integer=True)
"""Optimiser steps of a stage: 0 (skip the stage) .. one million (days on a GPU)."""
SEED = Bound(0, 2**32 - 1, integer=True)
"""Seeds: what ``torch.Generator.manual_seed`` and ``numpy.random.seed`` both accept (0 .. 2**32 - 1)."""
LEARNING_RATE = Bound(0, 1000, low_open=True)
"""Adam learning rates: the paper uses 0.01 (W+) and 5 (noise maps)."""
FEATHER = Bound(0, 0.5)
"""Mask blur (and dilation) as a fraction of the image side: 0.03 is 3 %, 0.5 is half the side."""
WEIGHT = Bound(0, 1e6)
"""Loss weights relative to the others (Adam ignores the overall scale): 0 switches a term off."""
STYLE_WEIGHT = Bound(0, 1e9, low_open=True)
"""λ_s of the Gram style term (default 5e4, see :data:`.style_transfer.DEFAULT_STYLE_WEIGHT`)."""
THRESHOLD = Bound(0, 1, low_open=True, high_open=True)
"""Per-channel change (0-1 scale) that marks a pixel as scribbled."""
ALPHA = Bound(0, 1)
"""Weight of A when averaging activations."""
TRUNCATION = Bound(0, 1)
"""ψ of the truncation trick (1 = none; above 1 extrapolates away from the mean face)."""
AMOUNT = Bound(-10, 10)
"""λ of the W+ arithmetic (morph, expression); beyond ±10 the code leaves the space the generator was trained on."""
MAX_RESOLUTION = Bound(1, 4096, integer=True)
"""A layer output size in px."""
LAST_ROWS = Bound(0, 64, integer=True)
"""A count of W+ rows (no generator has more than 64)."""
ROW = Bound(0, 255, integer=True)
"""A W+ row index (each generator then checks it has that row)."""
PSNR_TARGET = Bound(0, 100, low_open=True)
"""A PSNR to stop at, in dB (float32 images cannot be told apart beyond ~100 dB)."""
LPIPS_TARGET = Bound(0, 1)
"""An LPIPS distance to stop at (0 = identical features)."""


def setting(default: Any, bound: Bound, doc: str, *, option: str | None = None, optional: bool = False,
            items: bool = False) -> Any:
    """A dataclass field whose value must lie in ``bound`` (see the module doc).

    Args:
        default: the field's default (it must be valid itself).
        doc: what the value means, shown in the error message and the docs table, e.g. "a fraction of the image
            side: 0.03 is 3 %".
        option: the command-line spelling; default ``--`` + the field name with dashes.
        optional: None is allowed too (e.g. "use the default rule").
        items: the value is None or a non-empty sequence, each element in ``bound`` (e.g. W+ rows).
    """
    return dataclasses.field(default=default, metadata={RANGE_KEY: bound, "doc": doc, "option": option,
                                                        "optional": optional, "items": items})


def field_option(field: dataclasses.Field) -> str:
    """The option a field's messages name: its ``option`` metadata, or ``--`` + its name with dashes."""
    return field.metadata.get("option") or "--" + field.name.replace("_", "-")


def check_value(value: Any, bound: Bound, option: str, doc: str = "", *, optional: bool = False,
                items: bool = False) -> None:
    """Raise :class:`InputError` naming ``option`` unless ``value`` lies in ``bound`` (see :func:`setting`)."""
    if optional and value is None:
        return
    meaning = f" ({doc})" if doc else ""
    if items:
        ok = (isinstance(value, Sequence) and not isinstance(value, str | bytes) and len(value) > 0
              and all(bound.contains(v) for v in value))
        if not ok:
            shown = list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else value
            raise InputError(f"{option} must be a non-empty list of {_plural(bound.describe())}{meaning}, "
                             f"got {_got(shown, bound.integer)}")
        return
    if not bound.contains(value):
        raise InputError(f"{option} must be {bound.describe()}{meaning}, got {_got(value, bound.integer)}")


def _plural(described: str) -> str:
    return described.replace("a whole number", "whole numbers", 1).replace("a number", "numbers", 1)


def _got(value: Any, integer: bool = False) -> str:
    """The value given, as the message shows it: 3 for 3.0 where any number is fine, 3.0 where only whole numbers
    are (so "a whole number ..., got 3.0" makes sense)."""
    if isinstance(value, bool):
        return f"{value} (a yes/no value)"
    if integer and isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return repr(float(value))
    if isinstance(value, numbers.Real):
        return _num(value)
    if isinstance(value, list):
        return "[" + ", ".join(_got(v, integer) for v in value) + "]"
    return repr(value)


def check_ranges(settings: Any) -> None:
    """Check every field declared with :func:`setting` (and every ``choices`` field) of a settings dataclass
    instance; call it from ``__post_init__``.

    Raises:
        InputError: the first field out of its range, naming its option, its valid range and the value given.
    """
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if RANGE_KEY in field.metadata:
            check_value(value, field.metadata[RANGE_KEY], field_option(field), field.metadata.get("doc", ""),
                        optional=field.metadata.get("optional", False), items=field.metadata.get("items", False))
        elif "choices" in field.metadata:
            check_choices(value, field.metadata["choices"], field_option(field))


def choice(default: str, choices: Sequence[str], doc: str, *, option: str | None = None) -> Any:
    """A text setting that must be one of ``choices`` (checked by :func:`check_ranges`)."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices), "doc": doc, "option": option})


def check_choices(value: Any, choices: Sequence[str], option: str) -> None:
    if value not in choices:
        raise InputError(f"{option} must be one of {', '.join(choices)}, got {_got(value)}")


def check_not_all_zero(settings: Any, names: Sequence[str], why: str) -> None:
    """Refuse settings whose weights ``names`` are all 0 (each is already known to be >= 0)."""
    if all(getattr(settings, name) == 0 for name in names):
        options = [field_option(f) for f in dataclasses.fields(settings) if f.name in names]
        raise InputError(f"{' and '.join(options)} cannot {'both' if len(options) == 2 else 'all'} be 0: {why}")


def ranges_table(classes: Iterable[type], extra: Iterable[tuple[str, str, Bound, str, Any, str]] = (),
                 owner: Callable[[type, str], Sequence[str]] | None = None) -> str:
    """A Markdown table of every checked setting of ``classes``: one row per option (and range and meaning), with
    each default and where it applies.

    Args:
        extra: further rows as (option, setting, bound, meaning, default, where), e.g. ``i2s sample``'s.
        owner: ``owner(settings_class, option)`` lists where a setting applies (default: the class's name).
    """
    rows: dict[tuple, dict[str, list[str]]] = {}

    def add(option: str, name: str, valid: str, doc: str, default: Any, where: Sequence[str]) -> None:
        shown = "unset" if default is None else default if isinstance(default, str) else _num(default)
        places = rows.setdefault((option, name, valid, doc), {}).setdefault(shown, [])
        places.extend(place for place in where if place not in places)

    for cls in classes:
        for field in dataclasses.fields(cls):
            meta = field.metadata
            if RANGE_KEY in meta:
                bound: Bound = meta[RANGE_KEY]
                valid = f"list of {bound.interval()}" if meta.get("items") else bound.interval()
                valid += " or unset" if meta.get("optional") else ""
            elif "choices" in meta:
                valid = " / ".join(meta["choices"])
            else:
                continue
            option = field_option(field)
            add(option, field.name, valid, meta.get("doc", ""), field.default,
                owner(cls, option) if owner else [cls.__name__])
    for option, name, bound, doc, default, where in extra:
        add(option, name, bound.interval(), doc, default, [where])
    lines = ["| option | setting | valid values | meaning | default (where) |", "|---|---|---|---|---|"]
    for (option, name, valid, doc), defaults in sorted(rows.items()):
        where = "; ".join(f"{default} ({', '.join(places)})" for default, places in defaults.items())
        lines.append(f"| `{option}` | `{name}` | {valid} | {doc} | {where} |")
    return "\n".join(lines)
