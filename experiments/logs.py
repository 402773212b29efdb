"""The minimal reader of the inference log that the experiment decision needs.

The replicas write JSON Lines under $STATE/inference/<replica>/inference-*.jsonl
(.gz when rotated), one CloudEvent per record: inferences
(type org.skl2go.inference, with requestid, model, version, variant and
data.outputs.predictions, one per row) and ground truth
(type org.skl2go.actual, data {requestid, row, actual}); more ground truth
may be dropped as JSON Lines into $STATE/inference/actuals/. An outcome is
a prediction joined with its actual on (requestid, row).

It reads only what a decision needs (no time window, no inputs); monitor's
reader, where present, is the full one.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

INFERENCE, ACTUAL = "org.skl2go.inference", "org.skl2go.actual"


@dataclass(frozen=True)
class Outcome:
    """One answered row whose ground truth arrived."""

    variant: str
    version: int
    prediction: float
    actual: float


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz")))


def _records(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(record, dict):
                yield record


def _field(record: dict, name: str):
    """A CloudEvents extension attribute, or the same field in data."""
    if name in record:
        return record[name]
    data = record.get("data")
    return data.get(name) if isinstance(data, dict) else None


def _prediction(value) -> float | None:
    if isinstance(value, dict):  # a classifier's row: {"label": …, "probabilities": […]}
        value = value.get("label")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def outcomes(root: str | Path, model: str) -> list[Outcome]:
    """Every outcome of `model` that an experiment assigned (it has a variant)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no inference log: {root} does not exist")
    predicted: dict[tuple[str, int], tuple[str, int, float]] = {}
    actual: dict[tuple[str, int], float] = {}
    for path in _files(root):
        for record in _records(path):
            kind = record.get("type")
            if kind == INFERENCE and _field(record, "model") == model and _field(record, "variant"):
                variant, version, request = _field(record, "variant"), _field(record, "version"), _field(record, "requestid")
                outputs = (record.get("data") or {}).get("outputs") or {}
                for row, value in enumerate(outputs.get("predictions") or []):
                    if (p := _prediction(value)) is not None:
                        predicted[(str(request), row)] = (str(variant), int(version or 0), p)
            elif kind == ACTUAL:
                data = record.get("data") or {}
                request, row, value = data.get("requestid", record.get("requestid")), data.get("row", 0), data.get("actual")
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    actual[(str(request), int(row))] = float(value)
    return [Outcome(v, ver, p, actual[key]) for key, (v, ver, p) in predicted.items() if key in actual]
