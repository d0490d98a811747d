"""Start the curate app: ``python app.py [--db PATH] [--port N] [--host H] [--auth user:pass[,user2:pass2]]
[--users FILE] [--reviews-per-candidate N] [--insecure-no-auth] [--config FILE]``. Binds 127.0.0.1 unless --host
says otherwise, and refuses a network host without a login unless --insecure-no-auth; with --auth / --users every
page and API call needs a login. Everything else lives in curate.ui."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the curate review app (Gradio)")
    p.add_argument("--db", help="the SQLite store (default: data/curate.db, or the settings file)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--auth", help="require a login: user:pass, comma-separate several")
    p.add_argument("--users", metavar="FILE",
                   help="require a login: a file of 'user:password [role]' lines, role reviewer or admin (only "
                        "admins run bulk actions, jobs, exports and adjudication; with no role on any line, "
                        "every login is an admin)")
    p.add_argument("--reviews-per-candidate", type=int, metavar="N",
                   help="reviews each candidate needs (default 1); with 2 or more each reviewer's review is a vote, "
                        "a candidate is decided when N votes agree, disagreements go to an admin")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a network --host (e.g. 0.0.0.0) without a login; reviewer names are then not "
                        "verified (refused without this flag)")
    p.add_argument("--config", help="settings TOML file (default: $CURATE_CONFIG or ./curate.toml)")
    args = p.parse_args(argv)

    from curate.errors import CurateError
    from curate.settings import load_settings
    from curate.ui import launch
    try:
        settings = load_settings(args.config, db=args.db, port=args.port, host=args.host, auth=args.auth,
                                 users_file=args.users, reviews_per_candidate=args.reviews_per_candidate,
                                 insecure_no_auth=args.insecure_no_auth or None)
        launch(settings)
    except CurateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
