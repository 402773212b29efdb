"""Read the replicas' inference log: a window of records, per model version,
with the ground truth joined.

Each replica writes JSON Lines under $STATE/inference/<replica>/inference-*.jsonl,
one CloudEvent per record (docs/monitoring.md has the format):

    {"specversion": "1.0", "id": …, "source": "skl2go/<replica>",
     "type": "org.skl2go.inference" | "org.skl2go.inference.shadow" | "org.skl2go.actual",
     "time": RFC 3339 UTC, "datacontenttype": "application/json",
     "requestid": …, "model": …, "version": 3, "variant": …, "latencyms": …,
     "data": {"inputs": {<input>: [one value per row]},
              "outputs": {"predictions": […], "probabilities": [[…]]}}}

An actual (type org.skl2go.actual) carries {"requestid", "key", "row",
"actual"} and joins its prediction on (requestid, row). Actuals may also be
dropped as files into $STATE/inference/actuals/: JSON Lines of the same
records, or CSV with the columns request_id,row,actual.

Standard library, pandas and pyarrow only: the project's venv and the
monitor's both import it.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

INFERENCE, SHADOW, ACTUAL = "org.skl2go.inference", "org.skl2go.inference.shadow", "org.skl2go.actual"
ACTUALS_DIR = "actuals"
# Columns every frame has besides the model's inputs.
META_COLUMNS = ["time", "requestid", "row", "source", "type", "variant", "latencyms"]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class LogError(ValueError):
    """No log where one was expected, or a window that cannot be read."""


@dataclass
class Window:
    """The records of [start, end], one frame per (model, version).

    A frame has the model's inputs (one column each), `prediction`,
    `probability` (classifiers: of the last class), META_COLUMNS and
    `actual` (NaN until the ground truth arrives)."""

    start: datetime
    end: datetime
    frames: dict[tuple[str, int], pd.DataFrame] = field(default_factory=dict)
    files: int = 0  # log files read
    skipped: int = 0  # lines that were not a record (a line cut short by a crash)
    actuals: int = 0  # ground-truth rows in the window


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The window's start: a duration back from now (90s, 30m, 24h, 7d, 2w)
    or an RFC 3339 / ISO 8601 time (UTC when it names no zone)."""
    now = now or datetime.now(timezone.utc)
    text = text.strip()
    if match := _DURATION.match(text):
        return now - timedelta(**{_UNITS[match[2]]: float(match[1])})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LogError(f"SINCE={text!r}: not a duration (30m, 24h, 7d) nor a time (2026-12-06T10:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def log_dir(state: str | Path) -> Path:
    return Path(state) / "inference"


def _lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        yield from f


def _log_files(root: Path, since: datetime) -> list[Path]:
    """Every replica's log files that may hold records since `since` (a file
    last written before the window holds none of it)."""
    found = []
    for replica in sorted(p for p in root.iterdir() if p.is_dir() and p.name != ACTUALS_DIR):
        for path in sorted(replica.glob("inference-*.jsonl*")):
            if datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) >= since - timedelta(seconds=1):
                found.append(path)
    return found


def _actual_files(root: Path) -> list[Path]:
    drop = root / ACTUALS_DIR
    return sorted(p for p in drop.glob("*") if p.suffix in (".jsonl", ".json", ".csv", ".gz")) if drop.is_dir() else []


