"""Peak resident memory with the three default language models loaded together (goal <= 8 GB).

Loads SmolLM2-135M-Instruct, Gemma 3 270M and Qwen2.5-Coder-0.5B-Instruct through the registry (fp32 on
CPU), runs one short batched generation on each so the KV caches count too, and prints
``BENCH models_peak_rss_gb`` (the process's peak RSS).
"""

from __future__ import annotations

import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curate.lm.base import GenParams  # noqa: E402
from curate.lm.registry import load_lm  # noqa: E402

MODELS = ["smollm2-135m-instruct", "gemma3-270m", "qwen2.5-0.5b-instruct"]
PROMPTS = ["Come up with a series of tasks:\n1. Write a haiku about autumn. |EoS|\n2."] * 8


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def main() -> None:
    models = []
    for name in MODELS:
        t = time.perf_counter()
        models.append(load_lm(name))
        print(f"loaded {name} in {time.perf_counter() - t:.1f}s; peak RSS so far {peak_rss_gb():.2f} GB")
    for lm in models:
        t = time.perf_counter()
        out = lm.generate(PROMPTS, GenParams(max_new_tokens=16, stop=("|EoS|",)))
        print(f"{lm.model_id}: 8 x 16 tokens in {time.perf_counter() - t:.1f}s: {out[0].text!r}")
    print(f"BENCH models_peak_rss_gb={peak_rss_gb():.2f}")


if __name__ == "__main__":
    main()
