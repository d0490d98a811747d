"""The Stage contract: what every background stage (generate, ensemble, score, teachers, embed, import, …) offers
the job runner, and the one progress shape they all report.

A stage is a module exposing

* ``Config``: a pydantic model (``extra="forbid"``) holding everything a run needs; it is validated when the
  job is created and stored with the job for provenance;
* ``run(store, config, ctx) -> dict | None``: does the work, resumable by construction (it continues from
  the rows already stored), reports through ``ctx.report(...)``, checks ``ctx.should_stop()`` between steps
  and raises :class:`~curate.errors.Stopped` when asked to stop (within a model call too: it passes
  ``ctx.generation_hook(...)`` as the backend's ``progress``, which reports the tokens so far and checks the
  stop flag between decode steps); it may return a small JSON-able summary
  (kept as ``progress.result``);
* optionally ``check(store, config)``: a preflight that raises a :class:`~curate.errors.CurateError` naming
  the fix (nothing to score yet, an empty pool, …), called before a job is created, so a request that
  cannot succeed is refused at once instead of failing in the background.

:mod:`curate.jobs` registers stages by name and knows nothing about any one of them; the Run tab and
``curate jobs`` render every stage's progress with :func:`describe`. How to add a stage is in
docs/ARCHITECTURE.md ("Adding a stage").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from pydantic import BaseModel

from .errors import Stopped

__all__ = ["Stage", "Progress", "StageContext", "describe", "ProgressView", "live_tokens"]

#: Seconds between two progress reports from inside a model call (each is a small write to the job row).
REPORT_EVERY_S = 0.5
#: Seconds between two checks of the stop flag from inside a model call (each is a small read).
STOP_EVERY_S = 0.2


class Stage(Protocol):
    """The shape of a stage module (see the module docstring)."""

    Config: type[BaseModel]

    def run(self, store: Any, config: BaseModel, ctx: "StageContext") -> dict | None: ...


@dataclass
class Progress:
    """One stage's progress, the same shape for every stage (stored as JSON in ``jobs.progress``).

    ``phase``: what the stage is doing now ("instructions A", "outputs qwen…", "consensus", "done");
    ``done`` / ``total``: units finished of this phase (None where the phase has no count); ``unit``: what
    they count; ``counts``: named extra figures, a number or a ``{reason: n}`` table each (e.g. filtered
    instructions by reason); ``rate``: ``done`` per second in this phase, measured; ``eta_s``: seconds left at
    that rate (None while it cannot be estimated yet); ``tok_s``: generated tokens per second of model time,
    where the stage generates; ``warnings``; ``result``: the stage's summary once it ended.
    """

    phase: str = "starting"
    done: int | None = None
    total: int | None = None
    unit: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    rate: float | None = None
    eta_s: float | None = None
    tok_s: float | None = None
    warnings: list[str] = field(default_factory=list)
    result: dict | None = None

    def as_dict(self) -> dict:
        return {"phase": self.phase, "done": self.done, "total": self.total, "unit": self.unit,
                "counts": _plain(self.counts), "rate": self.rate, "eta_s": self.eta_s, "tok_s": self.tok_s,
                "warnings": list(self.warnings), "result": self.result}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Progress":
        """The stored JSON back as a Progress. Job rows written before the Stage contract (flat dicts with a
        ``stage`` key and stage-specific fields) come back with their fields under ``counts``."""
        d = dict(d or {})
        if "phase" not in d:  # a job stored by curate 0.1
            phase = str(d.pop("stage", "starting"))
            done, total = d.pop("done", d.get("kept")), d.pop("total", d.get("target"))
            warnings, result = d.pop("warnings", []) or [], d.pop("result", None)
            tok_s, eta_s = d.pop("tok_s", None), d.pop("eta_s", None)
            return cls(phase=phase, done=done, total=total, counts=d, tok_s=tok_s, eta_s=eta_s,
                       warnings=list(warnings), result=result)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def _plain(v: Any) -> Any:
    """Counters and other mappings → plain dicts (JSON-able), recursively."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class StageContext:
    """What a running stage gets besides the store and its config: the job id, the model pool, one way to
    report progress and one way to ask whether to stop.

    ``report(done=…, total=…, phase=…, unit=…, tok_s=…, warnings=…, result=…, **counts)`` updates the progress
    (fields left out keep their value; ``counts`` are merged) and hands it to ``on_progress``. The rate and
    the ETA are measured here, per phase: from the first report of a phase, ``done`` per second of wall time.
    """

    def __init__(self, *, job_id: str | None = None, pool: Any = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, clock: Callable[[], float] = time.monotonic):
        if pool is None:
            from .mixture import ModelPool
            pool = ModelPool()
        self.job_id, self.pool = job_id, pool
        self.progress = Progress()
        self._on_progress = on_progress or (lambda p: None)
        self._should_stop = should_stop or (lambda: False)
        self._clock = clock
        self._phase_start: tuple[float, int | None] | None = None

    def should_stop(self) -> bool:
        """Whether the job was asked to pause or cancel: stop at the next step boundary."""
        return bool(self._should_stop())

    def check_stop(self) -> None:
        """Raise :class:`~curate.errors.Stopped` when :meth:`should_stop` is true."""
        if self.should_stop():
            raise Stopped()

    def generation_hook(self, live: Callable[[int], dict] | None = None, *, report_every_s: float | None = None,
                        stop_every_s: float | None = None) -> Callable[[int], None]:
        """A backend ``progress`` hook (curate.lm.base) for one ``generate`` call: it checks the stop flag
        (raising Stopped, which the backend lets propagate) at most every ``stop_every_s`` and reports
        ``live(tokens)`` (keyword arguments of :meth:`report`, e.g. the tokens so far and the live rate) at
        most every ``report_every_s``, so a batch that takes minutes still moves the counters and the ETA.
        The hook's tokens are the call's own (cumulative within the call)."""
        report_every_s = REPORT_EVERY_S if report_every_s is None else report_every_s
        stop_every_s = STOP_EVERY_S if stop_every_s is None else stop_every_s
        last = {"stop": self._clock(), "report": self._clock()}

        def hook(tokens: int) -> None:
            now = self._clock()
            if now - last["stop"] >= stop_every_s:
                last["stop"] = now
                self.check_stop()
            if live is not None and now - last["report"] >= report_every_s:
                last["report"] = now
                self.report(**live(int(tokens)), remeasure=True)
        return hook

    def warn(self, text: str) -> None:
        if text not in self.progress.warnings:
            self.progress.warnings.append(text)

    def report(self, *, done: int | None = None, total: int | None = None, phase: str | None = None,
               unit: str | None = None, tok_s: float | None = None, warnings: list[str] | None = None,
               result: dict | None = None, remeasure: bool = False, **counts: Any) -> Progress:
        """Update the progress and hand it on. ``remeasure``: a report from inside a step (``done`` did not
        move): the rate and the ETA are measured again, so they account for the time the step takes."""
        p = self.progress
        if phase is not None and phase != p.phase:
            p.phase, self._phase_start = phase, None
            p.rate = p.eta_s = None
        for name, value in (("total", total), ("unit", unit), ("tok_s", tok_s), ("result", result)):
            if value is not None:
                setattr(p, name, value)
        if warnings is not None:
            for w in warnings:
                self.warn(w)
        p.counts.update(_plain(counts))
        if done is not None:
            p.done = done
        if done is not None or (remeasure and p.done is not None):
            self._measure()
        self._on_progress(p)
        return p

    def _measure(self) -> None:
        p, now = self.progress, self._clock()
        if self._phase_start is None:
            self._phase_start = (now, p.done)
        else:
            t0, d0 = self._phase_start
            elapsed, moved = now - t0, (p.done or 0) - (d0 or 0)
            p.rate = moved / elapsed if elapsed > 0 and moved > 0 else None
        if p.total is not None and p.done is not None and p.done >= p.total:
            p.eta_s = 0.0
        elif p.rate and p.total is not None:  # work is left: never "0 s"
            p.eta_s = max(1.0, (p.total - p.done) / p.rate)
        else:  # nothing measured yet in this phase: "estimating"
            p.eta_s = None


