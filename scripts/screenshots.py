"""Take the README's Review-tab screenshot of the app on a store (Playwright for Python with Debian's Chromium):

    python scripts/screenshots.py STORE [OUT.png] [--seq N]

STORE should hold real candidates, e.g. made on the embedded models with
``curate generate -n 8 --models smollm2-135m-instruct`` then ``curate ensemble``. The app is served on a copy
of the store (nothing is written to STORE), the candidate ``--seq`` (default: the first ensembled one) is
opened, and the page is saved as OUT (default docs/screenshot.png).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("out", nargs="?", default="docs/screenshot.png")
    ap.add_argument("--seq", type=int, default=None, help="the candidate to open (default: the first ensembled)")
    args = ap.parse_args(argv)
    from playwright.sync_api import expect, sync_playwright

    from curate import jobs
    from curate.settings import load_settings
    from curate.store import Store
    from curate.ui import launch

    work = Path(tempfile.mkdtemp(prefix="curate-shots-")) / "store.db"
    with Store(args.store) as src:  # a consistent copy (WAL included), so STORE is only read
        src.db.execute(f"VACUUM INTO '{work}'")
        rows = src.review_queue(status=None, consensus="pass", limit=1000) or src.review_queue(status=None, limit=1)
    if not rows:
        sys.exit(f"{args.store} holds no candidates: generate some first")
    pick = next((r for r in rows if r["seq"] == args.seq), rows[0]) if args.seq is not None else rows[0]
    settings = load_settings(None, db=str(work), port=_port(), reviewer="ann")
    demo = launch(settings, jobs.JobRunner(str(work)), prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                        "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(demo.local_url)
            head = page.locator("#curate-header textarea").first
            expect(head).not_to_have_value("", timeout=60_000)
            page.locator("#curate-open-id textarea, #curate-open-id input").first.fill(pick["id"])
            page.locator("#curate-open").click()
            expect(head).to_have_value(re.compile(rf"^#{pick['seq']} · "), timeout=60_000)
            page.wait_for_timeout(1500)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(work.parent, ignore_errors=True)
    print(f"wrote {args.out} (candidate #{pick['seq']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
