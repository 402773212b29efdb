"""Command line: python -m monitor report [--name N] [--since 7d] ...

    python -m monitor report --state run --models models [--name trip_duration] [--since 7d] [--db URL]
    python -m monitor serve --db URL [--port 9190]     Prometheus gauges from the database
    python -m monitor loop --name trip_duration [--every 3600]   retrain on drift (monitor/loop.py)

report needs Evidently (.venv-monitor, `make monitor` builds it).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("report", help="drift, data and model quality of a window of the inference log")
    p.add_argument("--state", type=Path, default=Path(os.environ.get("STATE", "run")),
                   help="the topology's state directory; the log is under <state>/inference")
    p.add_argument("--models", type=Path, default=Path(os.environ.get("MODELS", "models")))
    p.add_argument("--name", default=None, help="one model (default: every model in the log)")
    p.add_argument("--since", default="7d", help="window start: a duration back from now (30m, 24h, 7d) or a time")
    p.add_argument("--end", default=None, help="window end, a time (default: now); a window is stored once per end")
    p.add_argument("--out", type=Path, default=Path("reports/monitor"))
    p.add_argument("--min-rows", type=int, default=None, help="fewest rows a version needs to be reported")
    p.add_argument("--db", default=os.environ.get("MONITOR_DB") or None,
                   help="PostgreSQL URL the figures are written to (default: none)")
    p = commands.add_parser("serve", help="the figures in the database as Prometheus gauges on 127.0.0.1:PORT/metrics")
    p.add_argument("--db", default=os.environ.get("MONITOR_DB") or None, required=not os.environ.get("MONITOR_DB"))
    p.add_argument("--port", type=int, default=int(os.environ.get("MONITOR_EXPORTER_PORT", "9190")))
    p = commands.add_parser("loop", help="monitor on a schedule; retrain and stage a challenger when the data moved")
    p.add_argument("--name", required=True)
    p.add_argument("--state", type=Path, default=Path(os.environ.get("STATE", "run")))
    p.add_argument("--models", type=Path, default=Path(os.environ.get("MODELS", "models")))
    p.add_argument("--incoming", type=Path, default=None, help="where new TLC month files are dropped "
                   "(default: <state>/incoming)")
    p.add_argument("--challengers", type=Path, default=None, help="the challengers' repository (default: "
                   "<state>/challengers; no replica reads it)")
    p.add_argument("--since", default="7d", help="each cycle's window (a week: the clock inputs drift in shorter ones)")
    p.add_argument("--min-rows", type=int, default=100)
    p.add_argument("--every", type=float, default=3600, help="seconds between cycles")
    p.add_argument("--cycles", type=int, default=0, help="stop after this many cycles (default: run on)")
    p.add_argument("--once", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "loop":
        from . import loop

        args.incoming = args.incoming or args.state / "incoming"
        return loop.main(args)
    if args.command == "serve":
        from . import exporter

        exporter.serve(args.db, args.port)
        return 0
    from . import logs, report

    try:
        end = logs.parse_since(args.end) if args.end else datetime.now(timezone.utc)
        since = logs.parse_since(args.since, end)
        results = report.run(args.state, args.models, args.out, since, args.name,
                             args.min_rows if args.min_rows is not None else report.MIN_ROWS, end=end)
        if args.db:
            from . import db

            with db.connect(args.db) as conn:
                for result in results:
                    db.store(conn, result.summary)
            print(f"[monitor] {len(results)} window(s) stored in {db.redact(args.db)}", flush=True)
    except (report.MonitorError, logs.LogError, RuntimeError) as err:
        print(f"[monitor] error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
