"""MLflow tracking and registry: a published version becomes an MLflow run
and a registered model version; aliases say which version is served.

    python -m train.tracking promote --name trip_duration --version 3 [--alias champion]

Export calls log_version when MLFLOW_TRACKING_URI is set. The run gets:
  - params: family, task, the estimator's hyper-parameters, seed, the data
    files and their fingerprint;
  - metrics: the training and validation metrics, and how closely ONNX
    Runtime reproduced sklearn (the parity figures);
  - artifacts: model.json and reference.parquet (skl2go/: the reference
    data the monitor compares traffic with), the ONNX graph as the `onnx` flavor (one
    self-contained model.onnx, model.json beside it) and the sklearn pipeline
    as the `sklearn` flavor, both with a signature.
The ONNX flavor is registered as a new version of the registered model named
like the skl2go model: that is what the Go replicas download (docs/registry.md).
The `champion` alias moves only with PROMOTE=1 (or `promote`), never by itself;
alias_version says where an alias points, download_version fetches the files.
Credentials come from MLflow's own environment variables
(MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME and _PASSWORD).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING

from .data import CLASSIFICATION

if TYPE_CHECKING:  # pandas is imported where it is used: batch scoring never needs it
    import pandas as pd

ALIAS = "champion"
# The registered model tag holding the model's experiment (the text of an
# experiment.json) that the replicas following the registry run.
EXPERIMENT_TAG = "skl2go.experiment"
EXPERIMENT = "skl2go"
# Where the files are in a run; the Go replicas read the registered version's
# model.onnx and model.json from the `onnx` flavor's directory.
ONNX_FLAVOR, SKLEARN_FLAVOR, METADATA_DIR = "onnx", "sklearn", "skl2go"


class TrackingError(RuntimeError):
    """The tracking server refused or could not be reached."""


def enabled() -> bool:
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


def params(meta: dict, model) -> dict[str, str]:
    """Run parameters: what was trained, how, and on which data."""
    estimator = model.steps[-1][1]
    hyper = {f"model.{k}": v for k, v in sorted(estimator.get_params(deep=False).items())
             if v is None or isinstance(v, (bool, int, float, str))}
    data = meta["data"]
    return {"name": meta["name"], "family": meta["family"], "task": meta["task"],
            "estimator": type(estimator).__name__, **hyper,
            "data.files": ",".join(Path(f["path"]).name for f in data["files"]), "data.fingerprint": data["fingerprint"],
            "data.rows_train": data["rows_train"], "data.rows_validation": data["rows_validation"],
            "skl2go.version": meta["version"]}


def metrics(meta: dict) -> dict[str, float]:
    """Run metrics: training and validation metrics, and the parity figures."""
    out = {f"{split}_{k}": float(v) for split, values in meta["metrics"].items() for k, v in values.items()
           if isinstance(v, (int, float))}
    out.update({f"parity_{k}": float(v) for k, v in meta["parity"].items() if isinstance(v, (int, float))})
    return out


def signature(model, X: pd.DataFrame, task: str):
    """The pipeline's signature on a few rows: one column per graph input,
    the prediction (or label and class probabilities) as output."""
    import pandas as pd
    from mlflow.models import infer_signature

    rows = X.iloc[:20]
    if task == CLASSIFICATION:
        proba = model.predict_proba(rows)
        out = pd.DataFrame({"label": model.predict(rows), **{f"probability_{c}": proba[:, i]
                                                            for i, c in enumerate(model.classes_)}})
    else:
        out = pd.Series(model.predict(rows), name="prediction")
    with warnings.catch_warnings():  # the trip inputs are never missing: integer columns are right
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        return infer_signature(rows, out)


def log_version(version_dir: Path, model, X: pd.DataFrame, promote: bool | None = None) -> int:
    """Log a published version (models/<name>/<version>/) as a run, register
    its ONNX graph as a new version of the registered model <name>, and move
    the alias if promote (default: PROMOTE=1 in the environment). Returns
    the registry's version number."""
    import mlflow
    import mlflow.onnx
    import mlflow.sklearn
    import onnx
    from mlflow.exceptions import MlflowException

    if promote is None:
        promote = os.environ.get("PROMOTE", "") == "1"
    meta_file = version_dir / "model.json"
    meta = json.loads(meta_file.read_text())
    name = meta["name"]
    sig = signature(model, X, meta["task"])
    try:
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT))
        with mlflow.start_run(run_name=f"{name} {meta['family']} (models/{name}/{meta['version']})") as run:
            mlflow.set_tags({"skl2go.model": name, "skl2go.family": meta["family"], "skl2go.task": meta["task"]})
            mlflow.log_params(params(meta, model))
            mlflow.log_metrics(metrics(meta))
            mlflow.log_artifact(str(meta_file), METADATA_DIR)
            if (version_dir / "reference.parquet").is_file():
                mlflow.log_artifact(str(version_dir / "reference.parquet"), METADATA_DIR)
            # Requirements given, not inferred: inference reloads the model in a subprocess.
            logged = mlflow.onnx.log_model(
                onnx.load(str(version_dir / "model.onnx")), name=ONNX_FLAVOR, signature=sig,
                save_as_external_data=False, extra_files=[str(meta_file)], registered_model_name=name,
                pip_requirements=[f"onnx=={package_version('onnx')}", f"onnxruntime=={package_version('onnxruntime')}"])
            mlflow.sklearn.log_model(
                model, name=SKLEARN_FLAVOR, signature=sig, serialization_format="cloudpickle",
                pip_requirements=[f"scikit-learn=={package_version('scikit-learn')}",
                                  f"cloudpickle=={package_version('cloudpickle')}"])
        registered = int(logged.registered_model_version)
        client = mlflow.MlflowClient()
        client.set_model_version_tag(name, str(registered), "skl2go.local_version", str(meta["version"]))
    except MlflowException as err:
        raise TrackingError(f"MLflow at {mlflow.get_tracking_uri()}: {err.message}; {version_dir} is published "
                            "locally but not tracked") from err
    print(f"[mlflow] run {run.info.run_id}: registered {name} version {registered} "
          f"({mlflow.get_tracking_uri()})", flush=True)
    if promote:
        set_alias(name, registered)
    return registered


