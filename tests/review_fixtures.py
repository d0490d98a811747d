"""Shared helpers of the review/app tests: a filled temporary store and a scripted model pool.

``scripted_pool()`` holds ScriptedLM objects under the embedded model names, answering the generation,
instance and ensembling prompts with plausible, distinct texts, so real generation and ensembling jobs run
in well under a second (``delay`` slows each call down to watch progress in a browser).
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from curate.lm.scripted import ScriptedLM  # noqa: E402
from curate.mixture import ModelPool  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui.synthetic import fill  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-0.5b-instruct")
XSS = ('<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2; alert(2)"> '
       '[click me](javascript:alert(3)) **bold**')
_WORDS = ("amber", "basalt", "cobalt", "delta", "ember", "fjord", "gravel", "harbor", "iris", "jasper", "kelp",
          "lagoon", "marble", "nectar", "onyx", "pollen", "quartz", "reef", "saffron", "tundra", "umber",
          "velvet", "willow", "xenon", "yarrow", "zephyr", "acorn", "birch", "cedar", "dune", "estuary",
          "fern", "geyser", "heath", "inlet", "juniper", "knoll", "lichen", "moss", "nebula")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_processes(target, arg_lists) -> list:
    """Run ``target(*args, conn)`` in one forked process per ``args`` at once; return what each sent on ``conn``,
    in order (concurrency tests run across processes, not threads)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for args in arg_lists:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=target, args=(*args, child))
        p.start()
        pipes.append(parent)
        procs.append(p)
    results = [parent.recv() for parent in pipes]
    for p in procs:
        p.join(60)
    return results


def review_steps(path, steps, conn) -> None:
    """In a process: open the store at ``path`` and run ``steps`` — ``(action, candidate_id, kwargs)`` with
    ``action`` a curate.review function name — sending back every failure as "Type: message"."""
    from curate import review
    errors = []
    with Store(path) as st:
        for action, cid, kw in steps:
            try:
                getattr(review, action)(st, cid, **kw)
            except Exception as e:  # noqa: BLE001 - every failure is what the caller counts
                errors.append(f"{type(e).__name__}: {e}")
    conn.send(errors)


def filled_store(path, n: int = 40, **kw) -> Store:
    """A store at ``path`` with ``n`` synthetic candidates (real consensus rows)."""
    store = Store(path)
    fill(store, n, **kw)
    return store


def _script(model: str, delay: float):
    counter = itertools.count()

    def answer(prompt: str) -> str:
        if delay:
            time.sleep(delay)
        i = next(counter)
        rng = random.Random(f"{model}:{prompt[-200:]}:{i}")
        words = " ".join(rng.choice(_WORDS) for _ in range(8))
        if prompt.startswith("Come up with a series of tasks"):
            return f" Describe {words} for a field guide. |EoS|"
        if prompt.startswith("Generate examples"):
            out = f"output: The {words}."
            return (f"input: A note about {rng.choice(_WORDS)} and {rng.choice(_WORDS)}.\n{out}"
                    if "requires input" in prompt.splitlines()[0] else out)
        # ensembling (zero-shot): agree with each other on most prompts
        seed = random.Random(prompt)
        agreed = " ".join(seed.choice(_WORDS) for _ in range(6))
        return f"The {agreed}." if seed.random() < 0.7 else f"The {words}."
    return answer


def scripted_pool(delay: float = 0.0) -> ModelPool:
    return ModelPool(preloaded={m: ScriptedLM(m, _script(m, delay)) for m in MODELS})
