"""The monitor's figures for one window of the inference log, per model version:
data drift of every input and of the prediction against the version's
reference data (reference.parquet, a sample of its training rows), missing
and out-of-range rates, and, where the ground truth has arrived, RMSE and MAE
(regression) or accuracy (classification).

Drift is Evidently 0.7's DataDriftPreset: per column the test Evidently
picks for the column's type and the sample sizes (with 5,000 reference rows:
Wasserstein distance for numbers, Jensen-Shannon distance for categories;
p-value tests below 1,000 rows), its score and threshold; a categorical
input's threshold is raised to what chance alone gives its number of
categories (category_threshold). Writes
reports/monitor/<name>/<window>.html (Evidently's report; <window>-quality.html
as well when actuals joined) and <window>.json, the summary docs/monitoring.md
describes. Runs from .venv-monitor: Evidently 0.7 needs pandas < 3.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import logs

MIN_ROWS = 100
DRIFT_THRESHOLD = 0.1  # Evidently's default for its distances
NOISE_MARGIN = 1.5
CATEGORICAL_TYPES = ("tensor(int64)", "tensor(int32)", "tensor(string)", "tensor(bool)")


class MonitorError(RuntimeError):
    """Nothing to report: no log, no reference data, too few rows."""


@dataclass
class Result:
    summary: dict  # the <window>.json document
    json_path: Path
    html_path: Path


def window_id(end: datetime, version: int) -> str:
    return f"{end.strftime('%Y%m%dT%H%M%SZ')}-v{version}"


def load_reference(models: Path, name: str, version: int) -> tuple[dict, pd.DataFrame]:
    """model.json and reference.parquet of models/<name>/<version>, or MonitorError naming what is missing."""
    version_dir = Path(models) / name / str(version)
    if not (version_dir / "model.json").is_file():
        raise MonitorError(f"{name} version {version} is in the log but {version_dir}/model.json is not: "
                           "point MODELS at the repository the replicas serve")
    reference = version_dir / "reference.parquet"
    if not reference.is_file():
        raise MonitorError(f"no reference data for {name} version {version}: {reference} not found "
                           "(versions exported before the monitor have none: train and export again)")
    return json.loads((version_dir / "model.json").read_text()), pd.read_parquet(reference)


def _categories(series: pd.Series) -> pd.Series:
    """Category values as text (74 and 74.0 are one zone), missing kept missing."""
    def text(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)
    return series.map(text).astype(object)


def _columns(meta: dict) -> tuple[list[str], list[str], str]:
    """(numerical inputs, categorical inputs, the prediction column drift is measured on)."""
    numerical = [i["name"] for i in meta["inputs"] if i["type"] not in CATEGORICAL_TYPES]
    categorical = [i["name"] for i in meta["inputs"] if i["type"] in CATEGORICAL_TYPES]
    return numerical, categorical, "probability" if meta["task"] == "classification" else "prediction"


def category_threshold(reference: pd.Series, current: pd.Series, floor: float = DRIFT_THRESHOLD) -> float:
    """The Jensen-Shannon distance above which a categorical input drifted.

    Two samples of one distribution over K categories differ by chance by
    a Jensen-Shannon divergence of about (K - 1)/8 * (1/n1 + 1/n2) nats: for
    the 265 taxi zones and 5,000 reference rows that distance alone is above
    Evidently's 0.1. The threshold is half again that chance distance, and
    never below the floor."""
    k = len(set(reference.dropna()) | set(current.dropna()))
    n1, n2 = max(int(reference.notna().sum()), 1), max(int(current.notna().sum()), 1)
    chance = math.sqrt(max(k - 1, 0) / 8 * (1 / n1 + 1 / n2))
    return round(max(floor, NOISE_MARGIN * chance), 4)


def drift(reference: pd.DataFrame, current: pd.DataFrame, meta: dict):
    """Evidently's DataDriftPreset over the inputs and the prediction: the
    snapshot and {column: {"drift_score", "drifted", "method", "threshold"}}."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numerical, categorical, predicted = _columns(meta)
    columns = numerical + categorical + [predicted]
    frames = []
    for frame in (reference, current):
        frame = frame[columns].copy()
        for c in categorical:
            frame[c] = _categories(frame[c])
        for c in numerical + [predicted]:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        frames.append(frame)
    # A column with no value in the window cannot be compared (Evidently
    # refuses it): it counts as drifted, the score at its maximum.
    empty = [c for c in columns if frames[1][c].isna().all()]
    scores = {c: {"drift_score": 1.0, "drifted": True, "method": "no value in the window", "threshold": 0.0}
              for c in empty}
    numerical, categorical = [c for c in numerical if c not in empty], [c for c in categorical if c not in empty]
    columns = [c for c in columns if c not in empty]
    definition = DataDefinition(numerical_columns=[c for c in numerical + [predicted] if c not in empty],
                                categorical_columns=categorical)
    thresholds = {c: category_threshold(frames[0][c], frames[1][c]) for c in categorical}
    snapshot = Report([DataDriftPreset(columns=columns, per_column_threshold=thresholds)]).run(
        current_data=Dataset.from_pandas(frames[1], data_definition=definition),
        reference_data=Dataset.from_pandas(frames[0], data_definition=definition))
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        score, threshold, method = float(metric["value"]), float(config["threshold"]), config["method"]
        # p-value tests drift below the threshold, distances at or above it.
        drifted = score < threshold if "p_value" in method else score >= threshold
        scores[config["column"]] = {"drift_score": score, "drifted": bool(drifted), "method": method,
                                    "threshold": threshold}
    return snapshot, scores


