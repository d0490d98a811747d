"""What an open, idle app page costs: the server process's CPU and headless Chromium's, while one page sits on
the Review tab for ``--seconds`` (nobody clicks, no job runs), as a percentage of one core.

    python bench/ui_idle.py [--seconds 30] [--n 2000] [--before SRC]

``--before SRC`` measures a second source tree the same way in the same run (e.g. a checkout of the commit
before the live views: ``git worktree add /tmp/before <commit>``), so the two figures share the machine's
load; the ratio after / before is the number to read on a shared, noisy machine. Each server is
``tests/serve_app.py`` over the same synthetic store (a copy each), with the scripted models.

Prints ``BENCH idle_server_cpu_pct_no_page=…`` (the server alone, before the page opens: its baseline),
``BENCH idle_page_server_cpu_pct=…``, ``BENCH idle_page_browser_cpu_pct=…`` (and ``…_before``, and
``idle_page_cpu_ratio`` = (server + browser) after / before). The page's own cost on the server is
``idle_page_server_cpu_pct − idle_server_cpu_pct_no_page``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def browser_procs() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]


def measure(src: Path, db: Path, seconds: float, browser) -> tuple[float, float, float]:
    """Serve ``db`` from the source tree ``src``; return (server %, browser %, server % with no page open) of a
    core: the first two over ``seconds`` of one page idling on the Review tab, the last over ``seconds``
    before any page opens (the server's own baseline)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(src), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, str(src / "tests" / "serve_app.py"), str(db), str(port)],
                              env=env, cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        proc = psutil.Process(server.pid)
        time.sleep(2)
        c0, t0 = cpu_s([proc, *proc.children(recursive=True)]), time.perf_counter()
        time.sleep(seconds)
        baseline = 100 * (cpu_s([proc, *proc.children(recursive=True)]) - c0) / (time.perf_counter() - t0)
        ctx = browser.new_context(viewport={"width": 1500, "height": 1250})
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("() => { const t = document.querySelector('#curate-header textarea');"
                               " return t && t.value.startsWith('#'); }", timeout=120_000)
        page.wait_for_timeout(3000)  # the page's first refreshes settle
        procs = [proc, *proc.children(recursive=True)]
        s0, b0, t0 = cpu_s(procs), cpu_s(browser_procs()), time.perf_counter()
        page.wait_for_timeout(seconds * 1000)
        s1, b1, t1 = cpu_s(procs), cpu_s(browser_procs()), time.perf_counter()
        ctx.close()
        wall = t1 - t0
        return 100 * (s1 - s0) / wall, 100 * (b1 - b0) / wall, baseline
    finally:
        server.kill()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--n", type=int, default=2000, help="synthetic candidates in the store")
    ap.add_argument("--before", type=Path, default=None, help="a source tree to measure too, for the ratio")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from curate.store import Store
    from curate.ui.synthetic import fill

    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref.db"
        with Store(ref) as st:
            fill(st, a.n, consensus="synthetic")
        runs = [("", ROOT)] + ([("_before", a.before.resolve())] if a.before else [])
        results = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for suffix, src in runs:
                db = Path(tmp) / f"db{suffix or '_after'}.db"
                shutil.copy(ref, db)
                results[suffix] = measure(src, db, a.seconds, browser)
                server, page, baseline = results[suffix]
                print(f"BENCH idle_server_cpu_pct_no_page{suffix}={baseline:.1f}", flush=True)
                print(f"BENCH idle_page_server_cpu_pct{suffix}={server:.1f}", flush=True)
                print(f"BENCH idle_page_browser_cpu_pct{suffix}={page:.1f}", flush=True)
            browser.close()
        if "_before" in results:
            after, before = sum(results[""][:2]), sum(results["_before"][:2])
            print(f"BENCH idle_page_cpu_ratio={after / before if before else float('nan'):.3f}", flush=True)


if __name__ == "__main__":
    main()