def read(state: str | Path, since: datetime, end: datetime | None = None, model: str | None = None) -> Window:
    """Read the window [since, end] (end: now) of the log under $STATE/inference;
    only `model`'s records when given. Actuals are joined whenever they
    arrived: the ground truth of a trip in the window may come later."""
    root = log_dir(state)
    end = end or datetime.now(timezone.utc)
    if not root.is_dir():
        raise LogError(f"no inference log: {root} does not exist (start the replicas with INFERENCE_LOG=<rate>)")
    window = Window(since, end)
    predictions: dict[tuple[str, int], list[dict]] = {}
    actuals: list[dict] = []
    files = _log_files(root, since)
    window.files = len(files)
    for path in files:
        for line in _lines(path):
            record = _record(line)
            if record is None:
                window.skipped += line.strip() != ""
                continue
            kind = record.get("type")
            if kind == ACTUAL:
                actuals.extend(_actual_rows(record))
            elif kind in (INFERENCE, SHADOW):
                if model is not None and record.get("model") != model:
                    continue
                key = (str(record.get("model")), int(record.get("version") or 0))
                predictions.setdefault(key, []).append(record)
    for path in _actual_files(root):
        rows, bad = _dropped_actuals(path)
        actuals.extend(rows)
        window.skipped += bad
    truth = _truth(actuals)
    for key, records in sorted(predictions.items()):
        frame = _frame(records)
        times = pd.to_datetime(frame["time"], utc=True, errors="coerce", format="ISO8601")
        frame = frame[(times >= pd.Timestamp(since)) & (times <= pd.Timestamp(end))].reset_index(drop=True)
        if frame.empty:
            continue
        frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
        frame = frame.merge(truth, on=["requestid", "row"], how="left") if not truth.empty \
            else frame.assign(actual=float("nan"))
        window.actuals += int(frame["actual"].notna().sum())
        window.frames[key] = frame
    return window


def _record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("data"), dict) else None


def _frame(records: list[dict]) -> pd.DataFrame:
    """One row per predicted row: the inputs, the outputs and the record's attributes."""
    columns: dict[str, list] = {}
    n = 0
    for record in records:
        data = record["data"]
        inputs, outputs = data.get("inputs") or {}, data.get("outputs") or {}
        predictions = outputs.get("predictions") or []
        rows = len(predictions)
        if rows == 0 or any(not isinstance(v, list) or len(v) != rows for v in inputs.values()):
            continue  # a record whose columns disagree in length cannot be split into rows
        for name, values in inputs.items():
            columns.setdefault(name, [None] * n).extend(values)
        probabilities = outputs.get("probabilities")
        extra = {
            "prediction": predictions,
            "probability": [p[-1] if p else None for p in probabilities] if probabilities else [None] * rows,
            "time": [record.get("time")] * rows,
            "requestid": [str(record.get("requestid") or record.get("id"))] * rows,
            "row": list(range(rows)),
            "source": [record.get("source")] * rows,
            "type": [record.get("type")] * rows,
            "variant": [record.get("variant")] * rows,
            "latencyms": [record.get("latencyms")] * rows,
        }
        for name, values in extra.items():
            columns.setdefault(name, [None] * n).extend(values)
        n += rows
        for values in columns.values():  # an input a record lacks is missing in its rows
            values.extend([None] * (n - len(values)))
    frame = pd.DataFrame(columns)
    if "probability" in frame and frame["probability"].isna().all():
        frame = frame.drop(columns="probability")
    return frame


def _actual_rows(record: dict) -> list[dict]:
    data = record.get("data") or {}
    request = data.get("requestid") or record.get("requestid")
    if request is None or data.get("actual") is None:
        return []
    return [{"requestid": str(request), "row": int(data.get("row") or 0), "actual": data["actual"]}]


def _dropped_actuals(path: Path) -> tuple[list[dict], int]:
    """Actuals from a dropped file: JSON Lines of actual records, or CSV
    request_id,row,actual. Returns (rows, lines that were not one)."""
    rows, bad = [], 0
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            for line in csv.DictReader(f):
                try:
                    rows.append({"requestid": str(line["request_id"]), "row": int(line.get("row") or 0),
                                 "actual": float(line["actual"])})
                except (KeyError, TypeError, ValueError):
                    bad += 1
        return rows, bad
    for line in _lines(path):
        record = _record(line)
        if record is None or record.get("type", ACTUAL) != ACTUAL:
            bad += line.strip() != ""
            continue
        rows.extend(_actual_rows(record))
    return rows, bad


def _truth(actuals: list[dict]) -> pd.DataFrame:
    """One actual per (requestid, row): the last one recorded wins (a correction)."""
    if not actuals:
        return pd.DataFrame(columns=["requestid", "row", "actual"])
    frame = pd.DataFrame(actuals).drop_duplicates(["requestid", "row"], keep="last")
    frame["actual"] = pd.to_numeric(frame["actual"], errors="coerce")
    return frame.astype({"requestid": str, "row": "int64"})
