"""Parity: every model family answers through the real Go server as sklearn does.

    python -m verify.parity --data data/green_tripdata_synthetic.parquet --models build/parity/models

For each family, the model named after it in the repository (or the names
given to `run`):

1. recompute the rows fit held out, from the same trip files (the latest 20%
   by pickup time), after checking that the model was trained on exactly
   those files (model.json's data fingerprint);
2. start the real topology (`make up`, through the topology package): a Go
   replica on ONNX Runtime behind nginx, on free loopback ports;
3. send every held-out row (or `rows` of them) to the replica, and a sample
   (`nginx_rows`) through nginx, as JSON predict requests;
4. compare the answers with the published pipeline.joblib's `predict` (and
   `predict_proba` for classifiers), row by row, with the bounds in
   train/agreement.py;
5. write reports/parity.json and reports/parity.md, and stop the topology.

The exit status is 1 when a family misses its bound.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

import topology
from loadtest.samples import instances
from train import agreement, data, export, pipeline, repository
from train.fit import log

BATCH = 1000  # rows per request to the replica
NGINX_BATCH = 100  # rows per request through nginx
SINGLE_ROWS = 100  # the first rows go one per request, the common case,
CONCURRENCY = 8  # that many at a time
WORST_ROWS = 5


class ParityError(Exception):
    """Parity could not be measured (wrong data, missing model, server down)."""


@dataclass
class Endpoints:
    replica: str  # http://127.0.0.1:port of the Go server itself
    nginx: str  # http://127.0.0.1:port of nginx in front of it


@dataclass
class FamilyResult:
    family: str
    task: str
    name: str  # the model's name in the repository
    version: int
    server: agreement.Agreement  # rows sent to the replica
    nginx: agreement.Agreement  # the sample sent through nginx
    worst_rows: list[dict]
    seconds: float

    @property
    def within_bound(self) -> bool:
        return self.server.within_bound and self.nginx.within_bound


# --- the held-out rows and what sklearn predicts for them --------------------

def held_out(paths: list[str], task: str) -> tuple[pd.DataFrame, str]:
    """The rows `fit` held out for validation from these files, and the files' fingerprint."""
    trips = data.load_trips(paths, task)
    X, y = data.make_features(trips.frame, task)
    _, _, X_val, _ = data.split_latest(X, y)
    return X_val, data.fingerprint(trips.files)


