"""python -m experiments decide NAME [--apply] [--state DIR] [--metrics URL …] [--registry URL]
python -m experiments start NAME FILE [--registry URL]
python -m experiments end NAME [--registry URL]

decide prints the decision as one JSON line and appends it to
models/<NAME>/decisions.jsonl; --apply carries it out (experiment.json,
and the MLflow alias when MLFLOW_TRACKING_URI is set). start and end write
the experiment (FILE: an experiment.json) or remove it. With --registry the
experiment is the registered model's tag skl2go.experiment, which replicas
run with --registry read (docs/experiments.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from monitor.logs import LogError

from . import decide


def main(argv: list[str] | None = None) -> int:
    rules = decide.Rules()
    parser = argparse.ArgumentParser(prog="python -m experiments", description=decide.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("decide", help="shift weight, promote or roll back one model's experiment")
    p.add_argument("name")
    p.add_argument("--apply", action="store_true", help="carry the decision out (default: only print it)")
    p.add_argument("--state", default=os.environ.get("STATE") or "run",
                   help="the topology's state directory, whose inference/ holds the log (default $STATE or run)")
    p.add_argument("--metrics", action="append", default=[], metavar="URL",
                   help="a replica's /metrics, for the guard rails (repeat per replica)")
    for name, value in vars(rules).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    start = commands.add_parser("start", help="start or change one model's experiment")
    start.add_argument("name")
    start.add_argument("file", type=Path, help="the experiment, as experiment.json")
    end = commands.add_parser("end", help="end one model's experiment")
    end.add_argument("name")
    for sub in (p, start, end):
        sub.add_argument("--models", default=os.environ.get("MODELS") or "models")
        sub.add_argument("--registry", default="", metavar="URL",
                         help="the MLflow registry the replicas follow: the experiment is its registered model's tag")
    args = parser.parse_args(argv)
    registry = bool(args.registry)
    if registry:
        os.environ["MLFLOW_TRACKING_URI"] = args.registry
    try:
        if args.command == "start":
            decide.write(args.models, args.name, json.loads(args.file.read_text()), registry)
            return 0
        if args.command == "end":
            decide.write(args.models, args.name, None, registry)
            return 0
        for name in vars(rules):
            setattr(rules, name, getattr(args, name))
        experiment = decide.load(args.models, args.name, registry)
        outcomes = decide.outcomes(args.state, args.name)
        metrics = decide.scrape(args.metrics, args.name) if args.metrics else None
        resolve = (lambda alias: decide.tracking.alias_version(args.name, alias)) if registry else None
        decision = decide.decide(args.name, experiment, outcomes, rules, metrics, resolve)
        if args.apply:
            decide.apply(args.models, decision, experiment, registry)
    except (decide.ExperimentError, LogError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(decide.record(args.models, decision), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
