"""Export a fitted pipeline to the model repository, checked against sklearn.

models/<name>/<version>/ gets model.onnx, model.json (the contract the Go
server reads) and pipeline.joblib (for parity tests and the baseline server).
Nothing is written unless ONNX Runtime reproduces sklearn's predictions on
every held-out row, and a version appears all at once (built in a hidden
temporary directory, then renamed) so a server never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from skl2onnx import to_onnx

from . import graph
from .data import TARGET
from .fit import PIPELINE_FILE, TRAINING_FILE, VALIDATION_FILE, log

MODEL_FILE = "model.onnx"
METADATA_FILE = "model.json"
# |onnx - sklearn| <= RTOL * max(|sklearn|, 1 minute): relative for real
# durations, and not blown up by a linear model predicting ~0 minutes.
RTOL = 1e-4
N_EXAMPLES = 8
# The tensor types the Go server maps from JSON, named as ONNX Runtime names them.
ONNX_TYPES = {
    onnx.TensorProto.FLOAT: "tensor(float)",
    onnx.TensorProto.DOUBLE: "tensor(double)",
    onnx.TensorProto.INT64: "tensor(int64)",
    onnx.TensorProto.INT32: "tensor(int32)",
    onnx.TensorProto.STRING: "tensor(string)",
    onnx.TensorProto.BOOL: "tensor(bool)",
}
LIBRARIES = ["numpy", "pandas", "pyarrow", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "joblib"]


class ParityError(Exception):
    """ONNX Runtime's predictions differ from sklearn's beyond tolerance."""


@dataclass
class Parity:
    rows: int
    max_abs_error: float
    max_rel_error: float


def convert(model, example: pd.DataFrame) -> onnx.ModelProto:
    """Convert a fitted pipeline; one graph input per column, typed like `example`."""
    return to_onnx(model, example.iloc[:1])


def check_against_sklearn(onnx_bytes: bytes, model, X: pd.DataFrame) -> Parity:
    """Run the ONNX model in ONNX Runtime on X and compare with model.predict(X)."""
    onnx.checker.check_model(onnx.load_from_string(onnx_bytes))
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = {i.name: X[[i.name]].to_numpy() for i in session.get_inputs()}
    got = session.run(None, feeds)[0].reshape(-1).astype(np.float64)
    want = np.asarray(model.predict(X), dtype=np.float64)
    abs_err = np.abs(got - want)
    rel_err = abs_err / np.maximum(np.abs(want), 1.0)
    bad = np.flatnonzero(~(rel_err <= RTOL))  # catches NaN too
    if len(bad):
        worst = bad[np.argsort(-np.nan_to_num(rel_err[bad], nan=np.inf))][:10]
        table = X.iloc[worst].assign(sklearn=want[worst], onnx=got[worst], rel_error=rel_err[worst])
        raise ParityError(
            f"ONNX Runtime differs from sklearn on {len(bad):,} of {len(X):,} held-out rows "
            f"(tolerance {RTOL:g} relative); worst rows:\n{table.to_string()}"
        )
    return Parity(len(X), float(abs_err.max(initial=0.0)), float(rel_err.max(initial=0.0)))


def export(name: str, build_dir: Path, models_dir: Path) -> Path:
    """Convert build/<name>, check it, and publish it as the next version."""
    started = time.perf_counter()
    src = Path(build_dir) / name
    if not (src / TRAINING_FILE).is_file():
        raise FileNotFoundError(f"{src / TRAINING_FILE} not found: run `python -m train fit --name {name}` first")
    training = json.loads((src / TRAINING_FILE).read_text())
    model = joblib.load(src / PIPELINE_FILE)
    validation = pd.read_parquet(src / VALIDATION_FILE)
    X_val = validation.drop(columns=[TARGET])

    onnx_model, rewrites = graph.simplify(convert(model, X_val))
    onnx_bytes = onnx_model.SerializeToString()
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in onnx_model.opset_import)
    log("convert", f"{training['family']} -> ONNX, {len(onnx_bytes) / 1e6:.2f} MB, opsets {opsets}")
    if rewrites:
        log("simplify", f"{len(rewrites)} contiguous Gather(s) -> Slice (same results, faster in ONNX Runtime)")

    parity = check_against_sklearn(onnx_bytes, model, X_val)
    log("check", f"ONNX Runtime matches sklearn on {parity.rows:,} held-out rows: "
        f"max abs error {parity.max_abs_error:.3g} min, max rel error {parity.max_rel_error:.3g}")

    metadata = describe(onnx_model, onnx_bytes, training, X_val, model.predict(X_val), parity)
    path = publish(Path(models_dir) / name, onnx_bytes, metadata, src / PIPELINE_FILE)
    log("export", f"published {path} in {time.perf_counter() - started:.1f}s")
    return path


def describe(onnx_model: onnx.ModelProto, onnx_bytes: bytes, training: dict, X: pd.DataFrame,
             predictions: np.ndarray, parity: Parity) -> dict:
    """Build model.json (everything but the version, set when publishing)."""
    return {
        "name": training["name"],
        "version": None,
        "task": training["task"],
        "family": training["family"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [
            {"name": i.name, "type": _onnx_type(i.type), "shape": _shape(i.type), "example": _scalar(X[i.name].iloc[0])}
            for i in onnx_model.graph.input
        ],
        "outputs": [{"name": o.name, "type": _onnx_type(o.type), "shape": _shape(o.type)} for o in onnx_model.graph.output],
        # Held-out rows with sklearn's own predictions: the server replays
        # them when it loads the model and refuses a graph that disagrees.
        "examples": [
            {"instance": {c: _scalar(X[c].iloc[i]) for c in X.columns}, "prediction": float(predictions[i])}
            for i in _spread(len(X), N_EXAMPLES)
        ],
        "target": training["target"],
        "metrics": training["metrics"],
        "parity": {"rows": parity.rows, "max_abs_error": parity.max_abs_error,
                   "max_rel_error": parity.max_rel_error, "rtol": RTOL},
        "data": training["data"],
        "libraries": {"python": platform.python_version(), **{lib: package_version(lib) for lib in LIBRARIES}},
        "files": {
            "onnx": {"path": MODEL_FILE, "sha256": hashlib.sha256(onnx_bytes).hexdigest()},
            "sklearn": {"path": PIPELINE_FILE},
        },
    }


def publish(model_dir: Path, onnx_bytes: bytes, metadata: dict, pipeline_file: Path) -> Path:
    """Write the files into a hidden temporary directory, then rename it to the next version."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=model_dir))
    try:
        (tmp / MODEL_FILE).write_bytes(onnx_bytes)
        shutil.copyfile(pipeline_file, tmp / PIPELINE_FILE)
        for _ in range(100):  # another exporter may take a version number first
            version = next_version(model_dir)
            metadata = {**metadata, "version": version}
            (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, model_dir / str(version))  # fails if the version already exists and is not empty
                return model_dir / str(version)
            except OSError:
                continue
        raise RuntimeError(f"could not claim a version number in {model_dir}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _onnx_type(t: onnx.TypeProto) -> str:
    elem = t.tensor_type.elem_type
    if elem not in ONNX_TYPES:
        raise ValueError(f"unsupported ONNX element type {onnx.TensorProto.DataType.Name(elem)}")
    return ONNX_TYPES[elem]


def _scalar(value) -> int | float | str | bool:
    if isinstance(value, np.floating):
        return float(str(value))  # shortest text that reads back as the same float32
    return value.item() if isinstance(value, np.generic) else value


def _spread(n: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, num=min(n, k)).astype(int).tolist()))


def _shape(t: onnx.TypeProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in t.tensor_type.shape.dim]
