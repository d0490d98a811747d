"""Import: 100,000 synthetic rows of JSONL and of Parquet into an empty store (rows/s, peak RSS), and three models'
outputs for those rows imported and put through consensus, against ``curate consensus`` on the same rows as one
JSONL.

1. ``import_jsonl`` / ``import_parquet``: ``curate import`` of 100,000 Alpaca rows (about 12 + 8 + 40 words) into
   an empty store, each in a fresh process: seconds, rows/s and the process's peak RSS (goals: <= 15 s and
   <= 1 GB each). ``import_jsonl_300k``: the same with 300,000 rows: streaming keeps the peak RSS about where
   it was (the rows are read and staged 10,000 at a time).
2. ``outputs_then_consensus``: over the store of step 1, import three models' outputs for the 100,000 rows (one
   JSONL per model, ``--as-outputs --model NAME``), then consensus without a model (``curate ensemble
   --no-generate``): k = 4 outputs per candidate. Against ``curate consensus`` on one JSONL holding the same
   instruction, input and 4 outputs per line (goal: the store path within 1.5x of it).

The outputs are perturbed copies of the dataset's (words dropped and swapped, seeded), so consensus goes through
the Rouge-L branch as real outputs do. Run: ``python bench/import.py [--rows N]``; the files and stores go to a
temporary folder. Ends with ``BENCH name=value`` lines. Timings depend on the machine and its load: they are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the a an of to in is it that for on with as was at by be this from or have are not but what all were "
         "when we there can which their said if do will each about how up out them then she many some so these "
         "would other into has more her two like him see time could no make than first been its who now people "
         "my made over did down only way find use may water long little very after words called just where most "
         "know get through back much go good new write our used me man too any day same right look think also "
         "around another came come work three word must because does part even place well such here take why "
         "things help put years different away again off went old number great tell men say small every found "
         "still between name should home big give air line set own under read last never us left end along while "
         "might next sound below saw something thought both few those always looked show large often together "
         "asked house world going want school important until form food keep children feet land side without boy "
         "once animals life enough took sometimes four head above kind began almost live page got earth need far "
         "hand high year mother light parts country father let night following picture being study second eyes "
         "soon times story boys since white days ever paper hard near sentence better best across during today").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _perturb(rng: random.Random, text: str) -> str:
    words = text.split()
    for _ in range(rng.randint(2, 6)):
        if len(words) > 2 and rng.random() < 0.5:
            del words[rng.randrange(len(words))]
        elif len(words) > 2:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def make_files(folder: Path, rows: int, outputs: bool = True) -> dict[str, Path]:
    """The dataset (JSONL and Parquet) of ``rows`` rows, and (``outputs``) three models' outputs for them and the
    consensus JSONL."""
    folder.mkdir(exist_ok=True)
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = random.Random(0)
    data = [{"instruction": f"{_text(rng, 11)} {i}", "input": _text(rng, 8) if i % 3 else "",
             "output": _text(rng, rng.randint(25, 55))} for i in range(rows)]
    files = {"jsonl": folder / "data.jsonl", "parquet": folder / "data.parquet", "consensus": folder / "consensus.jsonl"}
    with open(files["jsonl"], "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in data)
    pq.write_table(pa.Table.from_pylist(data), files["parquet"])
    if not outputs:
        return files
    texts_of = {m: [_perturb(rng, r["output"]) for r in data] for m in ("model-a", "model-b", "model-c")}
    for m, texts in texts_of.items():
        files[m] = folder / f"{m}.jsonl"
        with open(files[m], "w") as f:
            f.writelines(json.dumps({"instruction": r["instruction"], "input": r["input"], "output": t}) + "\n"
                         for r, t in zip(data, texts))
    with open(files["consensus"], "w") as f:
        f.writelines(json.dumps({"instruction": r["instruction"], "input": r["input"],
                                 "outputs": [r["output"], *(texts_of[m][i] for m in texts_of)]}) + "\n"
                     for i, r in enumerate(data))
    return files


# -- the measured steps, each run in a child process (its peak RSS is its own) -------------------------------------
def child_import(db: str, *sources_and_models: str) -> dict:
    from curate import jobs
    from curate.store import Store
    times = []
    with Store(db) as st:
        for item in sources_and_models:
            source, _, model = item.partition("@")
            config = {"source": source}
            if model:
                config.update(as_outputs=True, model=model)
            t0 = time.perf_counter()
            job = jobs.run_job(st, jobs.start_job(st, "import", config))
            times.append(time.perf_counter() - t0)
            if job["state"] != "done":
                raise SystemExit(f"import of {source} {job['state']}: {job['error']}")
        rows = job["progress"]["result"]["read"]
    return {"seconds": sum(times), "each": times, "rows": rows}


def child_consensus_store(db: str) -> dict:
    from curate import jobs
    from curate.store import Store
    with Store(db) as st:
        t0 = time.perf_counter()
        job = jobs.run_job(st, jobs.start_job(st, "ensemble", {"consensus_only": True}))
        seconds = time.perf_counter() - t0
        scored = st.count_passing(0.01)["scored"]
    assert job["state"] == "done", job["error"]
    return {"seconds": seconds, "scored": scored}


def child_consensus_jsonl(src: str, out: str) -> dict:
    from curate.consensus import consensus_jsonl
    t0 = time.perf_counter()
    counts = consensus_jsonl(src, out)
    return {"seconds": time.perf_counter() - t0, "lines": counts["lines"]}


CHILDREN = {"import": child_import, "consensus_store": child_consensus_store, "consensus_jsonl": child_consensus_jsonl}


def run_child(name: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", name, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic dataset (default 100000)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = CHILDREN[args.child[0]](*args.child[1:])
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    n = args.rows
    folder = Path(tempfile.mkdtemp(prefix="curate-bench-import-"))
    try:
        t0 = time.perf_counter()
        files = make_files(folder, n)
        big = make_files(folder / "big", 3 * n, outputs=False)
        print(f"data: {n:,} rows ({files['jsonl'].stat().st_size / 1e6:.0f} MB JSONL, "
              f"{files['parquet'].stat().st_size / 1e6:.0f} MB Parquet) and 3 x {3 * n:,}, made in "
              f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        results = {}
        for kind in ("jsonl", "parquet"):
            r = results[kind] = run_child("import", str(folder / f"{kind}.db"), str(files[kind]))
            print(f"import {kind}: {r['rows']:,} rows in {r['seconds']:.1f} s ({r['rows'] / r['seconds']:,.0f} rows/s), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")
        r3 = run_child("import", str(folder / "big.db"), str(big["jsonl"]))
        print(f"import jsonl x3: {r3['rows']:,} rows in {r3['seconds']:.1f} s, peak RSS {r3['peak_rss_mb']:.0f} MB")
        db = str(folder / "jsonl.db")
        outs = run_child("import", db, *(f"{files[m]}@{m}" for m in ("model-a", "model-b", "model-c")))
        cons = run_child("consensus_store", db)
        plain = run_child("consensus_jsonl", str(files["consensus"]), str(folder / "judged.jsonl"))
        assert cons["scored"] == plain["lines"] == n, (cons, plain)
        store_path = outs["seconds"] + cons["seconds"]
        print(f"3 models' outputs: imported in {outs['seconds']:.1f} s ({', '.join(f'{s:.1f}' for s in outs['each'])}), "
              f"consensus in the store {cons['seconds']:.1f} s: {store_path:.1f} s; `curate consensus` on the same "
              f"rows as one JSONL: {plain['seconds']:.1f} s")
        for kind in ("jsonl", "parquet"):
            r = results[kind]
            print(f"BENCH import_{kind}_seconds={r['seconds']:.2f}")
            print(f"BENCH import_{kind}_rows_per_s={r['rows'] / r['seconds']:.0f}")
            print(f"BENCH import_{kind}_peak_rss_mb={r['peak_rss_mb']:.0f}")
        print(f"BENCH import_jsonl_3x_peak_rss_mb={r3['peak_rss_mb']:.0f}")
        print(f"BENCH import_outputs_3_models_seconds={outs['seconds']:.2f}")
        print(f"BENCH consensus_store_seconds={cons['seconds']:.2f}")
        print(f"BENCH consensus_jsonl_seconds={plain['seconds']:.2f}")
        print(f"BENCH outputs_then_consensus_vs_jsonl={store_path / plain['seconds']:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
