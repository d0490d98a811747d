"""Batched vs one-by-one generation with the embedded SmolLM2 through the transformers backend.

The reference is the plain loop (one prompt per ``generate`` call); ours is one call with all 8 prompts
(one left-padded batch of 8). Greedy decoding, exactly 48 new tokens per prompt (``min_new_tokens`` holds
EOS back, no stop strings), so both do the same work; the outputs must be identical. (Rows that finish
early keep their batch slot until the batch ends, which lowers the gain in real runs.)
Prints ``BENCH generation_batched_speedup`` (goal >= 4 on 2 CPU cores) and
``BENCH generation_identical_outputs``.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curate.lm.base import GenParams  # noqa: E402
from curate.lm.registry import load_lm  # noqa: E402

PROMPTS = [
    "Come up with a series of tasks:\n1. Write a haiku about autumn. |EoS|\n"
    "2. Explain photosynthesis to a child. |EoS|\n3.",
    "Generate examples for the instructions. The instruction does not require input and generate the output only.\n\n"
    "instruction: Name three primary colors.\noutput: Red, blue and yellow.\n|EoS|\n\n"
    "instruction: Give a synonym for happy.\n",
    "instruction: Translate the sentence into French.\ninput: The cat is on the table.\noutput:",
    "The three most important inventions of the twentieth century are",
    "Write a short story about a robot who learns to paint.",
    "Q: What is the boiling point of water at sea level?\nA:",
    "List five tips for staying productive when working from home:\n1.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]
PARAMS = GenParams(temperature=0.0, max_new_tokens=48, min_new_tokens=48, repetition_guard=False)


def main() -> None:
    t0 = time.perf_counter()
    lm = load_lm("smollm2-135m-instruct", batch_size=8)
    print(f"loaded {lm.model_id} in {time.perf_counter() - t0:.1f}s")
    lm.generate(PROMPTS[:2], GenParams(max_new_tokens=4))  # warm-up

    t = time.perf_counter()
    single = [lm.generate([p], PARAMS)[0] for p in PROMPTS]
    t_single = time.perf_counter() - t
    t = time.perf_counter()
    batched = lm.generate(PROMPTS, PARAMS)
    t_batched = time.perf_counter() - t

    tokens = sum(c.completion_tokens for c in batched)
    print("completion tokens per prompt:", [c.completion_tokens for c in batched])
    identical = [a.text for a in single] == [b.text for b in batched]
    for i, (a, b) in enumerate(zip(single, batched)):
        if a.text != b.text:
            print(f"prompt {i} differs:\n  one-by-one: {a.text!r}\n  batched:    {b.text!r}")
    print(f"one by one: {t_single:.1f}s ({sum(c.completion_tokens for c in single) / t_single:.1f} tok/s)")
    print(f"batched:    {t_batched:.1f}s ({tokens / t_batched:.1f} tok/s, batch {lm.batch_size})")
    print(f"BENCH generation_batched_speedup={t_single / t_batched:.2f}")
    print(f"BENCH generation_identical_outputs={int(identical)}")


if __name__ == "__main__":
    main()
