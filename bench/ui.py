"""Review app latency at 50,000 candidates, measured through gradio_client against an in-process server.

1. slider move → pass count + histogram + first queue page  (the Review tab's τ ``.release`` event, with the
   queue filtered to "passes τ", so the filter follows the threshold)
2. accept → next candidate shown                             (the Accept button's event)

Both are the app's own UI events (undocumented endpoints ``/ui_threshold`` and ``/ui_accept``), called through
gradio_client the way the browser calls them, in one session. Three timings per event:

* server: Gradio's own per-event processing time (queue analytics: preprocess + handler + postprocess) —
  the headline ``BENCH ui_*_p95_ms`` figures, goals p95 ≤ 300 ms (slider) and ≤ 150 ms (accept → next);
* round trip: what gradio_client (in a child process) waits, adding Gradio's queue/SSE protocol (≈ 250 ms
  even for an echo endpoint on a loaded 2-core machine: gradio_client polls its message queue every 50 ms);
* in-process: the handler alone, without HTTP.

There is no reference implementation to compare with here.

    python bench/ui.py [--n 50000] [--rounds 60] [--keep data/bench-ui-50000.db]

The store is filled once through the store API (synthetic consensus rows; a few minutes) and cached at
``--keep``; every run works on a fresh copy of it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate import jobs  # noqa: E402
from curate.mixture import ModelPool  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.review import QueueFilter  # noqa: E402
from curate.ui import Handlers, launch  # noqa: E402
import synthetic  # noqa: E402  (bench/synthetic.py)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))] * 1000


def cached_store(path: Path, n: int) -> None:
    synthetic.review_store(path, n)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drive_client(url: str, filters: list, taus: list[float], conn) -> None:
    """In a child process: move the slider and accept candidates through gradio_client; send round trips."""
    from gradio_client import Client
    client = Client(url, verbose=False)
    for tau in taus[:3]:  # warm up
        client.predict(*filters[:3], "pass", tau, *filters[5:], api_name="/ui_threshold")
    slider = []
    for tau in taus:  # the queue shows the candidates passing at the new τ
        t0 = time.perf_counter()
        out = client.predict(*filters[:3], "pass", tau, *filters[5:], api_name="/ui_threshold")
        slider.append(time.perf_counter() - t0)
    assert "pass at τ" in out[0], out[0]
    client.predict(*filters, api_name="/ui_next")  # opens the first pending candidate in this session
    accept = []
    for i in range(len(taus) + 3):
        t0 = time.perf_counter()
        out = client.predict("bench", *filters, api_name="/ui_accept")
        if i >= 3:
            accept.append(time.perf_counter() - t0)
    assert out[0].startswith("#"), out[0]
    conn.send((slider, accept))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--keep", default="data/bench-ui-50000.db")
    args = ap.parse_args()
    cached_store(Path(args.keep), args.n)
    work = Path(tempfile.mkdtemp()) / "bench.db"
    shutil.copy(args.keep, work)

    settings = load_settings(None, db=str(work), port=free_port(), reviewer="bench")
    demo = launch(settings, jobs.JobRunner(str(work), ModelPool(preloaded={})), prevent_thread_lock=True,
                  quiet=True)
    filters = ["pending", "", "", "", 0.01, "", "seq", "", 0.0,  # status, type, model, consensus, tau, search,
               None, "", "", None, None]  # sort, quality scorer (off), quality min / max, source, reviewed by,
    #                                       min RL range
    taus = [round(0.05 + 0.9 * ((i * 37) % 100) / 100, 2) for i in range(args.rounds)]
    try:
        # the client runs in its own process, so it does not share the server's GIL
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=drive_client, args=(demo.local_url, filters, taus, child))
        proc.start()
        while not parent.poll(5):
            if not proc.is_alive():
                raise SystemExit(f"the client process failed (exit code {proc.exitcode})")
        slider, accept = parent.recv()
        proc.join()
        done = [a for a in demo._queue.event_analytics.values() if a.get("process_time") is not None]
        server_slider = [a["process_time"] for a in done if a["function"] == "ui_threshold"][3:]
        server_accept = [a["process_time"] for a in done if a["function"] == "ui_accept"][3:]
        # the same handlers in-process, without HTTP and the queue (the filter the client's values stand for)
        h = Handlers(settings, demo.handlers.runner).review
        f = QueueFilter(status="pending", tau=0.01, sort="seq", quality_min=0.0)
        inproc_slider, inproc_accept, inproc_refresh = [], [], []
        for tau in taus:
            t0 = time.perf_counter()
            h.ui_threshold(QueueFilter(status="pending", consensus="pass", tau=tau, sort="seq", quality_min=0.0))
            inproc_slider.append(time.perf_counter() - t0)
        cur = h.ui_next(None, f)["current"]
        req = type("R", (), {"username": None})()
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            cur = h.ui_accept(cur, output_index=None, reviewer="bench", history=[], f=f, request=req)["current"]
            inproc_accept.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            h.ui_refresh(f, page=1)
            inproc_refresh.append(time.perf_counter() - t0)
    finally:
        demo.close()
        shutil.rmtree(work.parent, ignore_errors=True)

    with Store(args.keep) as st:
        n = st.count_candidates(None)
    print(f"candidates: {n:,}; rounds: {args.rounds}; ms, p50 / p95")
    print(f"  {'event':12} {'server':>15} {'round trip':>15} {'in-process':>15}")
    for name, xs, ys, zs in (("slider", server_slider, slider, inproc_slider),
                             ("accept→next", server_accept, accept, inproc_accept)):
        print(f"  {name:12} " + " ".join(f"{pct(v, 50):7.1f}/{pct(v, 95):7.1f}" for v in (xs, ys, zs)))
    print(f"  refresh after a review (queue page + counts, runs after the next candidate is shown): "
          f"p50 {pct(inproc_refresh, 50):.1f} p95 {pct(inproc_refresh, 95):.1f} (in-process)")
    print(f"BENCH ui_candidates={n}")
    print(f"BENCH ui_slider_p50_ms={pct(server_slider, 50):.1f}")
    print(f"BENCH ui_slider_p95_ms={pct(server_slider, 95):.1f}")
    print(f"BENCH ui_accept_next_p50_ms={pct(server_accept, 50):.1f}")
    print(f"BENCH ui_accept_next_p95_ms={pct(server_accept, 95):.1f}")
    print(f"BENCH ui_slider_roundtrip_p95_ms={pct(slider, 95):.1f}")
    print(f"BENCH ui_accept_next_roundtrip_p95_ms={pct(accept, 95):.1f}")
    print(f"BENCH ui_slider_inprocess_p95_ms={pct(inproc_slider, 95):.1f}")
    print(f"BENCH ui_accept_next_inprocess_p95_ms={pct(inproc_accept, 95):.1f}")
    print(f"BENCH ui_refresh_inprocess_p95_ms={pct(inproc_refresh, 95):.1f}")


if __name__ == "__main__":
    main()
