""""Accept all that pass" at scale: the set-based store method against its plain twin (one Store.review per
candidate), on two copies of the same synthetic store; prints the speed-up and whether both wrote the same.

    python bench/accept_all.py [--n 20000] [--tau 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate import review  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui.synthetic import fill  # noqa: E402


def state(st: Store) -> tuple:
    rows = st.review_queue(status=None, limit=10**7, snippet=10**6)
    log = st.review_log(limit=10**7)
    return ([(r["id"], r["review_status"], r["version"], r["output"]) for r in rows],
            sorted((r.candidate_id, r.action, r.version, json.dumps(r.before, sort_keys=True),
                    json.dumps(r.after, sort_keys=True)) for r in log))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--tau", type=float, default=0.3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="curate-bench-accept-"))
    try:
        t0 = time.perf_counter()
        with Store(work / "a.db") as st:
            fill(st, args.n, consensus="synthetic", batch=2000)
            st.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(work / "a.db", work / "b.db")
        print(f"filled {args.n:,} candidates in {time.perf_counter() - t0:.0f} s", flush=True)
        with Store(work / "a.db") as fast_store, Store(work / "b.db") as plain_store:
            t0 = time.perf_counter()
            fast = review.accept_all_passing(fast_store, args.tau, reviewer="bench")
            t_fast = time.perf_counter() - t0
            t0 = time.perf_counter()
            plain = review.accept_all_passing_reference(plain_store, args.tau, reviewer="bench")
            t_plain = time.perf_counter() - t0
            same = fast == plain and state(fast_store) == state(plain_store)
        print(f"BENCH accept_all_n={fast['accepted']}")
        print(f"BENCH accept_all_s={t_fast:.2f}")
        print(f"BENCH accept_all_reference_s={t_plain:.2f}")
        print(f"BENCH accept_all_speedup={t_plain / t_fast:.1f}")
        print(f"BENCH accept_all_identical={int(same)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
