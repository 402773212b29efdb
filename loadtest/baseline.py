"""The baseline skl2go is measured against: the fitted sklearn pipeline
(models/<name>/<version>/pipeline.joblib) behind Flask, run by gunicorn with
one sync worker per core, as a data scientist would deploy `model.predict`.

It speaks the Go server's API, so the same Locust file drives both:
POST /v1/models/{name}[/versions/{v}]:predict with {"instances": [...]}
answers {"predictions": [...], "model": name, "version": v}, and bad input
gets the same statuses and JSON errors naming the field.

    python -m loadtest.baseline --models models --bind 127.0.0.1:28080
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from train import repository

MAX_BODY_BYTES = 32 << 20  # the Go server's defaults
MAX_ROWS = 100_000

# model.json tensor types -> the dtype the pipeline was trained on.
DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(string)": object,
    "tensor(bool)": bool,
}
INT_BITS = {"tensor(int64)": 64, "tensor(int32)": 32}
FLOAT_BITS = {"tensor(float)": 32, "tensor(double)": 64}
EXPECTED = {"tensor(float)": "a number", "tensor(double)": "a number", "tensor(int64)": "an integer",
            "tensor(int32)": "an integer", "tensor(string)": "a string", "tensor(bool)": "true or false"}


class ClientError(Exception):
    """Bad input: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Served:
    """One loaded model version."""

    name: str
    version: int
    task: str
    inputs: list[tuple[str, str]]  # (field, model.json type), in the model's order
    pipeline: object
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # model.json's [min, max] per input

    def input_names(self) -> str:
        return ", ".join(name for name, _ in self.inputs)


def load_pipeline(version_dir: Path, meta: dict) -> object:
    """The version's sklearn pipeline (pipeline.joblib)."""
    return joblib.load(version_dir / meta.get("files", {}).get("sklearn", {}).get("path", repository.PIPELINE_FILE))


def load_latest(models_dir: str | Path, load=load_pipeline) -> dict[str, Served]:
    """The highest version of every model in the repository, as the Go server
    loads them; load(version_dir, metadata) makes what predicts (default: the
    sklearn pipeline)."""
    served = {}
    for version_dir in repository.latest(models_dir).values():
        meta = repository.load_metadata(version_dir)
        served[meta["name"]] = Served(
            name=meta["name"], version=int(meta["version"]), task=meta.get("task", "regression"),
            inputs=[(i["name"], i["type"]) for i in meta["inputs"]], pipeline=load(version_dir, meta),
            ranges={i["name"]: tuple(i["range"]) for i in meta["inputs"] if i.get("range")})
    if not served:
        raise FileNotFoundError(f"no model versions in {models_dir}: run `make train export` first")
    return served


# --- decoding a request body into a DataFrame, with the Go server's checks --

class _Duplicated(dict):
    """A JSON object that had a key twice (json.loads would silently keep the last)."""

    duplicate: str = ""


