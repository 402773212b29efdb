"""Command line: python -m train {synth,fit,export,parity} ...

    python -m train synth --out data/green_tripdata_synthetic.parquet
    python -m train fit --data data/green_tripdata_synthetic.parquet --model linear --name trip_duration
    python -m train export --name trip_duration
    python -m train parity --data data/green_tripdata_synthetic.parquet --models build/parity/models
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from . import data, export, fit, parity, pipeline, synth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("synth", help="write deterministic sample trips in the TLC green schema")
    p.add_argument("--out", type=Path, default=Path("data/green_tripdata_synthetic.parquet"))
    p.add_argument("--rows", type=int, default=synth.DEFAULT_ROWS)
    p.add_argument("--seed", type=int, default=synth.DEFAULT_SEED)
    p.add_argument("--month", default=synth.DEFAULT_MONTH, help="YYYY-MM")

    p = commands.add_parser("fit", help="train a model family on TLC trip parquet files")
    p.add_argument("--data", nargs="+", required=True, help="green or yellow TLC parquet files")
    p.add_argument("--model", default="linear", choices=pipeline.FAMILIES,
                   help="the family; classifiers predict whether a card payment includes a tip")
    p.add_argument("--name", default=None, help="model name (default: trip_duration, or tip_given for classifiers)")
    p.add_argument("--build", type=Path, default=Path("build"))
    p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser("export", help="convert to ONNX, check against sklearn, publish the next version")
    p.add_argument("--name", default="trip_duration")
    p.add_argument("--build", type=Path, default=Path("build"))
    p.add_argument("--models", type=Path, default=Path("models"))

    p = commands.add_parser("parity", help="send held-out rows of every family through the real Go server and "
                            "nginx, compare with sklearn, write reports/parity.{md,json}")
    p.add_argument("--data", nargs="+", required=True, help="the trip files the models were trained on")
    p.add_argument("--models", type=Path, default=Path("build/parity/models"),
                   help="a model repository with one model per family, named after it")
    p.add_argument("--families", nargs="+", default=list(pipeline.FAMILIES), choices=pipeline.FAMILIES)
    p.add_argument("--rows", type=int, default=0, help="held-out rows per family sent to the server (0: all)")
    p.add_argument("--min-rows", type=int, default=10_000, help="fail if a family has fewer held-out rows")
    p.add_argument("--nginx-rows", type=int, default=1000, help="of those, how many also go through nginx")
    p.add_argument("--out", type=Path, default=Path("reports"))

    args = parser.parse_args(argv)
    # Held-out trips may start in zones the training trips never did; they
    # encode as all zeros by design (handle_unknown="ignore").
    warnings.filterwarnings("ignore", message="Found unknown categories")
    try:
        if args.command == "synth":
            path = synth.write(args.out, args.rows, args.seed, args.month)
            print(f"[synth] wrote {args.rows:,} trips (seed {args.seed}, {args.month}) to {path}")
        elif args.command == "fit":
            fit.fit(args.data, args.model, args.name, args.build, args.seed)
        elif args.command == "export":
            export.export(args.name, args.build, args.models)
        else:
            results = parity.run(args.data, args.models, {f: f for f in args.families}, args.out, rows=args.rows,
                                 nginx_rows=args.nginx_rows, min_rows=args.min_rows)
            failed = [r.family for r in results if not r.within_bound]
            if failed:
                print(f"error: out of bound: {', '.join(failed)} (see {args.out / 'parity.md'})", file=sys.stderr)
                return 1
    except (data.NotTripData, export.ParityError, parity.ParityError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
