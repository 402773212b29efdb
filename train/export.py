"""Export a fitted pipeline to the model repository, checked against sklearn.

models/<name>/<version>/ gets model.onnx, model.json (the contract the Go
server reads), pipeline.joblib (for parity tests and the baseline server) and
reference.parquet (training inputs with the graph's predictions, for the
monitor), published by train/repository.py. Nothing is written unless ONNX Runtime
reproduces sklearn's predictions on every held-out row.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import time
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from skl2onnx import to_onnx

from . import agreement, graph, repository, tracking
from .data import CLASSIFICATION
from .fit import log
from .tasks import REFERENCE_SAMPLE_FILE, TRAINING_FILE, VALIDATION_FILE
from .repository import MODEL_FILE, PIPELINE_FILE, REFERENCE_FILE

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


def convert(model, example: pd.DataFrame) -> onnx.ModelProto:
    """Convert a fitted pipeline; one graph input per column, typed like `example`.

    Classifiers output plain tensors `label` and `probabilities` rather than
    skl2onnx's default ZipMap (a sequence of maps per row).
    """
    estimator = model.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    return to_onnx(model, example.iloc[:1], options=options)


def run_onnx(onnx_bytes: bytes, X: pd.DataFrame) -> list[np.ndarray]:
    """Run the graph in ONNX Runtime on X (one feed per column); return its outputs."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = {i.name: X[[i.name]].to_numpy() for i in session.get_inputs()}
    return session.run(None, feeds)


def check_against_sklearn(onnx_bytes: bytes, model, X: pd.DataFrame, task: str,
                          what: str = "held-out rows") -> agreement.Agreement:
    """Run the ONNX model in ONNX Runtime on X and compare with sklearn on every row.

    Regression compares with model.predict(X); classification compares the
    labels with predict(X) and the probabilities with predict_proba(X).
    Raises ParityError, with the worst rows, when a row is out of bound.
    """
    onnx.checker.check_model(onnx.load_from_string(onnx_bytes))
    outputs = run_onnx(onnx_bytes, X)
    if task == CLASSIFICATION:
        want_labels, want_proba = model.predict(X), model.predict_proba(X)
        result = agreement.classification(outputs[0], outputs[1], want_labels, want_proba)
        table = X.assign(sklearn_label=want_labels, onnx_label=outputs[0].reshape(-1),
                         sklearn_p1=want_proba[:, -1], onnx_p1=outputs[1][:, -1], proba_error=result.row_error)
        bound = f"labels identical, probabilities within {agreement.PROBA_ATOL:g}"
    else:
        want = np.asarray(model.predict(X), dtype=np.float64)
        got = outputs[0].reshape(-1).astype(np.float64)
        result = agreement.regression(got, want)
        table = X.assign(sklearn=want, onnx=got, rel_error=result.row_error)
        bound = f"tolerance {agreement.RTOL:g} relative"
    if not result.within_bound:
        worst = [i for i in result.worst if result.out_of_bound[i]]
        raise ParityError(
            f"ONNX Runtime differs from sklearn on {int(result.out_of_bound.sum()):,} of {result.rows:,} "
            f"{what} ({bound}); worst rows:\n{table.iloc[worst].to_string()}"
        )
    return result


def edge_rows(X: pd.DataFrame, ranges: dict[str, list[float]], n: int = 200) -> pd.DataFrame:
    """Held-out rows pushed to what the server accepts but training rarely saw.

    Each numeric input at both ends of its range, and categories never seen
    in training (zone 0 and 266, hour 24, weekday 7: sklearn's
    handle_unknown="ignore" encodes them as all zeros, and so must the graph).
    """
    base = X.iloc[np.linspace(0, len(X) - 1, num=min(n, len(X))).astype(int)].reset_index(drop=True)
    variants = []
    for column, (low, high) in ranges.items():
        for value in (low, high):
            variants.append(base.assign(**{column: base[column].dtype.type(value)}))
    unseen = {"PULocationID": 0, "DOLocationID": 266, "pickup_hour": 24, "pickup_weekday": 7}
    for column, value in unseen.items():
        variants.append(base.assign(**{column: base[column].dtype.type(value)}))
    return pd.concat(variants, ignore_index=True)


