"""Command line: python -m batch score ... | score-new ...

    python -m batch score --data a.parquet --out scored.parquet --name trip_duration [--version 3 | --alias champion]
    python -m batch score --data trips/ --out scored/ --name trip_duration --engine spark [--master local[*]]
    python -m batch score-new --dir incoming/ --out-dir scored/ --name trip_duration [--alias champion]

--alias reads the MLflow registry at MLFLOW_TRACKING_URI (train/tracking.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from train.data import NotTripData
from train.tracking import TrackingError

from . import incoming, local, output
from .model import ModelNotFound, Published, from_registry, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("score", help="score TLC trip parquet files with a published model version")
    p.add_argument("--data", nargs="+", required=True,
                   help="green or yellow TLC parquet files (or directories of them)")
    p.add_argument("--out", type=Path, required=True,
                   help="the scored parquet: one file if its name ends in .parquet, else a directory of files")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    n = commands.add_parser("score-new", help="score each parquet file of --dir that has no output in --out-dir yet")
    n.add_argument("--dir", type=Path, required=True, help="where the monthly TLC files land")
    n.add_argument("--out-dir", type=Path, required=True, help=f"one <stem>{incoming.SUFFIX} per file scored")
    n.add_argument("--json", action="store_true", help="print what became of each file as JSON on stdout")
    for q in (p, n):
        q.add_argument("--name", default="trip_duration", help="the model's name in the repository")
        which = q.add_mutually_exclusive_group()
        which.add_argument("--version", type=int, default=None, help="the version (default: the latest)")
        which.add_argument("--alias", default=None,
                           help="the version this MLflow registry alias points to (needs MLFLOW_TRACKING_URI)")
        q.add_argument("--models", type=Path, default=Path("models"), help="the model repository")
        q.add_argument("--engine", choices=["local", "spark"], default="local")
        q.add_argument("--master", default="local[*]", help="Spark master URL (spark engine)")
        q.add_argument("--batch-rows", type=int, default=local.BATCH_ROWS,
                       help="rows read per batch (local engine); memory grows with it")
    args = parser.parse_args(argv)
    # Trips in zones the training trips never had encode as all zeros, by design.
    warnings.filterwarnings("ignore", message="Found unknown categories")
    # A registry that does not answer fails the run in seconds, not after
    # MLflow's default retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    try:
        with published_version(args) as published, engine(args) as score:
            if args.command == "score":
                score(args.data, args.out, published, args.overwrite)
                return 0
            outcomes = incoming.score_new(args.dir, args.out_dir, published,
                                          lambda src, out, pub: score([src], out, pub, False), log=local.stderr)
            if args.json:
                print(json.dumps([{"source": str(o.source), "out": str(o.out), "status": o.status,
                                   "error": o.error or None} for o in outcomes], indent=2))
            return 1 if any(o.status == "failed" for o in outcomes) else 0
    except (NotTripData, ModelNotFound, TrackingError, output.OutputExists, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def published_version(args: argparse.Namespace) -> Iterator[Published]:
    """The version asked for: from the repository, or downloaded from the
    registry for the length of the run."""
    if args.alias is None:
        yield resolve(args.models, args.name, args.version)
        return
    with tempfile.TemporaryDirectory(prefix="skl2go-registry-") as tmp:
        yield from_registry(args.name, args.alias, Path(tmp))


@contextlib.contextmanager
def engine(args: argparse.Namespace) -> Iterator:
    """score(paths, out, published, overwrite) with the engine asked for."""
    if args.engine == "spark":
        from . import spark  # pyspark and a JVM only when asked for

        with spark.session(args.master) as session:
            yield lambda paths, out, published, overwrite: spark.score(session, paths, out, published, overwrite,
                                                                       log=local.stderr)
    else:
        yield lambda paths, out, published, overwrite: local.score(paths, out, published, overwrite, args.batch_rows,
                                                                   log=local.stderr)


if __name__ == "__main__":
    sys.exit(main())
