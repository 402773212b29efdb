"""The model repository: the contract between the Python side and the Go server.

    models/<name>/<version>/model.onnx       the graph the server runs
                            model.json       its metadata (inputs, outputs, examples, checksums)
                            pipeline.joblib  the fitted sklearn pipeline (parity, the baseline)
                            reference.parquet  training inputs and their predictions (the monitor's reference)

Versions are positive integers; the server serves the highest (and keeps a
few before it). A version appears all at once: its files are written into a
hidden temporary directory beside the versions, which is then renamed, so a
server polling the repository never sees half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

MODEL_FILE = "model.onnx"
METADATA_FILE = "model.json"
PIPELINE_FILE = "pipeline.joblib"
REFERENCE_FILE = "reference.parquet"


def versions(model_dir: str | Path) -> list[int]:
    """The published versions of one model (models/<name>), in increasing order."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(models: str | Path, name: str) -> Path:
    """The directory of the highest version of `name`; FileNotFoundError if there is none."""
    found = versions(Path(models) / name)
    if not found:
        raise FileNotFoundError(f"no version of model {name!r} in {models}")
    return Path(models) / name / str(found[-1])


def latest(models: str | Path) -> dict[str, Path]:
    """Every model in the repository that has a version: name -> its latest version's directory."""
    models = Path(models)
    if not models.is_dir():
        raise FileNotFoundError(f"model repository {models} not found")
    return {p.name: latest_version(models, p.name) for p in sorted(models.iterdir()) if versions(p)}


def next_version(model_dir: str | Path) -> int:
    return max(versions(model_dir), default=0) + 1


def load_metadata(version_dir: str | Path) -> dict:
    """model.json of one version."""
    return json.loads((Path(version_dir) / METADATA_FILE).read_text())


def publish(model_dir: str | Path, files: dict[str, bytes | Path], metadata: dict) -> Path:
    """Publish the next version of a model: `files` (name -> bytes, or a file
    to copy) and model.json (`metadata` with its version set), all at once.

    Another publisher may take a version number first: then the rename fails
    (the version exists and is not empty) and the next number is tried.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=model_dir))
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                shutil.copyfile(content, tmp / name)
        for _ in range(100):
            version = next_version(model_dir)
            (tmp / METADATA_FILE).write_text(json.dumps({**metadata, "version": version}, indent=2) + "\n")
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, model_dir / str(version))
                return model_dir / str(version)
            except OSError:
                continue
        raise RuntimeError(f"could not claim a version number in {model_dir}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
