"""Serve the app over a store with the scripted model pool, in the foreground, until killed:
``python tests/serve_app.py DB PORT [DELAY]``. The restart test kills it with SIGKILL mid-job."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from curate import jobs  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.ui import launch  # noqa: E402
from review_fixtures import scripted_pool  # noqa: E402

if __name__ == "__main__":
    db, port = sys.argv[1], int(sys.argv[2])
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.3
    settings = load_settings(None, db=db, port=port, reviewer="ann")
    launch(settings, jobs.JobRunner(db, scripted_pool(delay=delay)), quiet=True)