def export(name: str, build_dir: Path, models_dir: Path) -> Path:
    """Convert build/<name>, check it, and publish it as the next version."""
    started = time.perf_counter()
    src = Path(build_dir) / name
    if not (src / TRAINING_FILE).is_file():
        raise FileNotFoundError(f"{src / TRAINING_FILE} not found: run `python -m train fit --name {name}` first")
    training = json.loads((src / TRAINING_FILE).read_text())
    model = joblib.load(src / PIPELINE_FILE)
    task = training["task"]
    validation = pd.read_parquet(src / VALIDATION_FILE)
    X_val = validation.drop(columns=[training["target"]["name"]])

    onnx_model, rewrites = graph.simplify(convert(model, X_val))
    onnx_model, sparse = graph.sparse_linear(onnx_model)
    onnx_bytes = onnx_model.SerializeToString()
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in onnx_model.opset_import)
    log("convert", f"{training['family']} -> ONNX, {len(onnx_bytes) / 1e6:.2f} MB, opsets {opsets}")
    if rewrites:
        log("simplify", f"{len(rewrites)} contiguous Gather(s) -> Slice (same results, faster in ONNX Runtime)")
    if sparse:
        log("simplify", f"{sparse[0]}: one-hot blocks -> LabelEncoder + Gather of coefficients (sklearn's sparse "
            "sum, no dense one-hot matrix; checked against sklearn below)")
    if task == CLASSIFICATION:
        outputs = [(o.name, ONNX_TYPES.get(o.type.tensor_type.elem_type, o.type.WhichOneof("value")))
                   for o in onnx_model.graph.output]
        if outputs != [("label", "tensor(int64)"), ("probabilities", "tensor(float)")]:
            raise ValueError(f"the classifier's graph outputs {outputs}; the server reads label (int64) and "
                             "probabilities (float) tensors: convert with ZipMap off")

    parity = check_against_sklearn(onnx_bytes, model, X_val, task)
    if task == CLASSIFICATION:
        log("check", f"ONNX Runtime matches sklearn on {parity.rows:,} held-out rows: labels "
            f"{parity.label_agreement:.2%} identical, max probability error {parity.max_proba_abs_error:.3g}")
    else:
        log("check", f"ONNX Runtime matches sklearn on {parity.rows:,} held-out rows: max abs error "
            f"{parity.max_abs_error:.3g} min, max rel error {parity.max_rel_error:.3g} "
            f"(|error| / |sklearn|: {parity.max_true_rel_error:.3g})")
    edges = edge_rows(X_val, training.get("ranges", {}))
    check_against_sklearn(onnx_bytes, model, edges, task, what="edge rows (range ends, unseen categories)")
    log("check", f"and on {len(edges):,} edge rows (inputs at their range ends, unseen categories)")

    metadata = describe(onnx_model, onnx_bytes, training, X_val, model, parity)
    if (src / REFERENCE_SAMPLE_FILE).is_file():
        inputs = pd.read_parquet(src / REFERENCE_SAMPLE_FILE)
    else:  # a build made before fit kept a training sample
        log("reference", f"{src / REFERENCE_SAMPLE_FILE} not found: the reference is the held-out rows instead "
            "(fit again to keep a sample of the training rows)")
        inputs = X_val.iloc[:REFERENCE_ROWS_FALLBACK]
    reference = reference_frame(onnx_bytes, inputs, task)
    path = repository.publish(Path(models_dir) / name, {MODEL_FILE: onnx_bytes, PIPELINE_FILE: src / PIPELINE_FILE,
                                                        REFERENCE_FILE: parquet_bytes(reference)}, metadata)
    log("export", f"published {path} ({len(reference):,} reference rows) in {time.perf_counter() - started:.1f}s")
    if tracking.enabled():
        tracking.log_version(path, model, X_val)
    return path


REFERENCE_ROWS_FALLBACK = 5_000


def reference_frame(onnx_bytes: bytes, X: pd.DataFrame, task: str) -> pd.DataFrame:
    """The reference data: inputs and the graph's own answers on them, as the
    server gives them: `prediction` (a number, or the label) and, for a
    classifier, `probability` (of the last class, the positive one)."""
    outputs = run_onnx(onnx_bytes, X)
    reference = X.reset_index(drop=True).assign(prediction=outputs[0].reshape(-1))
    if task == CLASSIFICATION:
        reference["probability"] = outputs[1][:, -1].astype(np.float64)
    return reference


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def describe(onnx_model: onnx.ModelProto, onnx_bytes: bytes, training: dict, X: pd.DataFrame,
             model, parity: agreement.Agreement) -> dict:
    """Build model.json (everything but the version, set when publishing)."""
    ranges = training.get("ranges", {})
    rows = _spread(len(X), N_EXAMPLES)
    examples = X.iloc[rows]
    if training["task"] == CLASSIFICATION:
        labels, proba = model.predict(examples), model.predict_proba(examples)
        predictions = [{"label": int(label), "probabilities": [float(p) for p in row]}
                       for label, row in zip(labels, proba)]
        checked = {"rows": parity.rows, "label_agreement": parity.label_agreement,
                   "max_proba_abs_error": parity.max_proba_abs_error, "proba_atol": agreement.PROBA_ATOL}
    else:
        predictions = [float(p) for p in model.predict(examples)]
        checked = {"rows": parity.rows, "max_abs_error": parity.max_abs_error,
                   "max_rel_error": parity.max_rel_error, "max_true_rel_error": parity.max_true_rel_error,
                   "rtol": agreement.RTOL, "floor": agreement.FLOOR}
    return {
        "name": training["name"],
        "version": None,
        "task": training["task"],
        "family": training["family"],
        **({"classes": training["target"]["classes"]} if training["task"] == CLASSIFICATION else {}),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [
            {"name": i.name, "type": _onnx_type(i.type), "shape": _shape(i.type), "example": _scalar(X[i.name].iloc[0]),
             **({"range": ranges[i.name]} if i.name in ranges else {})}
            for i in onnx_model.graph.input
        ],
        "outputs": [{"name": o.name, "type": _onnx_type(o.type), "shape": _shape(o.type)} for o in onnx_model.graph.output],
        # Held-out rows with sklearn's own predictions: the server replays
        # them when it loads the model and refuses a graph that disagrees.
        "examples": [
            {"instance": {c: _scalar(examples[c].iloc[k]) for c in X.columns}, "prediction": predictions[k]}
            for k in range(len(rows))
        ],
        "target": training["target"],
        "metrics": training["metrics"],
        "parity": checked,
        "data": training["data"],
        "libraries": {"python": platform.python_version(), **{lib: package_version(lib) for lib in LIBRARIES}},
        "files": {
            "onnx": {"path": MODEL_FILE, "sha256": hashlib.sha256(onnx_bytes).hexdigest()},
            "sklearn": {"path": PIPELINE_FILE},
            "reference": {"path": REFERENCE_FILE},
        },
    }


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
