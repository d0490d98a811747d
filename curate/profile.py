"""Where a stage's wall time goes: exclusive seconds per phase (``curate generate --profile``, bench/pipeline.py).

A phase entered inside another pauses it, so the phases add up to the wall time of the outermost one and
nothing is counted twice: the store phase around a batch's transaction does not include the parsing and
filtering done inside it. A backend that times its own phases (the transformers backend's ``phase_seconds``:
prefill and decode) splits the model phase further with :meth:`Profile.split`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Mapping

__all__ = ["Profile", "format_profile", "GENERATE_PHASES"]

#: The generation stage's phases, in pipeline order (docs/ARCHITECTURE.md, "Profiling a run").
GENERATE_PHASES = ("prompt", "prefill", "decode", "model", "parse", "filter", "store", "other")


class Profile:
    """Exclusive wall seconds and entry counts per phase name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [name, started] of the open phases, innermost last

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:  # pause the enclosing phase
            outer = self._stack[-1]
            self._add(outer[0], now - outer[1])
        self._stack.append([name, now])
        self.calls[name] = self.calls.get(name, 0) + 1
        try:
            yield
        finally:
            end = time.perf_counter()
            name_, started = self._stack.pop()
            self._add(name_, end - started)
            if self._stack:  # resume it
                self._stack[-1][1] = end

    def split(self, whole: str, parts: Mapping[str, float]) -> None:
        """Move ``parts`` (seconds measured inside ``whole``, e.g. a backend's prefill and decode) out of
        ``whole``; what is left of ``whole`` is the rest of the calls (tokenising, scheduling, transfers)."""
        total = sum(max(v, 0.0) for v in parts.values())
        have = self.seconds.get(whole, 0.0)
        scale = min(1.0, have / total) if total > 0 else 0.0  # never more than the phase itself measured
        for name, v in parts.items():
            self._add(name, max(v, 0.0) * scale)
        self.seconds[whole] = have - total * scale

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


def format_profile(seconds: Mapping[str, float], order: tuple[str, ...] = GENERATE_PHASES) -> str:
    """A text table: phase, seconds, share of the total; phases in ``order`` first, then any others."""
    total = sum(seconds.values()) or 1.0
    names = [n for n in order if n in seconds] + sorted(n for n in seconds if n not in order)
    lines = [f"{'phase':<8} {'seconds':>9} {'share':>7}"]
    lines += [f"{n:<8} {seconds[n]:>9.2f} {100 * seconds[n] / total:>6.1f}%" for n in names]
    lines.append(f"{'total':<8} {sum(seconds.values()):>9.2f} {100.0:>6.1f}%")
    return "\n".join(lines)
