"""Command line: python -m train {synth,fit,export,import,families,classifiers,name} ...

    python -m train synth --out data/green_tripdata_synthetic.parquet
    python -m train fit --data data/green_tripdata_synthetic.parquet --model linear --name trip_duration
    python -m train export --name trip_duration
    python -m train import --pipeline lin_reg.bin --sample records.jsonl --name course_duration
    python -m train families        the model families, one line (the Makefile reads it)
    python -m train classifiers     the families that classify
    python -m train name linear     the name a family's model is published under by default
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from . import tasks


def lists(argv: list[str]) -> str | None:
    """The answer to `families`, `classifiers` or `name FAMILY`, from train/tasks.py
    alone (no third-party import: the Makefile asks before the venv exists)."""
    match argv:
        case ["families"]:
            return " ".join(tasks.FAMILIES)
        case ["classifiers"]:
            return " ".join(f for f in tasks.FAMILIES if tasks.TASKS[f] == tasks.CLASSIFICATION)
        case ["name", family]:
            return tasks.DEFAULT_NAMES[tasks.task_of(family)]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        answer = lists(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if answer is not None:
        print(answer)
        return 0
    from . import data, export, fit, synth, tracking  # third-party imports: only for the real work

    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("synth", help="write deterministic sample trips in the TLC green schema")
    p.add_argument("--out", type=Path, default=Path("data/green_tripdata_synthetic.parquet"))
    p.add_argument("--rows", type=int, default=synth.DEFAULT_ROWS)
    p.add_argument("--seed", type=int, default=synth.DEFAULT_SEED)
    p.add_argument("--month", default=synth.DEFAULT_MONTH, help="YYYY-MM")
    p.add_argument("--schema", default="green", choices=list(synth.SCHEMAS), help="the TLC schema written")

    p = commands.add_parser("fit", help="train a model family on TLC trip parquet files")
    p.add_argument("--data", nargs="+", required=True, help="green or yellow TLC parquet files")
    p.add_argument("--model", default="linear", choices=tasks.FAMILIES,
                   help="the family; classifiers predict whether a card payment includes a tip")
    p.add_argument("--name", default=None, help="model name (default: trip_duration, or tip_given for classifiers)")
    p.add_argument("--build", type=Path, default=Path("build"))
    p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser("export", help="convert to ONNX, check against sklearn, publish the next version")
    p.add_argument("--name", default="trip_duration")
    p.add_argument("--build", type=Path, default=Path("build"))
    p.add_argument("--models", type=Path, default=Path("models"))

    p = commands.add_parser("import", help="convert a fitted pipeline you bring, check it on a sample, publish it "
                            "(loading a pickle runs code from it: only load files you trust)")
    p.add_argument("--pipeline", type=Path, required=True, help="joblib or pickle file: a fitted estimator, "
                   "Pipeline, or tuple/list of fitted steps")
    p.add_argument("--sample", type=Path, required=True, help="request records: .parquet, .csv or .jsonl")
    p.add_argument("--name", required=True, help="the model's name in the repository and in URLs")
    p.add_argument("--task", choices=["regression", "classification"], default=None,
                   help="checked against the final step (default: taken from it)")
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--build", type=Path, default=Path("build"),
                   help="where the sample is kept as request rows for the load tests (build/<name>/)")

    args = parser.parse_args(argv)
    # Held-out trips may start in zones the training trips never did; they
    # encode as all zeros by design (handle_unknown="ignore").
    warnings.filterwarnings("ignore", message="Found unknown categories")
    try:
        if args.command == "synth":
            path = synth.write(args.out, args.rows, args.seed, args.month, args.schema)
            print(f"[synth] wrote {args.rows:,} {args.schema} trips (seed {args.seed}, {args.month}) to {path}")
        elif args.command == "fit":
            fit.fit(args.data, args.model, args.name, args.build, args.seed)
        elif args.command == "import":
            from .importer import run  # onnxmltools, xgboost and lightgbm load only for imports

            run.import_pipeline(args.pipeline, args.sample, args.name, args.models, args.task, args.build)
        else:
            export.export(args.name, args.build, args.models)
    except (data.NotTripData, export.ParityError, tracking.TrackingError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