def live_tokens(tokens_before: int, seconds_before: float, t0: float,
                clock: Callable[[], float] = time.perf_counter) -> Callable[[int], dict]:
    """The ``live`` argument of :meth:`StageContext.generation_hook` for a stage that counts ``tokens`` and
    ``tok_s``: ``tokens_before`` / ``seconds_before`` are the run's figures before the call started at ``t0``."""
    def live(tokens: int) -> dict:
        seconds = seconds_before + clock() - t0
        total = tokens_before + tokens
        return {"tokens": total, "tok_s": round(total / seconds, 2) if seconds > 0 else None}
    return live


@dataclass
class ProgressView:
    """How a Progress reads to a person (the Run tab and ``curate jobs`` show these)."""

    phase: str
    counts: str                    # one line: "12 / 20 instructions kept · tokens 4,021 · …"
    extras: str                    # the same without the done / total part: "tokens 4,021 · …"
    rate: str                      # "31.2 tok/s", or "—"
    eta: str                       # "3 min 10 s", "estimating", "done", or "—"
    rows: list[tuple[str, str]]    # the {reason: n} tables, flattened: ("filtered: keyword", "3")
    warnings: list[str]


def duration(s: float | None) -> str:
    """Seconds → "42 s", "3 min 10 s", "1 h 5 min"; None → "—"."""
    if s is None:
        return "—"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def _number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def describe(progress: Progress | dict | None, state: str = "running") -> ProgressView:
    """A Progress (or its stored JSON) in words, the same way for every stage. ``state``: the job's state
    (the ETA reads "done" once it is done, "—" when it is not running)."""
    p = progress if isinstance(progress, Progress) else Progress.from_dict(progress)
    head = []
    if p.done is not None:
        head.append(f"{p.done:,}" + (f" / {p.total:,}" if p.total is not None else "") + (f" {p.unit}" if p.unit
                                                                                           else ""))
    parts: list[str] = []
    rows: list[tuple[str, str]] = []
    for name, v in p.counts.items():
        if isinstance(v, dict):
            rows += [(f"{name}: {k}", _number(n)) for k, n in sorted(v.items())]
        elif v:  # a zero says nothing yet (e.g. "candidates 0" during the instruction phases)
            parts.append(f"{name.replace('_', ' ')} {_number(v)}")
    for name, v in sorted((p.result or {}).items()):
        if not isinstance(v, (dict, list)):
            rows.append((f"result: {name}", _number(v)))
    if state == "done" or p.phase == "done":
        eta = "done"
    elif state not in ("running", "pausing", "cancelling"):
        eta = "—"
    else:
        eta = duration(p.eta_s) if p.eta_s is not None else "estimating"
    rate = f"{p.tok_s:.1f} tok/s" if p.tok_s else (f"{p.rate:.2f} {p.unit or 'units'}/s" if p.rate else "—")
    return ProgressView(phase=p.phase, counts=" · ".join(head + parts), extras=" · ".join(parts), rate=rate, eta=eta,
                        rows=rows, warnings=list(p.warnings))