def sklearn_answers(model, X: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """predict (and predict_proba for a classifier) on X."""
    if task == data.CLASSIFICATION:
        return np.asarray(model.predict(X)), np.asarray(model.predict_proba(X), dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64), None


# --- talking to the server ----------------------------------------------------

def post_json(url: str, payload: dict) -> tuple[int, dict]:
    """POST payload as JSON; return the status and the JSON answer."""
    status, body = topology.request("POST", url, json.dumps(payload).encode(), timeout=120)
    return status, body if isinstance(body, dict) else {"error": body}


def server_answers(url: str, name: str, X: pd.DataFrame, batch: int, single: int = 0) -> tuple[list, list[str]]:
    """Send X to url's predict endpoint: the first `single` rows one per
    request, CONCURRENCY at a time (so the server's dynamic batching merges
    them into shared runs), the rest `batch` per request. Returns one answer
    per row (None where a request failed) and the errors."""
    endpoint = f"{url}/v1/models/{name}:predict"
    single = min(single, len(X))
    spans = [(i, i + 1) for i in range(single)] + [(i, min(i + batch, len(X))) for i in range(single, len(X), batch)]

    def ask(span: tuple[int, int]) -> tuple[int, dict]:
        return post_json(endpoint, {"instances": instances(X.iloc[span[0]:span[1]])})

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        replies = list(pool.map(ask, spans[:single])) + [ask(span) for span in spans[single:]]
    answers: list = []
    errors: list[str] = []
    for (start, end), (status, body) in zip(spans, replies):
        if status == 200 and len(body.get("predictions", [])) == end - start:
            answers += body["predictions"]
        else:
            errors.append(f"rows {start}-{end - 1}: HTTP {status}: {body.get('error', body)}")
            answers += [None] * (end - start)
    return answers, errors


def compare(task: str, answers: list, want: np.ndarray, want_proba: np.ndarray | None) -> agreement.Agreement:
    """Row-by-row agreement of the server's answers with sklearn's (a missing answer is out of bound)."""
    if task == data.CLASSIFICATION:
        classes = want_proba.shape[1]
        labels = [a["label"] if a else -1 for a in answers]
        proba = [a["probabilities"] if a else [math.nan] * classes for a in answers]
        return agreement.classification(labels, proba, want, want_proba, worst=WORST_ROWS)
    got = [math.nan if a is None else a for a in answers]
    return agreement.regression(got, want, worst=WORST_ROWS)


def worst_rows(result: agreement.Agreement, via: str, X: pd.DataFrame, answers: list, want: np.ndarray,
               want_proba: np.ndarray | None, held_out_index: np.ndarray) -> list[dict]:
    """The rows farthest from sklearn, with their index among the held-out
    rows, the instance and both answers."""
    rows = []
    for i in result.worst:
        i = int(i)
        row = {"row": int(held_out_index[i]), "via": via, "instance": instances(X.iloc[i:i + 1])[0],
               "server": answers[i]}
        if result.task == data.CLASSIFICATION:
            row["sklearn"] = {"label": int(want[i]), "probabilities": want_proba[i].tolist()}
            row["label_identical"] = answers[i] is not None and answers[i]["label"] == int(want[i])
            row["proba_abs_error"] = _finite(result.row_error[i])
        else:
            row["sklearn"] = float(want[i])
            abs_error = abs(answers[i] - want[i]) if answers[i] is not None else None
            row["abs_error"] = _finite(abs_error)
            row["rel_error"] = _finite(result.row_error[i])
            row["true_rel_error"] = _finite(abs_error / abs(want[i])) if abs_error is not None and want[i] else None
        row["within_bound"] = not bool(result.out_of_bound[i])
        rows.append(row)
    return rows


# --- the topology -------------------------------------------------------------

@contextlib.contextmanager
def serving(models: Path, state: Path) -> Iterator[Endpoints]:
    """One Go replica behind nginx (`make up`, on free loopback ports),
    always stopped (`make down`) on exit, even after a failure."""
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(topology.running(models, state, replicas=1, SKL2GO_LOG_LEVEL="warn"))
        except RuntimeError as exc:
            raise ParityError(str(exc)) from None
        yield Endpoints(replica=started.replicas[0], nginx=started.url)


# --- the run ------------------------------------------------------------------

@dataclass
class Plan:
    """One family to check: its model version and the held-out rows to send."""

    family: str
    task: str
    name: str
    version_dir: Path
    meta: dict
    X: pd.DataFrame


def plan(family: str, name: str, models: Path, paths: list[str], rows: int | None, min_rows: int,
         held_out_rows: Callable[[str], tuple[pd.DataFrame, str]]) -> Plan:
    """Find the family's model and its held-out rows (held_out_rows(task):
    held_out on `paths`), checking that the model was trained on these very
    trip files, before anything is started."""
    try:
        version_dir = repository.latest_version(models, name)
    except FileNotFoundError as exc:
        raise ParityError(f"{exc}: train and export it first (`make parity` does)") from None
    meta = repository.load_metadata(version_dir)
    task = pipeline.task_of(family)
    if meta["family"] != family:
        raise ParityError(f"{version_dir}: model.json says family {meta['family']!r}, expected {family!r}")
    X, fingerprint = held_out_rows(task)
    if meta["data"]["fingerprint"] != fingerprint:
        raise ParityError(f"{version_dir} was trained on other trip files than {', '.join(paths)} "
                          f"(fingerprint {meta['data']['fingerprint']}, these files: {fingerprint}): retrain it")
    if rows:
        X = X.iloc[:rows]
    if len(X) < min_rows:
        raise ParityError(f"{family}: only {len(X):,} held-out rows in {', '.join(paths)}; "
                          f"parity needs at least {min_rows:,}: use more trips")
    return Plan(family, task, name, version_dir, meta, X)


def check_family(p: Plan, endpoints: Endpoints, nginx_rows: int) -> FamilyResult:
    """Send one family's held-out rows through the server and nginx; compare with sklearn."""
    started = time.perf_counter()
    X = p.X
    sampled = np.linspace(0, len(X) - 1, num=min(nginx_rows, len(X))).astype(int)
    sample = X.iloc[sampled].reset_index(drop=True)
    model = joblib.load(p.version_dir / p.meta["files"]["sklearn"]["path"])

    want, want_proba = sklearn_answers(model, X, p.task)
    answers, errors = server_answers(endpoints.replica, p.name, X, BATCH, single=SINGLE_ROWS)
    server = compare(p.task, answers, want, want_proba)

    nginx_want, nginx_proba = want[sampled], None if want_proba is None else want_proba[sampled]
    nginx_answers, nginx_errors = server_answers(endpoints.nginx, p.name, sample, NGINX_BATCH)
    nginx = compare(p.task, nginx_answers, nginx_want, nginx_proba)

    worst = (worst_rows(server, "server", X, answers, want, want_proba, np.arange(len(X)))
             + worst_rows(nginx, "nginx", sample, nginx_answers, nginx_want, nginx_proba, sampled))
    worst.sort(key=lambda r: (r["within_bound"], -(r.get("rel_error") or r.get("proba_abs_error") or 0.0)))
    for error in (errors + nginx_errors)[:WORST_ROWS]:
        log("parity", f"{p.family}: {error}")
    result = FamilyResult(p.family, p.task, p.name, int(p.meta["version"]), server, nginx, worst[:WORST_ROWS],
                          time.perf_counter() - started)
    log("parity", summary_line(result))
    return result


def run(paths: list[str], models: Path, names: dict[str, str], out: Path, rows: int | None = None,
        nginx_rows: int = 1000, min_rows: int = 0, state: Path | None = None) -> list[FamilyResult]:
    """Check every family in `names` (family -> model name) and write the reports to `out`."""
    models = Path(models).resolve()
    missing = [f for f in names if f not in pipeline.TASKS]
    if missing:
        raise ParityError(f"unknown model families {missing}; choose from {', '.join(pipeline.FAMILIES)}")
    held_out_rows = functools.cache(functools.partial(held_out, paths))  # one read per task, not per family
    plans = [plan(family, name, models, paths, rows, min_rows, held_out_rows) for family, name in names.items()]
    with contextlib.ExitStack() as stack:
        if state is None:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skl2go-parity-")))
        log("parity", f"starting a Go replica and nginx on {models} ({len(names)} models)")
        endpoints = stack.enter_context(serving(models, Path(state)))
        log("parity", f"replica {endpoints.replica}, nginx {endpoints.nginx}")
        results = [check_family(p, endpoints, nginx_rows) for p in plans]
    write_reports(results, Path(out), paths)
    return results


def summary_line(r: FamilyResult) -> str:
    verdict = "within bound" if r.within_bound else "OUT OF BOUND"
    if r.task == data.CLASSIFICATION:
        figures = (f"labels {r.server.label_agreement:.4%} identical, "
                   f"max probability error {max(r.server.max_proba_abs_error, r.nginx.max_proba_abs_error):.3g}")
    else:
        figures = (f"max abs error {max(r.server.max_abs_error, r.nginx.max_abs_error):.3g} min, "
                   f"max rel error {max(r.server.max_rel_error, r.nginx.max_rel_error):.3g}")
    return (f"{r.family}: {r.server.rows:,} rows through the server, {r.nginx.rows:,} through nginx: "
            f"{figures}: {verdict} ({r.seconds:.1f}s)")


# --- reports ------------------------------------------------------------------

def family_json(r: FamilyResult) -> dict:
    """One family in the report's shape (the issue's, read by other tools)."""
    both = (r.server, r.nginx)
    regression = r.task == data.REGRESSION
    return {
        "family": r.family,
        "task": r.task,
        "rows": r.server.rows,
        "max_abs_error": _finite(max(a.max_abs_error for a in both)),
        "max_rel_error": _finite(max(a.max_rel_error for a in both)) if regression else None,
        "label_agreement": None if regression else _finite(min(a.label_agreement for a in both)),
        "max_proba_abs_error": None if regression else _finite(max(a.max_proba_abs_error for a in both)),
        "within_bound": r.within_bound,
        "worst_rows": r.worst_rows,
    }


def write_reports(results: list[FamilyResult], out: Path, paths: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {"families": [family_json(r) for r in results]}
    (out / "parity.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    (out / "parity.md").write_text(markdown(results, paths))
    log("parity", f"wrote {out / 'parity.md'} and {out / 'parity.json'}")


def markdown(results: list[FamilyResult], paths: list[str]) -> str:
    def number(x: float | None) -> str:
        return "—" if x is None else f"{x:.2g}"

    lines = [
        "# Parity: the Go server against sklearn",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; held-out rows of {', '.join(map(str, paths))} "
        "(the latest 20% of trips by pickup time; card payments only for classification).",
        f"Each row was sent as JSON to a Go replica (the first {SINGLE_ROWS} one per request, {CONCURRENCY} at a "
        f"time, then {BATCH} per request), and a sample through nginx ({NGINX_BATCH} per request), and compared "
        "with the published pipeline's `predict` / `predict_proba`.",
        "",
        "Errors are in minutes for regression and in probability for classification. Bounds, on every row:",
        f"- regression: `|server − sklearn| ≤ {agreement.RTOL:g} × max(|sklearn|, {agreement.FLOOR:g} minute)`: "
        "*max rel error* is that ratio; *true rel error* is `|server − sklearn| / |sklearn|`, without the floor;",
        f"- classification: labels identical to `predict`, probabilities within {agreement.PROBA_ATOL:g} "
        "of `predict_proba`.",
        "",
        "| family | task | rows (server) | rows (nginx) | max abs error | max rel error | true rel error "
        "| labels identical | max proba error | within bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        both = (r.server, r.nginx)
        regression = r.task == data.REGRESSION
        lines.append(
            f"| `{r.family}` | {r.task} | {r.server.rows:,} | {r.nginx.rows:,} "
            f"| {number(_finite(max(a.max_abs_error for a in both)))} "
            f"| {number(_finite(max(a.max_rel_error for a in both)) if regression else None)} "
            f"| {number(_finite(max(a.max_true_rel_error for a in both)) if regression else None)} "
            f"| {'—' if regression else format(min(a.label_agreement for a in both), '.2%')} "
            f"| {number(None if regression else _finite(max(a.max_proba_abs_error for a in both)))} "
            f"| {'yes' if r.within_bound else '**NO**'} |"
        )
    failed = [r for r in results if not r.within_bound]
    lines += ["", f"{len(results) - len(failed)} of {len(results)} families within bound."]
    for r in failed:
        lines += ["", f"## `{r.family}`: worst rows", "", "```json", json.dumps(r.worst_rows, indent=1), "```"]
    return "\n".join(lines) + "\n"


def _finite(x: float | None) -> float | None:
    """JSON has no NaN or Infinity: an unknown or unbounded error is null."""
    return None if x is None or not math.isfinite(x) else float(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.parity", description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="the trip files the models were trained on")
    parser.add_argument("--models", type=Path, default=Path("build/parity/models"),
                        help="a model repository with one model per family, named after it")
    parser.add_argument("--families", nargs="+", default=list(pipeline.FAMILIES), choices=pipeline.FAMILIES)
    parser.add_argument("--rows", type=int, default=0, help="held-out rows per family sent to the server (0: all)")
    parser.add_argument("--min-rows", type=int, default=10_000, help="fail if a family has fewer held-out rows")
    parser.add_argument("--nginx-rows", type=int, default=1000, help="of those, how many also go through nginx")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    # Held-out trips may start in zones the training trips never did; they
    # encode as all zeros by design (handle_unknown="ignore").
    warnings.filterwarnings("ignore", message="Found unknown categories")
    try:
        results = run(args.data, args.models, {f: f for f in args.families}, args.out, rows=args.rows,
                      nginx_rows=args.nginx_rows, min_rows=args.min_rows)
    except (data.NotTripData, export.ParityError, ParityError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = [r.family for r in results if not r.within_bound]
    if failed:
        print(f"error: out of bound: {', '.join(failed)} (see {args.out / 'parity.md'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
