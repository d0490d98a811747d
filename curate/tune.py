"""Per-machine defaults for the transformers backend, picked from a measured curve (`curate models tune`).

The fastest batch size and thread count depend on the machine (cores, cache, memory bandwidth) and the model, so
they are measured, not guessed: :func:`tune` runs the backend's own decoder on Ensemble-Instruct instruction
prompts (about 300 tokens, built from the shipped seeds, so the prefill/decode mix is a real run's) at each batch
size, then at the best batch with each thread count, and :func:`pick` takes the smallest batch (and the fewest
threads) within ``tolerance`` of the fastest — a larger batch that is no faster only costs memory and latency.

The picks are stored per machine in ``tuning.json`` beside the model cache (``~/.cache/curate/tuning.json``;
``$CURATE_TUNING`` names another file), keyed by :func:`machine_key` (CPU or GPU model, logical CPUs, torch
version) and model, with the whole curve. They become defaults, never overrides:

* :func:`backend_defaults` — an :class:`~curate.lm.hf.HFBackend` built without ``batch_size`` takes the tuned
  batch for its model (else 8), and sets torch's threads to the tuned count unless ``OMP_NUM_THREADS`` or
  ``CURATE_THREADS`` says otherwise;
* :func:`default_batch_size` — the stages' "prompts per model call" default (``GenerateConfig``,
  ``EnsembleConfig``, the settings file) is the largest tuned batch on this machine, so every tuned backend can
  fill its batch (each still splits a call into its own tuned chunks); 8 with nothing tuned.

A file that cannot be read is reported once and ignored: tuning never stops a run.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from .errors import CurateError

__all__ = ["DEFAULT_BATCH", "Tuned", "machine_key", "tuning_path", "tuned", "default_batch_size",
           "backend_defaults", "pick", "measure", "tune", "probe_prompts"]

DEFAULT_BATCH = 8  # what a backend and a stage use when nothing is tuned
BATCHES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Tuned:
    """A model's tuned defaults on this machine and the curve they came from (new tokens/s by batch, and by
    threads at that batch)."""
    batch_size: int
    threads: int
    curve: dict
    measured_at: str


@functools.lru_cache(maxsize=1)
def machine_key() -> str:
    """What the picks depend on: the accelerator (or CPU model), the logical CPUs and the torch version (the
    same for the whole process, so worked out once: every stage Config's default reads it)."""
    import torch
    if torch.cuda.is_available():
        device = f"cuda {torch.cuda.get_device_name(0)}"
    else:
        device = _cpu_model() or platform.processor() or platform.machine()
    return f"{device} | {os.cpu_count()} cpus | torch {torch.__version__}"


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def tuning_path() -> Path:
    """``$CURATE_TUNING``, else ``tuning.json`` beside the model cache."""
    env = os.environ.get("CURATE_TUNING")
    if env:
        return Path(env).expanduser()
    from .lm.registry import cache_dir
    return cache_dir().parent / "tuning.json"


_warned: set[str] = set()


def _read(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        if str(path) not in _warned:
            _warned.add(str(path))
            warnings.warn(f"ignoring the tuning file {path}: {exc}. Run `curate models tune` to write it again "
                          "(the built-in defaults are used meanwhile)", stacklevel=3)
        return {}


def _entries() -> dict:
    """This machine's tuned models: {model_id: entry}."""
    entries = _read(tuning_path()).get(machine_key(), {})
    return entries if isinstance(entries, dict) else {}


def tuned(model_id: str) -> Tuned | None:
    """The tuned defaults of ``model_id`` on this machine, or None."""
    e = _entries().get(model_id)
    try:
        return Tuned(int(e["batch_size"]), int(e["threads"]), dict(e.get("curve", {})), str(e.get("measured_at", "")))
    except (TypeError, KeyError, ValueError):
        return None


def default_batch_size() -> int:
    """The stages' default prompts per model call: the largest tuned batch on this machine, else 8."""
    batches = []
    for model_id in _entries():
        t = tuned(model_id)
        if t is not None and 1 <= t.batch_size <= 256:
            batches.append(t.batch_size)
    return max(batches, default=DEFAULT_BATCH)


def backend_defaults(model_id: str) -> tuple[int, int | None]:
    """(batch size, threads or None) for a backend of ``model_id`` built without a batch size: the tuned ones,
    else (8, None). Threads are None too where ``OMP_NUM_THREADS`` or ``CURATE_THREADS`` is set (the user's)."""
    t = tuned(model_id)
    if t is None:
        return DEFAULT_BATCH, None
    user_threads = os.environ.get("CURATE_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return t.batch_size, (None if user_threads else t.threads)


def pick(rates: dict, tolerance: float = 0.05) -> int:
    """The smallest key whose rate is within ``tolerance`` of the best rate (ties to less memory and latency)."""
    if not rates:
        raise ValueError("nothing was measured")
    best = max(rates.values())
    return min(k for k, v in rates.items() if v >= (1 - tolerance) * best)


def probe_prompts(k: int, seed: int = 0) -> list[str]:
    """``k`` distinct instruction prompts as generation builds them (24 type-A seed demos each, about 300 tokens)."""
    from . import prompts
    from .seeds import load_seeds, split_by_type
    seeds = [s.instruction for s in split_by_type(load_seeds())["A"]]
    return [prompts.instruction_prompt(seeds, [], random.Random(seed + i), demos=24).text for i in range(k)]


def measure(lm, batch: int, *, new_tokens: int = 32, prompts: Sequence[str] | None = None) -> float:
    """New tokens per second of ``lm`` generating ``new_tokens`` for ``batch`` distinct prompts at once."""
    from .lm.base import GenParams
    texts = list(prompts) if prompts is not None else probe_prompts(batch)
    params = GenParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens, repetition_guard=False, seed=0)
    lm.batch_size = batch
    if hasattr(lm, "_prefixes"):
        lm._prefixes.clear()  # each probe prefills its own prompts
    t0 = time.perf_counter()
    out = lm.generate(texts, params)
    return sum(c.completion_tokens for c in out) / (time.perf_counter() - t0)


def tune(spec: str = "smollm2-135m-instruct", *, batches: Sequence[int] = BATCHES,
         threads: Sequence[int] | None = None, new_tokens: int = 32, tolerance: float = 0.05,
         lm=None, progress: Callable[[str], None] | None = None, save: bool = True) -> Tuned:
    """Measure ``spec``'s curve on this machine, pick its batch size and threads, store them (``save``) and
    return them. ``threads`` default: 1, half and all of the logical CPUs. ``lm``: a loaded backend to measure
    (else ``spec`` is loaded). Raises CurateError for a model that is not a transformers backend or bad lists."""
    import torch
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1 or batches[-1] > 256:
        raise CurateError(f"--batches must be sizes between 1 and 256 (got {list(batches)})")
    cpus = os.cpu_count() or 1
    threads = sorted({int(t) for t in (threads or (1, max(1, cpus // 2), cpus))})
    if threads[0] < 1:
        raise CurateError(f"--threads must be at least 1 (got {threads})")
    if new_tokens < 1:
        raise CurateError(f"--new-tokens must be at least 1 (got {new_tokens})")
    say = progress or (lambda m: None)
    if lm is None:
        from .lm.registry import load_lm
        lm = load_lm(spec, batch_size=batches[-1])
    if not isinstance(getattr(lm, "model", None), torch.nn.Module) or not hasattr(lm, "batch_size"):
        raise CurateError(f"{spec}: only a transformers backend (an embedded name, a Hugging Face id or folder) "
                          "is tuned here; a server or vLLM batches on its own")
    model_id = getattr(lm, "model_id", spec)
    before, batch_before = torch.get_num_threads(), lm.batch_size
    try:
        torch.set_num_threads(threads[-1])
        measure(lm, 1, new_tokens=2)  # warm-up
        by_batch = {}
        for b in batches:
            by_batch[b] = measure(lm, b, new_tokens=new_tokens)
            say(f"batch {b:>3}: {by_batch[b]:7.1f} new tok/s ({threads[-1]} threads)")
        batch = pick(by_batch, tolerance)
        by_threads = {threads[-1]: by_batch[batch]}
        for t in threads[:-1]:
            torch.set_num_threads(t)
            by_threads[t] = measure(lm, batch, new_tokens=new_tokens)
            say(f"threads {t:>2}: {by_threads[t]:7.1f} new tok/s (batch {batch})")
        n_threads = pick(by_threads, tolerance)
    finally:  # the backend is left as it was given
        torch.set_num_threads(before)
        lm.batch_size = batch_before
    result = Tuned(batch, n_threads, {"new_tok_s_by_batch": {str(k): round(v, 2) for k, v in by_batch.items()},
                                      "new_tok_s_by_threads": {str(k): round(v, 2) for k, v in by_threads.items()},
                                      "new_tokens": new_tokens, "tolerance": tolerance,
                                      "threads_for_batches": threads[-1]},
                   datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if save:
        _save(model_id, result)
    return result


def _save(model_id: str, t: Tuned) -> None:
    """Write ``t`` for ``model_id`` under this machine's key, keeping everything else: the read-modify-write
    under an exclusive lock taken first (two tunes at once keep both), the file replaced atomically."""
    import fcntl
    path = tuning_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read(path)
        data.setdefault(machine_key(), {})[model_id] = {"batch_size": t.batch_size, "threads": t.threads,
                                                        "curve": t.curve, "measured_at": t.measured_at}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
