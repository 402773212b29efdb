"""A published model version, and ONNX Runtime run the way the Go server runs it.

Batch scoring promises the server's answers bit for bit, so it uses the same
graph (models/<name>/<version>/model.onnx), the same ONNX Runtime (the pinned
onnxruntime wheel, whose libonnxruntime.so the server loads) and the same
session options as serve-go/onnx: one intra-op thread, one inter-op thread,
every graph optimisation.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from train import repository, tracking
from train.repository import MODEL_FILE

from .stages import Stages

# Rows per ONNX Runtime run. A tree family's graph one-hot encodes into a
# dense float32 matrix (~2.2 KB a row): runs whose matrix stays in the CPU's
# cache are the fastest per row (BENCHMARKS.md). The answers do not depend
# on it (see `predict`).
RUN_ROWS = 1024


class ModelNotFound(LookupError):
    """No published version matches the name (and version) asked for."""


@dataclass(frozen=True)
class Published:
    """One published model version: its directory and its model.json."""

    name: str
    version: int
    path: Path
    metadata: dict

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def inputs(self) -> list[dict]:
        return self.metadata["inputs"]

    def onnx_bytes(self) -> bytes:
        """The graph, checked against the sha256 model.json records."""
        data = (self.path / MODEL_FILE).read_bytes()
        want = self.metadata["files"]["onnx"]["sha256"]
        if hashlib.sha256(data).hexdigest() != want:
            raise ValueError(f"{self.path / MODEL_FILE}: sha256 differs from model.json's {want}")
        return data


def resolve(models: Path, name: str, version: int | None = None) -> Published:
    """The model version that NAME and VERSION (default: the latest) refer to.

    A registry alias resolves in `from_registry` instead.
    """
    published = repository.versions(Path(models) / name)
    if not published:
        raise ModelNotFound(f"no published version of model {name!r} in {models}")
    if version is None:
        version = published[-1]
    elif version not in published:
        raise ModelNotFound(f"model {name!r} has no version {version} in {models} "
                            f"(published: {', '.join(map(str, published))})")
    path = Path(models) / name / str(version)
    metadata = repository.load_metadata(path)
    return Published(name, version, path, metadata)


def from_registry(name: str, alias: str, into: Path) -> Published:
    """The version name@alias points to in the MLflow registry
    (MLFLOW_TRACKING_URI), its files downloaded into into/<name>/<version>/,
    numbered as the registry numbers it (as the Go replicas serve it).
    Raises tracking.TrackingError when no registry is configured, or the
    model or alias is missing."""
    version = tracking.alias_version(name, alias)
    path = tracking.download_version(name, version, into)
    return Published(name, version, path, repository.load_metadata(path))


def session(onnx_bytes: bytes) -> ort.InferenceSession:
    """An ONNX Runtime session with the Go server's options.

    One intra-op thread is not only what the server uses: a tree ensemble
    split over two threads adds its trees in another order, and its float32
    answers differ in the last bit from one thread's.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def predict(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], threads: int = 1,
            stages: Stages | None = None) -> list[np.ndarray]:
    """Run the graph on columns of equal length (each [rows, 1], rows >= 1),
    RUN_ROWS at a time, `threads` runs at once (ONNX Runtime releases the GIL
    and a session may run concurrently; each run still uses one thread).

    ONNX Runtime's matrix multiply (MLAS) computes a one-row product with a
    kernel of its own (M = 1) that adds the terms in another order than the
    kernel for two rows or more: in a graph that multiplies matrices, a
    trip's answer alone differs in the last bit from its answer within a
    batch (the exported linear families gather coefficients instead, see
    train/graph.py, but other graphs may). So a run never has one row: a
    lone row is run twice and the copy dropped, as the Go server does. From
    two rows on, a row's answer does not depend on the others or their
    number.
    """
    rows = len(next(iter(feeds.values())))
    stages = stages or Stages()

    def run(start: int) -> list[np.ndarray]:
        part = {k: v[start:start + RUN_ROWS] for k, v in feeds.items()}
        with stages("onnx", wall=False):  # the caller counts the wall time
            if len(next(iter(part.values()))) == 1:
                return [o[:1] for o in sess.run(None, {k: np.concatenate([v, v]) for k, v in part.items()})]
            return sess.run(None, part)

    starts = range(0, rows, RUN_ROWS)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(threads) as pool:
            outputs = list(pool.map(run, starts))
    else:
        outputs = [run(start) for start in starts]
    return [np.concatenate([o[i] for o in outputs]) for i in range(len(outputs[0]))]
