"""Command line: python -m batch score ...

    python -m batch score --data a.parquet --out scored.parquet --name trip_duration [--version 3]
    python -m batch score --data trips/ --out scored/ --name trip_duration --engine spark [--master local[*]]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from train.data import NotTripData

from . import local, output
from .model import ModelNotFound, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("score", help="score TLC trip parquet files with a published model version")
    p.add_argument("--data", nargs="+", required=True,
                   help="green or yellow TLC parquet files (or directories of them)")
    p.add_argument("--out", type=Path, required=True,
                   help="the scored parquet: a file (local engine) or a directory (spark)")
    p.add_argument("--name", default="trip_duration", help="the model's name in the repository")
    p.add_argument("--version", type=int, default=None, help="the version (default: the latest)")
    p.add_argument("--models", type=Path, default=Path("models"), help="the model repository")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--engine", choices=["local", "spark"], default="local")
    p.add_argument("--master", default="local[*]", help="Spark master URL (spark engine)")
    p.add_argument("--batch-rows", type=int, default=local.BATCH_ROWS,
                   help="rows read per batch (local engine); memory grows with it")
    args = parser.parse_args(argv)
    # Trips in zones the training trips never had encode as all zeros, by design.
    warnings.filterwarnings("ignore", message="Found unknown categories")
    try:
        published = resolve(args.models, args.name, args.version)
        if args.engine == "spark":
            from . import spark  # pyspark and a JVM only when asked for

            with spark.session(args.master) as session:
                spark.score(session, args.data, args.out, published, args.overwrite, log=local.stderr)
        else:
            local.score(args.data, args.out, published, args.overwrite, args.batch_rows, log=local.stderr)
    except (NotTripData, ModelNotFound, output.OutputExists, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