def data_quality(current: pd.DataFrame, reference: pd.DataFrame, meta: dict) -> dict:
    """Per input: the share of rows missing it, outside its model.json range,
    and (categories) with a value the reference never had."""
    out = {}
    _, categorical, _ = _columns(meta)
    for spec in meta["inputs"]:
        name = spec["name"]
        values = current[name] if name in current else pd.Series([None] * len(current))
        missing = values.isna()
        figures = {"missing_rate": float(missing.mean()) if len(values) else 0.0}
        if "range" in spec:
            low, high = spec["range"]
            numbers = pd.to_numeric(values, errors="coerce")
            figures["out_of_range_rate"] = float(((numbers < low) | (numbers > high)).mean())
        if name in categorical:
            seen = set(_categories(reference[name]).dropna())
            cats = _categories(values)
            figures["unseen_rate"] = float((cats.notna() & ~cats.isin(seen)).mean())
        out[name] = figures
    return out


def model_quality(current: pd.DataFrame, meta: dict) -> dict:
    """RMSE and MAE, or accuracy, on the rows whose actual arrived; the
    validation figures of the version beside them."""
    joined = current[current["actual"].notna()]
    validation = meta.get("metrics", {}).get("validation", {})
    if meta["task"] == "classification":
        out = {"rows": len(joined), "validation_accuracy": validation.get("accuracy")}
        if len(joined):
            out["accuracy"] = float((joined["prediction"].astype(float) == joined["actual"].astype(float)).mean())
        return out
    out = {"rows": len(joined), "validation_rmse": validation.get("rmse"), "validation_mae": validation.get("mae")}
    if len(joined):
        error = joined["prediction"].astype(float) - joined["actual"].astype(float)
        out.update(rmse=float(np.sqrt(np.mean(error**2))), mae=float(np.mean(np.abs(error))))
    return out


def quality_report(current: pd.DataFrame, meta: dict):
    """Evidently's RegressionPreset or ClassificationPreset on the joined rows (no reference: it has no actuals)."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    joined = current[current["actual"].notna()].copy()
    if meta["task"] == "classification":
        joined = joined.assign(actual=joined["actual"].astype(int), prediction=joined["prediction"].astype(int))
        definition = DataDefinition(categorical_columns=["actual", "prediction"], classification=[
            BinaryClassification(target="actual", prediction_labels="prediction", pos_label=1)])
        preset = ClassificationPreset()
    else:
        joined = joined.assign(actual=joined["actual"].astype(float), prediction=joined["prediction"].astype(float))
        definition = DataDefinition(numerical_columns=["actual", "prediction"],
                                    regression=[Regression(target="actual", prediction="prediction")])
        preset = RegressionPreset()
    return Report([preset]).run(current_data=Dataset.from_pandas(joined[["actual", "prediction"]],
                                                                 data_definition=definition), reference_data=None)


def summarize(name: str, version: int, current: pd.DataFrame, reference: pd.DataFrame, meta: dict,
              window: logs.Window, out: Path) -> Result:
    """Compute one version's figures, write its HTML and JSON; return the summary."""
    snapshot, scores = drift(reference, current, meta)
    _, _, predicted = _columns(meta)
    inputs = [i["name"] for i in meta["inputs"]]
    dq = data_quality(current, reference, meta)
    summary = {
        "model": name,
        "version": version,
        "task": meta["task"],
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat(), "rows": len(current),
                   "requests": int(current["requestid"].nunique())},
        "inputs": {i: {**scores[i], **dq[i]} for i in inputs},
        "prediction": {**scores[predicted], "column": predicted},
        "drifted_inputs": sorted(i for i in inputs if scores[i]["drifted"]),
        "quality": model_quality(current, meta),
        "reference_rows": len(reference),
    }
    out = Path(out) / name
    out.mkdir(parents=True, exist_ok=True)
    wid = window_id(window.end, version)
    html = out / f"{wid}.html"
    snapshot.save_html(str(html))
    if summary["quality"]["rows"]:
        quality_report(current, meta).save_html(str(out / f"{wid}-quality.html"))
    path = out / f"{wid}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return Result(summary, path, html)


def run(state: Path, models: Path, out: Path, since: datetime, name: str | None = None, min_rows: int = MIN_ROWS,
        end: datetime | None = None, say=print) -> list[Result]:
    """Report every model version (or `name`'s) with at least min_rows rows in
    the window [since, end]; MonitorError when there is none."""
    try:
        window = logs.read(state, since, end, model=name)
    except logs.LogError as err:
        raise MonitorError(str(err)) from None
    what = f"model {name}" if name else "any model"
    if not window.frames:
        raise MonitorError(f"no prediction of {what} in {logs.log_dir(state)} between {window.start.isoformat()} "
                           f"and {window.end.isoformat()} ({window.files} log file(s) read)")
    results, too_few = [], []
    for (model, version), current in window.frames.items():
        if len(current) < min_rows:
            too_few.append(f"{model} v{version}: {len(current)} rows")
            continue
        meta, reference = load_reference(models, model, version)
        result = summarize(model, version, current, reference, meta, window, out)
        s = result.summary
        drifted = ", ".join(s["drifted_inputs"]) or "none"
        say(f"[monitor] {model} v{version}: {len(current):,} rows, drifted inputs: {drifted}; prediction drift "
            f"{s['prediction']['drift_score']:.3g} ({'drifted' if s['prediction']['drifted'] else 'ok'}); "
            f"{s['quality']['rows']:,} actuals; {result.json_path}")
        results.append(result)
    if too_few:
        say(f"[monitor] too few rows to report (need {min_rows}): {'; '.join(too_few)}")
    if not results:
        raise MonitorError(f"too few rows in the window for {what}: {'; '.join(too_few)}; need at least {min_rows} "
                           "(widen SINCE or lower MIN_ROWS)")
    return results
