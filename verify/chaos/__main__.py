"""python -m verify.chaos [--short] [--out reports]: faults under load (run.py).

Writes OUT/chaos.json and OUT/chaos.md and exits 1 if any scenario lost a
request, answered a 5xx or failed one of its checks (or a Go fuzz target
failed). --short is the form `make test` runs: a lighter load, shorter
pauses, fewer malformed requests and slow clients, no Go fuzzing (its seed
corpus runs with go test).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from verify.chaos.run import SHORT, Settings, run
from topology import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the quick form make test runs")
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="where chaos.json and chaos.md go")
    parser.add_argument("--build", type=Path, default=ROOT / "build/testdata/build",
                        help="python -m train fit output (the held-out trips, and what export publishes)")
    parser.add_argument("--models", type=Path, default=ROOT / "build/testdata/models",
                        help="model repository to copy the starting version from")
    parser.add_argument("--state", type=Path, default=ROOT / "build/chaos",
                        help="the run's own model repository, topology state and logs")
    for f in dataclasses.fields(Settings):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None,
                            help=f"(default {f.default}; --short: {getattr(SHORT, f.name)})")
    args = parser.parse_args(argv)
    base = SHORT if args.short else Settings()
    settings = dataclasses.replace(base, **{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                                            if getattr(args, f.name) is not None})
    for needed in (args.build / "trip_duration" / "training.json", args.models / "trip_duration"):
        if not needed.exists():
            print(f"chaos: {needed} not found: run `make testdata` (or point --build/--models elsewhere)", file=sys.stderr)
            return 2
    ok = run(settings, args.build.resolve(), args.models.resolve(), args.state.resolve(), args.out.resolve(),
             args.models.resolve())
    print(f"[chaos] wrote {args.out}/chaos.json and chaos.md: {'every scenario passed' if ok else 'FAILURES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
