"""Re-thresholding consensus over 50,000 stored candidates: an indexed SQL query vs a Python rescan.

The reference reads every stored row and applies ``curate.consensus.passes`` in Python (what an app without
the stored-score query would do); ours is ``Store.count_passing`` + ``min_pairwise_histogram``. Both must give
the same counts. Prints BENCH lines.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import fill_store  # noqa: E402

from curate.consensus import passes  # noqa: E402
from curate.store import Store  # noqa: E402

N = int(os.environ.get("BENCH_N", "50000"))


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        st = Store(Path(d) / "bench.db")
        t0 = time.perf_counter()
        fill_store(st, N)
        print(f"filled {N} candidates in {time.perf_counter() - t0:.1f}s")
        taus = [i / 40 for i in range(40)]
        ours, counts, ref = [], [], []
        for tau in taus:
            t = time.perf_counter()
            got = st.count_passing(tau)["passing"]
            counts.append(time.perf_counter() - t)
            st.min_pairwise_histogram(20)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            want = sum(passes(r["reason"], r["min_pairwise"], bool(r["chosen_nonempty"]), tau)
                       for r in st.db.query("SELECT reason, min_pairwise, chosen_nonempty, pairwise FROM consensus")
                       if json.loads(r["pairwise"]) is not None)
            ref.append(time.perf_counter() - t)
            assert got == want, (tau, got, want)
        p50 = statistics.median(ours) * 1000
        p95 = sorted(ours)[int(0.95 * len(ours)) - 1] * 1000
        print(f"threshold change (count + histogram), {N} candidates: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        print(f"python rescan reference: median {statistics.median(ref) * 1000:.1f} ms")
        count_p95 = sorted(counts)[int(0.95 * len(counts)) - 1] * 1000
        print(f"pass count alone (what a tau change needs; the histogram does not depend on tau): p95 {count_p95:.1f} ms")
        print(f"BENCH threshold_change_p95_ms={p95:.1f}")
        print(f"BENCH threshold_count_p95_ms={count_p95:.1f}")
        print(f"BENCH threshold_speedup_vs_rescan={statistics.median(ref) / statistics.median(ours):.1f}")
        print("BENCH threshold_counts_identical=1")


if __name__ == "__main__":
    main()
