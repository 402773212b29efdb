"""KServe's Python SDK (kserve.InferenceRESTClient, protocol v2) against the
real topology through nginx: health, readiness, metadata, and inference for a
regressor and a classifier with JSON and with binary tensor data, every answer
checked against sklearn. The SDK runs in its own venv (kserve pins pandas<3,
psutil<6 and python-dateutil<3, which the project's pins exclude), built by
`make venv-kserve` from requirements/clients-kserve.txt; tests/system/kserve_sdk.py
is the client program it runs.
"""

from __future__ import annotations

import json
import subprocess

import joblib
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from train import agreement, data

KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
REGRESSOR, CLASSIFIER = "trip_duration", "tip_given"
ROWS = 200


def held_out(repository, name: str) -> tuple[pd.DataFrame, object]:
    rows = pd.read_parquet(repository.build / name / "validation.parquet").iloc[:ROWS]
    rows = rows.drop(columns=[target for target in data.TARGETS.values() if target in rows])
    return rows, joblib.load(repository.models / name / "1" / "pipeline.joblib")


def run_sdk(repository, url: str, **edge: str) -> dict:
    """What the SDK answered for both models at url (edge: "cert" and "key" for TLS with API keys)."""
    if not KSERVE_PYTHON.exists():
        pytest.fail(f"{KSERVE_PYTHON} is missing: run `make venv-kserve` (make test does)")
    request = {"url": url, **edge, "models": {
        name: {column: values.tolist() for column, values in held_out(repository, name)[0].items()}
        for name in (REGRESSOR, CLASSIFIER)}}
    run = subprocess.run([str(KSERVE_PYTHON), str(ROOT / "tests" / "system" / "kserve_sdk.py")],
                         input=json.dumps(request), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def answers(topology, repository) -> dict:
    """What the SDK answered, once for every test of this module."""
    return run_sdk(repository, topology.url)


def test_health_and_readiness(answers):
    assert answers["server_live"] is True
    assert answers["server_ready"] is True
    assert answers["unknown_model_ready"] is False
    for name in (REGRESSOR, CLASSIFIER):
        assert answers["models"][name]["ready"] is True


def test_metadata_as_kserve_reads_it(answers, repository):
    assert answers["server_metadata"]["name"] == "skl2go"
    assert "binary_tensor_data" in answers["server_metadata"]["extensions"]
    for name in (REGRESSOR, CLASSIFIER):
        model = json.loads((repository.models / name / "1" / "model.json").read_text())
        meta = answers["models"][name]["metadata"]
        assert (meta["name"], meta["versions"], meta["platform"]) == (name, ["1"], "onnx_onnxv1")
        assert [i["name"] for i in meta["inputs"]] == [i["name"] for i in model["inputs"]]
        assert [o["name"] for o in meta["outputs"]] == [o["name"] for o in model["outputs"]]


@pytest.mark.parametrize("form", ["json", "binary"])
def test_regressor_matches_sklearn(answers, repository, form):
    rows, sklearn = held_out(repository, REGRESSOR)
    got = answers["models"][REGRESSOR][form]
    assert (got["model_name"], got["id"]) == (REGRESSOR, f"{REGRESSOR}-{form}")
    output = got["outputs"]["variable"]
    assert (output["datatype"], output["shape"]) == ("FP32", [len(rows), 1])
    result = agreement.regression(np.array(output["data"]).ravel(), sklearn.predict(rows))
    assert result.rows == len(rows) and result.within_bound


@pytest.mark.parametrize("form", ["json", "binary"])
def test_classifier_matches_sklearn(answers, repository, form):
    rows, sklearn = held_out(repository, CLASSIFIER)
    got = answers["models"][CLASSIFIER][form]
    assert (got["model_name"], got["id"]) == (CLASSIFIER, f"{CLASSIFIER}-{form}")
    labels, probabilities = got["outputs"]["label"], got["outputs"]["probabilities"]
    assert (labels["datatype"], labels["shape"]) == ("INT64", [len(rows)])
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [len(rows), len(sklearn.classes_)])
    result = agreement.classification(labels["data"], np.array(probabilities["data"]),
                                      sklearn.predict(rows), sklearn.predict_proba(rows))
    assert result.rows == len(rows) and result.within_bound


def test_model_name_and_version_in_the_request(answers, repository):
    """Accepted when they agree with the URL; a contradiction is a 400 naming the field."""
    for name in (REGRESSOR, CLASSIFIER):
        got = answers["models"][name]
        versioned = got["versioned"]
        assert (versioned["model_name"], versioned["model_version"], versioned["id"]) == (name, "1", f"{name}-versioned")
        assert {o["name"] for o in versioned["outputs"]} == {o["name"] for o in got["metadata"]["outputs"]}
        assert got["contradiction"] == {
            "status": 400, "error": f'model_name: "no_such_model" contradicts the URL, which names model "{name}"'}
