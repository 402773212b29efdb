"""Realistic request bodies, sampled from the trips a model never saw, and
the checks every answer must pass.

`python -m train fit` keeps the held-out (latest) trips of each model in
build/<name>/validation.parquet, next to training.json, which names the
features and the target. Requests are made of those rows, features only, as a
client would send them: {"instances": [{field: value, ...}, ...]}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from train.tasks import TRAINING_FILE, VALIDATION_FILE


def held_out_features(build_dir: str | Path) -> pd.DataFrame:
    """The held-out rows of build/<name>/, with the model's features only, in order."""
    build_dir = Path(build_dir)
    training_file = build_dir / TRAINING_FILE
    validation_file = build_dir / VALIDATION_FILE
    for path in (training_file, validation_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `python -m train fit` (make train) first")
    features = list(json.loads(training_file.read_text())["features"])
    rows = pd.read_parquet(validation_file, columns=features)
    if rows.empty:
        raise ValueError(f"{validation_file} has no rows")
    return rows


def instances(rows: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready instances. float32 values are written in their
    shortest form (1.08, not 1.0800000429153442), as a client would; a
    missing float (NaN, in an imported model's sample) as null."""
    columns = {}
    for name in rows.columns:
        values = rows[name].to_numpy()
        if values.dtype == np.float32:
            columns[name] = [None if math.isnan(v) else float(str(v)) for v in values]
        elif values.dtype.kind == "f":
            columns[name] = [None if math.isnan(v) else v for v in values.tolist()]
        else:
            columns[name] = values.tolist()
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def request_bodies(rows: pd.DataFrame, rows_per_request: int, count: int, seed: int = 0) -> list[bytes]:
    """`count` predict bodies of `rows_per_request` rows each, drawn at random
    (without replacement within a body when there are enough rows)."""
    if rows_per_request < 1 or count < 1:
        raise ValueError("rows_per_request and count must be positive")
    rng = np.random.default_rng(seed)
    pool = instances(rows)
    replace = rows_per_request > len(pool)
    bodies = []
    for _ in range(count):
        picked = rng.choice(len(pool), size=rows_per_request, replace=replace)
        body = {"instances": [pool[i] for i in picked]}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def write_bodies(path: str | Path, bodies: list[bytes]) -> Path:
    """One body per line (compact JSON has no newlines): the file wrk's script reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


def check_prediction(body: bytes, rows: int, name: str, version: int) -> tuple[int, str]:
    """(version answered, "") for a good predict answer, else (0, what is wrong)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return 0, "answer is not JSON"
    if not isinstance(doc, dict):
        return 0, "answer is not a JSON object"
    predictions = doc.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != rows:
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        return 0, f"expected {rows} predictions, got {got}"
    if not all(_is_prediction(p) for p in predictions):
        return 0, "a prediction is not a finite number or a {label, probabilities} object"
    if doc.get("model") != name:
        return 0, f"answer names model {doc.get('model')!r}, not {name!r}"
    answered = doc.get("version")
    if type(answered) is not int or answered < 1 or (version and answered != version):
        return 0, f"answer has version {answered!r}" + (f", expected {version}" if version else "")
    return answered, ""


def _is_prediction(p) -> bool:
    if type(p) in (int, float):
        return math.isfinite(p)
    return isinstance(p, dict) and "label" in p and isinstance(p.get("probabilities"), list)


def error_text(content: bytes | None) -> str:
    """The server's {"error": ...} message, or the start of the body."""
    text = (content or b"").decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"])[:200]
    except (ValueError, KeyError, TypeError):
        return text[:200] or "(empty body)"