def _object(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        obj = _Duplicated(obj)
        obj.duplicate = dup
    return obj


def _not_json(constant: str):
    raise ValueError(f"{constant} is not valid JSON")


def _quote(s: str) -> str:
    return json.dumps(s[:40] + "…" if len(s) > 40 else s, ensure_ascii=False)


def _got(value) -> str:
    """How an unexpected JSON value is named in an error."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "string " + _quote(value)
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def parse_body(body: bytes) -> list:
    """The instances array of {"instances": [...]}."""
    if not body.strip():
        raise ClientError(400, 'empty body: expected {"instances": [...]}')
    try:
        doc = json.loads(body, parse_constant=_not_json, object_pairs_hook=_object)
    except (ValueError, RecursionError) as exc:
        raise ClientError(400, f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ClientError(400, 'body must be a JSON object {"instances": [...]}')
    if isinstance(doc, _Duplicated) and doc.duplicate == "instances":
        raise ClientError(400, '"instances" given twice')
    for key in doc:
        if key != "instances":
            raise ClientError(400, f'unknown field "{key}" in the body: expected "instances" (rows) or "inputs" (columns)')
    if "instances" not in doc:
        raise ClientError(400, 'missing field "instances" (rows; or "inputs", columns)')
    rows = doc["instances"]
    if not isinstance(rows, list):
        raise ClientError(400, f"instances: expected an array of objects, got {_got(rows)}")
    return rows


def _row_error(model: Served, i: int, row) -> ClientError | None:
    """The first problem in row i, in the order the Go server meets them:
    fields in document order (unknown field, bad value), then a duplicate,
    then a missing field."""
    if not isinstance(row, dict):
        return ClientError(400, f"instances[{i}]: expected an object, got {_got(row)}")
    kinds = dict(model.inputs)
    for key, value in row.items():
        if key not in kinds:
            return ClientError(400, f"instances[{i}].{key}: unknown field (model {model.name} expects {model.input_names()})")
        message = _value_error(f"instances[{i}].{key}", kinds[key], value, model.ranges.get(key))
        if message:
            return ClientError(400, message)
    if isinstance(row, _Duplicated):
        return ClientError(400, f"instances[{i}].{row.duplicate}: given twice")
    for name in kinds:
        if name not in row:
            return ClientError(400, f"instances[{i}].{name}: missing")
    return None


def _value_error(where: str, kind: str, value, bounds: tuple[float, float] | None = None) -> str | None:
    """Why one value cannot be a `kind` input (within bounds, if given), or None if it can."""
    message = _type_error(where, kind, value)
    if message is None and bounds is not None and not bounds[0] <= value <= bounds[1]:
        # as the model sees it: float32 inputs are compared once rounded
        seen = float(np.float32(value)) if kind == "tensor(float)" else value
        if not bounds[0] <= seen <= bounds[1]:
            return f"{where}: {value} is out of range: the model accepts {_g(bounds[0])} to {_g(bounds[1])}"
    return message


def _g(x: float) -> str:
    """A bound as Go's %g writes it for everyday numbers: 0, 1000, 0.5."""
    return repr(float(x)).removesuffix(".0")


def _type_error(where: str, kind: str, value) -> str | None:
    """Why one value cannot be a `kind` input, or None if it can."""
    if value is None:
        return f"{where}: must not be null"
    t = type(value)
    if kind in INT_BITS:
        bits = INT_BITS[kind]
        if t is float and value.is_integer():
            value = int(value)
        elif t is not int:
            return f"{where}: expected an integer, got {value}" if t is float else \
                f"{where}: expected an integer, got {_got(value)}"
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            return f"{where}: {value} is out of range for int{bits}"
        return None
    if kind in FLOAT_BITS:
        if t is not int and t is not float:
            return f"{where}: expected a number, got {_got(value)}"
        bits = FLOAT_BITS[kind]
        try:
            with np.errstate(over="ignore"):
                finite = math.isfinite(np.float32(value) if bits == 32 else float(value))
        except OverflowError:  # an integer beyond any float
            finite = False
        return None if finite else f"{where}: {value} is out of range for float{bits}"
    if kind == "tensor(string)":
        return None if t is str else f"{where}: expected a string, got {_got(value)}"
    if kind == "tensor(bool)":
        return None if t is bool else f"{where}: expected true or false, got {_got(value)}"
    return f"{where}: unsupported input type {kind}"


def _column(model: Served, rows: list[dict], name: str, kind: str) -> tuple[np.ndarray | None, tuple[int, str] | None]:
    """One input as an array, or (row, message) of its first bad value.
    The common case is checked on whole columns at C speed: the set of
    Python types, then one conversion."""
    values = [row[name] for row in rows]
    types = set(map(type, values))
    ok = {"tensor(string)": {str}, "tensor(bool)": {bool}}.get(kind, {int} if kind in INT_BITS else {int, float})
    bounds = model.ranges.get(name)
    if types <= ok:
        try:
            with np.errstate(over="ignore"):
                array = np.array(values, dtype=DTYPES[kind])
            if (kind not in FLOAT_BITS or np.isfinite(array).all()) and \
                    (bounds is None or ((array >= bounds[0]) & (array <= bounds[1])).all()):
                return array, None
        except OverflowError:
            pass
    for i, value in enumerate(values):  # slow path: name the first bad value
        message = _value_error(f"instances[{i}].{name}", kind, value, bounds)
        if message:
            return None, (i, message)
    return np.array(values, dtype=np.float64).astype(DTYPES[kind]), None  # integral floats for an integer input


def decode_instances(model: Served, rows: list) -> pd.DataFrame:
    """The instances as a DataFrame with the training dtypes, or the first
    problem (by row, then by field) as a ClientError, like the Go server."""
    return pd.DataFrame(decode_columns(model, rows))


def decode_columns(model: Served, rows: list) -> dict[str, np.ndarray]:
    """The instances as one array per input, in the model's order, with the
    training dtypes; or the first problem as a ClientError (decode_instances)."""
    if not rows:
        raise ClientError(400, "instances: must contain at least one instance")
    if len(rows) > MAX_ROWS:
        raise ClientError(413, f"too many instances: at most {MAX_ROWS} per request")
    first: tuple[int, int, str] | None = None  # (row, field order, message)
    expected = {name for name, _ in model.inputs}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or row.keys() != expected or isinstance(row, _Duplicated):
            error = _row_error(model, i, row)
            if error:
                first = (i, 0, error.message)
                rows = rows[:i]  # values after the first bad row do not matter
                break
    columns = {}
    for order, (name, kind) in enumerate(model.inputs):
        array, bad = _column(model, rows, name, kind) if rows else (None, None)
        if bad and (first is None or (bad[0], order) < first[:2]):
            first = (bad[0], order, bad[1])
        columns[name] = array
    if first:
        raise ClientError(400, first[2])
    return columns


def predictions(model: Served, frame: pd.DataFrame) -> list:
    """One answer per row: a number for a regressor, {"label", "probabilities"} for a classifier."""
    if model.task == "classification":
        labels = model.pipeline.predict(frame).tolist()
        probabilities = model.pipeline.predict_proba(frame).tolist()
        return [{"label": label, "probabilities": p} for label, p in zip(labels, probabilities)]
    return model.pipeline.predict(frame).tolist()


# --- the Flask app -----------------------------------------------------------

def _json(status: int, payload: dict) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json")


def create_app(models_dir: str | Path | None = None) -> Flask:
    """The baseline app serving the latest version of every model in models_dir
    (default: $SKL2GO_BASELINE_MODELS, else ./models)."""
    # Held-out trips include zones unseen in training; sklearn warns on every
    # predict (and encodes them as zeros, as the ONNX graph does).
    warnings.filterwarnings("ignore", message="Found unknown categories")
    models = load_latest(models_dir or os.environ.get("SKL2GO_BASELINE_MODELS", "models"))
    app = Flask("skl2go-baseline")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.errorhandler(ClientError)
    def client_error(exc: ClientError) -> Response:
        return _json(exc.status, {"error": exc.message})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        allowed = [m for m in getattr(exc, "valid_methods", None) or [] if m not in ("HEAD", "OPTIONS")]
        messages = {404: f"no such endpoint: {request.method} {request.path}",
                    405: f"method {request.method} not allowed: use {', '.join(allowed)}",
                    413: f"request body too large: the limit is {MAX_BODY_BYTES} bytes"}
        return _json(exc.code or 500, {"error": messages.get(exc.code, exc.description)})

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.post("/v1/models/<path:rest>")
    def predict(rest: str) -> Response:
        if not rest.endswith(":predict"):
            raise ClientError(404, f"no such endpoint: {request.method} {request.path}")
        model = find(models, rest.removesuffix(":predict"))
        content_type = request.mimetype
        if request.content_type and content_type != "application/json":
            raise ClientError(415, f"Content-Type must be application/json, got {request.content_type}")
        frame = decode_instances(model, parse_body(request.get_data()))
        return _json(200, {"predictions": predictions(model, frame), "model": model.name, "version": model.version})

    return app


def find(models: dict[str, Served], path: str) -> Served:
    """{name} or {name}/versions/{v} -> the served model, or 404."""
    parts = path.split("/")
    if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != "versions"):
        raise ClientError(404, f"no such endpoint: /v1/models/{path}")
    model = models.get(parts[0])
    if model is None:
        raise ClientError(404, f'model "{parts[0]}" not found (serving: {", ".join(sorted(models))})')
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) < 1 or str(int(parts[2])) != parts[2]:
            raise ClientError(400, f'version must be a positive integer, got "{parts[2]}"')
        if int(parts[2]) != model.version:
            raise ClientError(404, f'model "{model.name}" has no version {parts[2]} loaded (serving version {model.version})')
    return model


# --- running it under gunicorn ----------------------------------------------

def gunicorn_command(models_dir: str | Path, bind: str, workers: int | None = None) -> list[str]:
    """gunicorn with one sync worker per core (the usual advice for CPU-bound
    apps), serving create_app(models_dir)."""
    workers = workers or os.cpu_count() or 1
    return [sys.executable, "-m", "gunicorn", "--worker-class", "sync", "--workers", str(workers),
            "--bind", bind, "--log-level", "warning",
            f"loadtest.baseline:create_app({str(Path(models_dir).resolve())!r})"]


def gunicorn_env() -> dict[str, str]:
    """One thread per worker for numpy/BLAS, as each Go replica runs ONNX
    Runtime with one intra-op thread: processes, not threads, use the cores."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models", help="model repository (default: models)")
    parser.add_argument("--bind", default="127.0.0.1:28080", help="address to listen on")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn sync workers (default: one per core)")
    args = parser.parse_args(argv)
    command = gunicorn_command(args.models, args.bind, args.workers)
    os.execve(command[0], command, gunicorn_env())


if __name__ == "__main__":
    main()
