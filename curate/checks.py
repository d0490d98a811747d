"""The one home of numeric input checks: the API, the app's handlers, the CLI and the library call these, so
every entry point refuses the same values with the same message (the place, the allowed range, the value).

Each check returns the value as a number, or raises :class:`~curate.errors.InputError` (a ``ValueError`` too)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import InputError


@dataclass(frozen=True)
class Range:
    """A named closed range ``[lo, hi]`` (``hi`` None: no upper bound) and what the number is."""

    name: str
    lo: float
    hi: float | None = None
    what: str = ""
    whole: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        span = f"from {self.lo:g} to {self.hi:g}" if self.hi is not None else f"of at least {self.lo:g}"
        return f"{kind} {span}" + (f" ({self.what})" if self.what else "")


TAU = Range("tau", 0.0, 1.0, "the consensus threshold τ: a Rouge-L F1")
ROUGE = Range("min pairwise Rouge-L", 0.0, 1.0, "a Rouge-L F1")
QUORUM = Range("reviews_per_candidate", 1, 20, "reviews each candidate needs", whole=True)
PAGE = Range("page", 1, None, "", whole=True)
PAGE_SIZE = Range("page_size", 1, 500, "rows per page", whole=True)


def number(value: Any, rng: Range, where: str) -> float | int:
    """``value`` as a number inside ``rng``; raises InputError naming ``where``, the range and the value."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or math.isnan(x) or x < rng.lo or (rng.hi is not None and x > rng.hi) \
            or (rng.whole and x != int(x)):
        raise InputError(f"{where}: {rng.name} must be {rng.describe()}, not {value!r}")
    return int(x) if rng.whole else x


def tau(value: Any, where: str) -> float:
    """τ in [0, 1] (see :data:`TAU`)."""
    return number(value, TAU, where)


def quorum(value: Any, where: str) -> int:
    """Reviews per candidate, 1 to 20 (see :data:`QUORUM`)."""
    return number(value, QUORUM, where)
