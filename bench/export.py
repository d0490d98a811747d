"""Exporting 50,000 accepted candidates to every format (curate.export), against just reading the rows.

The reference is the read alone: ``Store.export_rows`` (the query every export starts with, in ``seq``
order). Each format's time covers the read, building the rows, the dataset card, writing into a temporary
folder, fsync and the rename. Goal: ≤ 10 s per format. Prints BENCH lines:
``export_<fmt>_s`` per format, ``export_read_s`` and ``export_<fmt>_x_read`` (export time / read time).

    python bench/export.py [--n 50000] [--keep data/bench-export-50000.db]

The store is filled once through the store API (``curate.ui.synthetic.fill``, synthetic consensus) with
every candidate accepted through ``Store.review`` (a few minutes), cached at ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate import export as ex  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui.synthetic import fill  # noqa: E402
import synthetic  # noqa: E402  (bench/synthetic.py)


def cached_store(path: Path, n: int) -> None:
    """50K accepted candidates (every one reviewed, so the export takes them all)."""
    def build(st: Store) -> None:
        ids = fill(st, n, consensus="synthetic", batch=2000, rejected_every=0)
        for start in range(0, len(ids), 5000):
            with st.atomic():
                for i in ids[start:start + 5000]:
                    st.review(i, "accept", reviewer=f"reviewer{i[0]}")
    synthetic.cached_store(path, lambda st: st.review_counts().get("accepted", 0) >= n, build)


def best_of(k: int, fn) -> float:
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--keep", default="data/bench-export-50000.db")
    ap.add_argument("--repeat", type=int, default=2, help="runs per format; the best is reported")
    args = ap.parse_args()
    cached_store(Path(args.keep), args.n)
    work = Path(tempfile.mkdtemp())
    try:
        with Store(args.keep) as st:
            n = len(st.export_rows(("accepted",)))
            assert n == args.n, n
            read = best_of(args.repeat, lambda: st.export_rows(("accepted",)))
            times = {}
            for fmt in ex.FORMATS:
                out = work / fmt

                def run() -> None:
                    res = ex.export(st, fmt, out, force=True)
                    assert res.rows == n
                times[fmt] = best_of(args.repeat, run)
                size = sum(p.stat().st_size for p in out.iterdir())
                print(f"  {fmt:13} {times[fmt]:6.2f} s  {size / 1e6:7.1f} MB  ({n:,} rows)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"reading the {n:,} rows alone (Store.export_rows): {read:.2f} s")
    print(f"BENCH export_rows={n}")
    print(f"BENCH export_read_s={read:.2f}")
    for fmt, t in times.items():
        print(f"BENCH export_{fmt.replace('-', '_')}_s={t:.2f}")
    for fmt, t in times.items():
        print(f"BENCH export_{fmt.replace('-', '_')}_x_read={t / read:.1f}")
    print(f"BENCH export_max_s={max(times.values()):.2f}")


if __name__ == "__main__":
    main()