def set_alias(name: str, version: int, alias: str = ALIAS) -> None:
    """Point name@alias at a registered version (which must exist)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        client.get_model_version(name, str(version))
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as err:
        raise TrackingError(f"MLflow at {mlflow.get_tracking_uri()}: {err.message}") from err
    print(f"[mlflow] {name}@{alias} -> version {version}", flush=True)


def alias_version(name: str, alias: str = ALIAS) -> int:
    """The registered version name@alias points to: the one resolver of an
    alias (batch scoring, the retraining loop), as the Go replicas read it.
    Needs MLFLOW_TRACKING_URI; TrackingError names what is missing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not enabled():
        raise TrackingError(f"{name}@{alias}: no registry configured: set MLFLOW_TRACKING_URI "
                            "(make … REGISTRY=http://127.0.0.1:5000)")
    try:
        return int(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        raise TrackingError(f"MLflow at {mlflow.get_tracking_uri()}: {name}@{alias}: {err.message}") from err


def experiment(name: str) -> dict | None:
    """The experiment in registered model name's tag, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        text = mlflow.MlflowClient().get_registered_model(name).tags.get(EXPERIMENT_TAG)
    except MlflowException as err:
        raise TrackingError(f"MLflow at {mlflow.get_tracking_uri()}: {name}: {err.message}") from err
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise TrackingError(f"{name}: tag {EXPERIMENT_TAG} is not valid JSON: {err}") from None


def set_experiment(name: str, doc: dict | None) -> None:
    """Start or change (doc) or end (None) the experiment in registered model
    name's tag; the replicas following the registry run it from their next poll."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        if doc is None:
            if EXPERIMENT_TAG in client.get_registered_model(name).tags:
                client.delete_registered_model_tag(name, EXPERIMENT_TAG)
        else:
            client.set_registered_model_tag(name, EXPERIMENT_TAG, json.dumps(doc, indent=2))
    except MlflowException as err:
        raise TrackingError(f"MLflow at {mlflow.get_tracking_uri()}: {name}: {err.message}") from err


def download_version(name: str, version: int, into: Path) -> Path:
    """A registered version's model.onnx and model.json (its `onnx` flavor)
    in into/<name>/<version>/, model.json's version set to the registry's
    number as the Go replicas set it: a model repository's layout."""
    import mlflow
    from mlflow.exceptions import MlflowException

    target = Path(into) / name / str(version)
    if (target / "model.json").exists():
        return target
    staging = Path(into) / name / f".incoming-{version}"
    try:
        try:
            flavor = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(staging)))
        except MlflowException as err:
            raise TrackingError(f"MLflow at {mlflow.get_tracking_uri()}: {name} version {version}: "
                                f"{err.message}") from err
        meta_file = flavor / "extra_files" / "model.json"
        if not meta_file.exists():
            raise TrackingError(f"{name} version {version} has no extra_files/model.json: register versions "
                                "with `make export` (train/tracking.py)")
        meta = {**json.loads(meta_file.read_text()), "version": version}
        if meta.get("name") != name:
            raise TrackingError(f"model.json of registered model {name} version {version} names "
                                f"{meta.get('name')!r}")
        target.mkdir(parents=True, exist_ok=True)
        (flavor / Path(meta["files"]["onnx"]["path"]).name).rename(target / "model.onnx")
        (target / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.tracking", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("promote", help="point an alias (default champion) at a registered version")
    p.add_argument("--name", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--alias", default=ALIAS)
    args = parser.parse_args(argv)
    if not enabled():
        print("error: MLFLOW_TRACKING_URI is not set (make mlflow starts http://127.0.0.1:5000)", file=sys.stderr)
        return 2
    try:
        set_alias(args.name, args.version, args.alias)
    except TrackingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
