"""Team review under load: reviewer clients with logins, each in its own process, send mixed review actions
(accept, edit, reject, undo) through the documented API (gradio_client) at one app over a large store, with
overlap (reviews_per_candidate = 2), all working the head of the same queue so their reviews meet.

It counts:

* lost updates (goal 0): an action the API answered as done that the review log does not hold (its reviewer,
  candidate, action and version), or a candidate whose state is not its log replayed (curate.decision.replay);
* un-mapped errors (goal 0): a failure that is not one of the library's own messages (a conflict, "nothing
  to undo", …) — e.g. a raw "database is locked" or Gradio's bare "Error";
* conflicts and refusals (expected: the clients act on versions read a moment before);
* p50 / p95 round-trip milliseconds per action, as the client waits for them.

    python bench/review_load.py [--n 50000] [--clients 4] [--actions 500] [--keep data/bench-ui-50000.db]

The store is the one bench/ui.py caches (built once, a few minutes); every run works on a fresh copy.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from curate import jobs  # noqa: E402
from curate.decision import replay  # noqa: E402
from curate.mixture import ModelPool  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui import launch  # noqa: E402
import synthetic  # noqa: E402  (bench/synthetic.py)

MIX = (("accept", 45), ("edit", 20), ("reject", 20), ("undo", 15))
#: the library's own messages: a failure that matches one of these reached the client as a clear message
MAPPED = re.compile(r"changed since you|nothing to undo|you can only undo|only an admin|is busy|"
                    r"an edit needs a non-empty|no candidate", re.I)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))] * 1000


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(url: str, user: str, password: str, actions: int, head: int, seed: int, conn) -> None:
    """One reviewer: ``actions`` review actions on candidates of the queue's first ``head`` rows."""
    from gradio_client import Client
    c = Client(url, auth=(user, password), verbose=False)
    rng = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    done, failed, rows, mine = [], [], [], []
    for i in range(actions):
        if i % 25 == 0:  # refresh what this reviewer sees (versions a moment old: some will conflict)
            rows = c.predict(status="", page_size=head, api_name="/queue")["rows"]
        kind = rng.choice(kinds)
        if kind == "undo" and mine:
            cid, version = mine[-1]
        else:
            kind = "accept" if kind == "undo" else kind
            row = rng.choice(rows)
            cid, version = row["id"], row["version"]
        args = {"candidate_id": cid, "version": version}
        if kind == "edit":
            args["output"] = f"{user}'s edit {i}"
        elif kind == "reject":
            args["reason"] = rng.choice(["", "off topic", f"undo of review #{i}"])  # a reason is just text
        t0 = time.perf_counter()
        try:
            res = c.predict(**args, api_name=f"/{kind}")
        except Exception as e:  # noqa: BLE001 - every failure is classified
            failed.append((kind, cid, str(e)[:300], time.perf_counter() - t0))
            if kind == "undo":
                mine.pop()
            continue
        dt = time.perf_counter() - t0
        got = res["candidate"]
        done.append((kind, cid, got["version"], dt))
        if kind == "undo":
            mine.pop()
        else:
            mine.append((cid, got["version"]))
        for r in rows:  # what this client now knows of that candidate
            if r["id"] == cid:
                r["version"] = got["version"]
    conn.send((user, done, failed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--actions", type=int, default=500)
    ap.add_argument("--head", type=int, default=120, help="the queue rows every client works on")
    ap.add_argument("--keep", default="data/bench-ui-50000.db")
    args = ap.parse_args()
    synthetic.review_store(Path(args.keep), args.n)
    tmp = Path(tempfile.mkdtemp())
    work = tmp / "load.db"
    shutil.copy(args.keep, work)
    users = [(f"reviewer{k}", f"pw{k}") for k in range(args.clients)]
    (tmp / "users.txt").write_text("".join(f"{u}:{p} reviewer\n" for u, p in users) + "admin:pwa admin\n")
    settings = load_settings(None, db=str(work), port=free_port(), users_file=str(tmp / "users.txt"),
                             reviews_per_candidate=2)
    demo = launch(settings, jobs.JobRunner(str(work), ModelPool(preloaded={})), prevent_thread_lock=True,
                  quiet=True)
    t0 = time.perf_counter()
    try:
        ctx = multiprocessing.get_context("spawn")
        pipes, procs = [], []
        for k, (u, p) in enumerate(users):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client, args=(demo.local_url, u, p, args.actions, args.head, k, child))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        results = []
        for parent, proc in zip(pipes, procs):
            while not parent.poll(5):
                if not proc.is_alive():
                    raise SystemExit(f"a client process failed (exit code {proc.exitcode})")
            results.append(parent.recv())
        for proc in procs:
            proc.join()
    finally:
        wall = time.perf_counter() - t0
        demo.close()
    with Store(work) as st:
        log = st.review_log(limit=None)
        n = st.count_candidates(None)
        held = {(e.reviewer, e.candidate_id, e.action, e.version) for e in log}
        action_of = {"accept": "accept", "edit": "edit", "reject": "reject"}
        lost = 0
        for user, done, _ in results:
            for kind, cid, version, _ in done:
                if kind == "undo":
                    lost += not any(e.reviewer == user and e.candidate_id == cid and e.version == version
                                    and e.undoes is not None for e in log if e.candidate_id == cid)
                else:
                    lost += (user, cid, action_of[kind], version) not in held
        states = replay(log)
        inconsistent = 0
        for cid, s in states.items():
            x = st.get_candidate(cid)
            votes = {v.reviewer: v for v in st.votes_of(cid)}
            if ((x.review_status, x.reviewed.as_dict() if x.reviewed else None) != s.decided
                    or x.version != s.version or votes != s.votes or st.decision_of(cid) != s.decision):
                inconsistent += 1
        chain = 0  # rows whose before is not the after of the previous row of their slot
        last: dict = {}
        for e in log:
            slot = (e.candidate_id, e.scope, e.reviewer if e.scope == "vote" else "")
            if slot in last and last[slot] != e.before:
                chain += 1
            last[slot] = e.after
    shutil.rmtree(tmp, ignore_errors=True)

    failures = [f for _, _, fs in results for f in fs]
    unmapped = [f for f in failures if not MAPPED.search(f[2])]
    by_kind: dict[str, list[float]] = {}
    for _, done, fs in results:
        for kind, _, _, dt in done:
            by_kind.setdefault(kind, []).append(dt)
    every = [dt for xs in by_kind.values() for dt in xs] + [f[3] for f in failures]
    total = sum(len(d) for _, d, _ in results) + len(failures)
    print(f"candidates: {n:,}; {args.clients} clients × {args.actions} actions = {total:,} in {wall:.0f} s "
          f"(reviews_per_candidate 2, all on the queue's first {args.head} rows)")
    print(f"  done {total - len(failures):,}, refused with a clear message {len(failures) - len(unmapped):,} "
          f"(conflicts, nothing to undo, …), un-mapped errors {len(unmapped)}")
    for f in unmapped[:5]:
        print(f"  un-mapped: {f[0]} {f[1][:10]}: {f[2]}")
    print(f"  log rows {len(log):,}; candidates whose state is not their log replayed: {inconsistent}; "
          f"rows not starting where their slot's previous row left: {chain}")
    bench = [f"BENCH review_load_candidates={n}", f"BENCH review_load_actions={total}",
             f"BENCH review_load_lost_updates={lost + inconsistent + chain}",
             f"BENCH review_load_unmapped_errors={len(unmapped)}",
             f"BENCH review_load_refused={len(failures) - len(unmapped)}"]
    for kind in ("accept", "edit", "reject", "undo"):
        xs = by_kind.get(kind, [])
        print(f"  {kind:7} n={len(xs):4}  p50 {pct(xs, 50):7.1f} ms  p95 {pct(xs, 95):7.1f} ms")
        bench += [f"BENCH review_load_{kind}_p50_ms={pct(xs, 50):.1f}",
                  f"BENCH review_load_{kind}_p95_ms={pct(xs, 95):.1f}"]
    print("\n".join(bench))
    print(f"BENCH review_load_all_p50_ms={pct(every, 50):.1f}")
    print(f"BENCH review_load_all_p95_ms={pct(every, 95):.1f}")


if __name__ == "__main__":
    main()
