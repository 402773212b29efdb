"""Imported pipelines served end to end: every example of verify/imports.py
(one per supported estimator, each behind a ColumnTransformer with every
supported transformer, and the course's pickled DictVectorizer +
LinearRegression) imported with `python -m train import`, served by a Go
replica behind nginx, and every sample row plus edge rows (unseen strings,
missing values where the pipeline imputes, range ends) sent through nginx
and compared with the published pipeline.joblib's predict."""

from __future__ import annotations

import json
import math

import joblib
import numpy as np
import pandas as pd
import pytest

from loadtest import samples
from topology import request, running
from train import agreement
from train.__main__ import main
from train.importer import load
from verify import imports


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Every example imported through the command line into one repository."""
    root = tmp_path_factory.mktemp("imports")
    examples = {e.name: e for e in imports.write(root / "files")}
    course = imports.course_joblib(root / "files")
    examples["course_pipeline"] = imports.Example("course_pipeline", "DictVectorizer", "regression", course,
                                                  examples["course_duration"].sample)
    for example in examples.values():
        code = main(["import", "--pipeline", str(example.pipeline), "--sample", str(example.sample),
                     "--name", example.name, "--task", example.task, "--models", str(root / "models"),
                     "--build", str(root / "build")])
        assert code == 0, example.name
    return root / "models", examples


@pytest.fixture(scope="module")
def build_dir(imported):
    return imported[0].parent / "build"


@pytest.fixture(scope="module")
def served(imported, tmp_path_factory):
    models, _ = imported
    with running(models, tmp_path_factory.mktemp("run"), replicas=1) as topology:
        yield topology


def instances(rows: pd.DataFrame) -> list[dict]:
    """JSON-ready records: NaN (missing) as null."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows.to_dict(orient="records")]


def requests_for(meta: dict, sample: pd.DataFrame) -> pd.DataFrame:
    """Every sample row, then edge rows: unseen strings, nulls where nullable, numbers at their range ends."""
    base = sample.iloc[:50]
    variants = [sample]
    for spec in meta["inputs"]:
        name = spec["name"]
        if spec["type"] == "tensor(string)":
            variants.append(base.assign(**{name: "never-seen-in-training"}))
        if spec.get("nullable"):
            variants.append(base.assign(**{name: np.nan}))
        for end in spec.get("range", []):
            variants.append(base.assign(**{name: np.asarray([end] * len(base)).astype(sample[name].dtype)}))
    return pd.concat(variants, ignore_index=True)


def predict(url: str, name: str, rows: pd.DataFrame) -> list:
    got = []
    for start in range(0, min(10, len(rows))):  # single rows, then batches the server may merge
        status, body = request("POST", f"{url}/v1/models/{name}:predict",
                               json.dumps({"instances": instances(rows.iloc[start:start + 1])}).encode())
        assert status == 200, body
        got += body["predictions"]
    for start in range(10, len(rows), 100):
        status, body = request("POST", f"{url}/v1/models/{name}:predict",
                               json.dumps({"instances": instances(rows.iloc[start:start + 100])}).encode())
        assert status == 200, body
        got += body["predictions"]
    return got


NAMES = [imports.model_name(e) for e in imports.estimators()] + ["course_duration", "course_pipeline"]


@pytest.mark.parametrize("name", NAMES)
def test_imported_model_through_nginx_matches_sklearn(imported, served, name, capsys):
    models, examples = imported
    example = examples[name]
    version = models / name / "1"
    meta = json.loads((version / "model.json").read_text())
    sample = load.load_sample(example.sample)
    rows = requests_for(meta, sample)
    sklearn = joblib.load(version / "pipeline.joblib")
    got = predict(served.url, name, rows)
    if example.task == "classification":
        result = agreement.classification([g["label"] for g in got], [g["probabilities"] for g in got],
                                          sklearn.predict(rows), sklearn.predict_proba(rows))
        figure = f"labels {result.label_agreement:.2%} identical, max probability error {result.max_proba_abs_error:.2g}"
    else:
        result = agreement.regression(np.asarray(got, dtype=np.float64), sklearn.predict(rows))
        figure = f"max rel error {result.max_true_rel_error:.2g}"
    with capsys.disabled():
        print(f"\n{name} ({example.estimator}): {result.rows:,} rows through nginx, {figure}")
    assert result.within_bound, [rows.iloc[i].to_dict() for i in result.worst[:3]]


def test_course_model_speaks_v2_with_bytes_and_batches(imported, served):
    models, _ = imported
    sklearn = joblib.load(models / "course_duration" / "1" / "pipeline.joblib")
    body = {"inputs": [
        {"name": "PU_DO", "datatype": "BYTES", "shape": [3, 1], "data": ["43_151", "1_2", "never_seen"]},
        {"name": "trip_distance", "datatype": "FP64", "shape": [3, 1], "data": [1.8, 2.5, 1.8]},
    ]}
    status, answer = request("POST", f"{served.url}/v2/models/course_duration/infer", json.dumps(body).encode())
    assert status == 200, answer
    want = sklearn.predict(pd.DataFrame({"PU_DO": ["43_151", "1_2", "never_seen"], "trip_distance": [1.8, 2.5, 1.8]}))
    assert agreement.regression(np.asarray(answer["outputs"][0]["data"]), want).max_true_rel_error < 1e-12


def test_null_is_missing_only_where_the_pipeline_imputes(imported, served):
    models, examples = imported
    sample = load.load_sample(examples["byop_linear_regression"].sample).iloc[:1]
    row = instances(sample)[0]
    url = f"{served.url}/v1/models/byop_linear_regression:predict"
    status, body = request("POST", url, json.dumps({"instances": [{**row, "tip": None}]}).encode())
    assert status == 200, body
    want = joblib.load(models / "byop_linear_regression" / "1" / "pipeline.joblib").predict(sample.assign(tip=np.nan))
    assert body["predictions"][0] == pytest.approx(want[0], rel=1e-12)
    status, body = request("POST", url, json.dumps({"instances": [{**row, "fare": None}]}).encode())
    assert status == 400
    assert body["error"] == "instances[0].fare: must not be null"
    # the V2 protocol takes null for the imputed input too
    inputs = [{"name": k, "datatype": {str: "BYTES", int: "INT64", float: "FP64"}[type(v)], "shape": [1, 1],
               "data": [v]} for k, v in row.items()]
    for spec in inputs:
        if spec["name"] == "tip":
            spec["data"] = [None]
    status, body = request("POST", f"{served.url}/v2/models/byop_linear_regression/infer",
                           json.dumps({"inputs": inputs}).encode())
    assert status == 200, body
    assert body["outputs"][0]["data"][0] == pytest.approx(want[0], rel=1e-12)


@pytest.mark.parametrize("name", ["course_duration", "byop_linear_regression", "byop_xgb_classifier"])
def test_load_test_users_send_imported_samples_unchanged(build_dir, served, name):
    """What the Locust users do (loadtest/locustfile.py, --held-out build/<name>): bodies made of the kept
    sample rows (missing values as null), every answer checked."""
    rows = samples.held_out_features(build_dir / name)
    assert len(rows) == 300
    for body in samples.request_bodies(rows, rows_per_request=10, count=20):
        status, answer = request("POST", f"{served.url}/v1/models/{name}:predict", body)
        assert status == 200, answer
        version, problem = samples.check_prediction(json.dumps(answer).encode(), 10, name, 1)
        assert (version, problem) == (1, "")
