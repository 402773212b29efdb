"""python -m experiments decide NAME [--apply] [--state DIR] [--metrics URL …]

Prints the decision as one JSON line and appends it to
models/<NAME>/decisions.jsonl; --apply carries it out (experiment.json,
and the MLflow alias when MLFLOW_TRACKING_URI is set).
"""

from __future__ import annotations

import argparse
import os
import sys

from monitor.logs import LogError

from . import decide


def main(argv: list[str] | None = None) -> int:
    rules = decide.Rules()
    parser = argparse.ArgumentParser(prog="python -m experiments", description=decide.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("decide", help="shift weight, promote or roll back one model's experiment")
    p.add_argument("name")
    p.add_argument("--apply", action="store_true", help="carry the decision out (default: only print it)")
    p.add_argument("--models", default=os.environ.get("MODELS") or "models")
    p.add_argument("--state", default=os.environ.get("STATE") or "run",
                   help="the topology's state directory, whose inference/ holds the log (default $STATE or run)")
    p.add_argument("--metrics", action="append", default=[], metavar="URL",
                   help="a replica's /metrics, for the guard rails (repeat per replica)")
    for name, value in vars(rules).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    for name in vars(rules):
        setattr(rules, name, getattr(args, name))
    try:
        experiment = decide.load(args.models, args.name)
        outcomes = decide.outcomes(args.state, args.name)
        metrics = decide.scrape(args.metrics, args.name) if args.metrics else None
        decision = decide.decide(args.name, experiment, outcomes, rules, metrics)
        if args.apply:
            decide.apply(args.models, decision, experiment)
    except (decide.ExperimentError, LogError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(decide.record(args.models, decision), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
