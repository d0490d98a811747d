"""Consensus: our ``consensus()`` vs scoring each triple with rouge-score, on 5,000 triples.

Triples are built from Alpaca-plus and Dolly open-QA outputs in ``../shared/data`` (env ``CURATE_SHARED_DATA``
overrides): a base answer, then o0, o1, o2 each either the base, a perturbed copy (words dropped, adjacent
words swapped, case and punctuation changed) or another answer from the pool (seeded).

1. ours: ``consensus([o0, o1, o2])`` (normalising, exact-match checks, the whole pairwise matrix, the choice);
2. reference: normalise the three outputs, then ``RougeScorer(["rougeL"], use_stemmer=True).score`` for the
   three pairs, as the reference code does (one scorer built once, which favours the reference: the
   reference code builds one per call);
3. every pairwise score must be identical (bit for bit).

Run: ``python bench/consensus.py``. Ends with ``BENCH name=value`` lines.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rouge_score import rouge_scorer  # noqa: E402

from curate.consensus import consensus, normalise  # noqa: E402

N_TRIPLES = 5000
SEED = 0


def shared_data() -> Path:
    return Path(os.environ.get("CURATE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_outputs(base: Path) -> list[str]:
    texts = []
    for name in ("human", "seen", "unseen"):
        texts += [r["output"] for r in json.load(open(base / f"pools/alpaca_subset/alpaca_plus_validation_{name}.json"))]
    texts += [json.loads(x)["response"] for x in (base / "pools/dolly_open_qa/dolly_open_qa.jsonl").open()]
    return [t for t in texts if t.strip()]


def perturb(rng: random.Random, text: str) -> str:
    words = text.split()
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if len(words) > 1 and r < 0.4:
            del words[rng.randrange(len(words))]
        elif len(words) > 1 and r < 0.8:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif words:
            i = rng.randrange(len(words))
            words[i] = words[i].upper() + rng.choice(["", ",", "."])
    return " ".join(words)


def make_triples(texts: list[str], rng: random.Random) -> list[list[str]]:
    triples = []
    for _ in range(N_TRIPLES):
        base = rng.choice(texts)
        triple = []
        for _ in range(3):
            r = rng.random()
            triple.append(base if r < 0.15 else perturb(rng, base) if r < 0.85 else rng.choice(texts))
        triples.append(triple)
    return triples


def main() -> None:
    base = shared_data()
    texts = load_outputs(base)
    triples = make_triples(texts, random.Random(SEED))
    n_tokens = sum(len(o.split()) for t in triples for o in t)
    print(f"data: {base}; {len(triples)} triples from {len(texts)} Alpaca/Dolly outputs, "
          f"{n_tokens / (3 * len(triples)):.1f} words per output on average")

    # 1) ours
    t0 = time.perf_counter()
    ours = [consensus(t) for t in triples]
    t_ours = time.perf_counter() - t0

    # 2) reference
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    t0 = time.perf_counter()
    ref = []
    for t in triples:
        n0, n1, n2 = (normalise(o) for o in t)
        ref.append((scorer.score(n1, n0)["rougeL"].fmeasure, scorer.score(n2, n0)["rougeL"].fmeasure,
                    scorer.score(n2, n1)["rougeL"].fmeasure))
    t_ref = time.perf_counter() - t0

    # 3) identical scores
    # (rows on the non-Latin fallback tokenizer differ from rouge-score by design: not compared)
    compared = [(r, f) for r, f in zip(ours, ref) if r.tokenizer == "rouge"]
    mismatches = sum((r.pairwise[0][1], r.pairwise[0][2], r.pairwise[1][2]) != f for r, f in compared)
    reasons: dict[str, int] = {}
    for r in ours:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    print(f"ours: {t_ours:.3f} s ({1e6 * t_ours / len(triples):.0f} us per triple); reference: {t_ref:.3f} s "
          f"({1e6 * t_ref / len(triples):.0f} us per triple)")
    print(f"reasons: {dict(sorted(reasons.items()))}; kept {sum(r.keep for r in ours)}")
    print(f"triples compared: {len(compared)} ({len(ours) - len(compared)} on the non-Latin fallback); "
          f"scores differing from rouge-score: {mismatches}")
    print(f"BENCH consensus_speedup={t_ref / t_ours:.1f}")
    print(f"BENCH consensus_identical={int(mismatches == 0)}")
    print(f"BENCH consensus_ours_seconds={t_ours:.4f}")
    print(f"BENCH consensus_reference_seconds={t_ref:.4f}")
    if mismatches:
        sys.exit(f"{mismatches} triples score differently from rouge-score")


if __name__ == "__main__":
    main()
