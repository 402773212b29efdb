"""Standard Open Inference Protocol clients against the real topology, through
nginx: Triton's own Python client (tritonclient.http) with its defaults
(binary tensor data) and with JSON, and plain `requests`. Answers are
compared with sklearn's `predict` (and `predict_proba` for the classifier)
on held-out rows, within train.agreement's bounds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import joblib
import numpy as np
import onnx
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from conftest import MODELS, ROOT
from train import agreement, data

REGRESSORS = ["trip_duration", "trip_duration_hgb"]
CLASSIFIER = "tip_given"
BATCH = 500


@pytest.fixture(scope="module")
def client(topology):
    with triton.InferenceServerClient(topology.url.removeprefix("http://")) as client:
        yield client


def held_out(repository, name: str) -> tuple[pd.DataFrame, object]:
    """The model's held-out rows (features only) and its fitted sklearn pipeline."""
    rows = pd.read_parquet(repository.build / name / "validation.parquet")
    rows = rows.drop(columns=[target for target in data.TARGETS.values() if target in rows])
    return rows, joblib.load(repository.models / name / "1" / "pipeline.joblib")


def infer_inputs(metadata: dict, rows: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    """One InferInput per model input, [rows, 1], in the datatype the metadata gives."""
    inputs = []
    for spec in metadata["inputs"]:
        column = rows[spec["name"]].to_numpy().reshape(-1, 1)
        assert column.dtype == triton_to_np_dtype(spec["datatype"]), spec  # the trainer's dtypes, unconverted
        tensor = triton.InferInput(spec["name"], list(column.shape), spec["datatype"])
        tensor.set_data_from_numpy(column, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_health_through_nginx(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    for name in MODELS:
        assert client.is_model_ready(name)
        assert client.is_model_ready(name, "1")
    assert not client.is_model_ready("trip_duration", "2")
    assert not client.is_model_ready("no_such_model")


def test_server_metadata(client):
    meta = client.get_server_metadata()
    assert meta["name"] == "skl2go"
    assert meta["version"]
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("name", list(MODELS))
def test_model_metadata_is_the_onnx_graph(client, repository, name):
    graph = onnx.load(repository.models / name / "1" / "model.onnx").graph

    def described(values) -> list[dict]:
        return [{"name": v.name,
                 "datatype": np_to_triton_dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
                 "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]}
                for v in values]

    for version in ["", "1"]:
        meta = client.get_model_metadata(name, version)
        assert meta == {"name": name, "versions": ["1"], "platform": "onnx_onnxv1",
                        "inputs": described(graph.input), "outputs": described(graph.output)}


def infer_held_out(client, name: str, rows: pd.DataFrame, outputs: list[str], binary: bool) -> list[np.ndarray]:
    """Send rows in batches with tritonclient; return each requested output for all rows."""
    metadata = client.get_model_metadata(name)
    got: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, len(rows), BATCH):
        batch = rows.iloc[start:start + BATCH]
        result = client.infer(name, infer_inputs(metadata, batch, binary), request_id=f"rows-{start}",
                              outputs=[triton.InferRequestedOutput(output, binary_data=binary) for output in outputs])
        answer = result.get_response()
        assert (answer["model_name"], answer["model_version"], answer["id"]) == (name, "1", f"rows-{start}")
        assert [o["name"] for o in answer["outputs"]] == outputs
        assert all(("parameters" in o) == binary for o in answer["outputs"])  # binary_data_size, or JSON data
        for i, output in enumerate(outputs):
            values = result.as_numpy(output)
            assert len(values) == len(batch)
            got[i].append(values)
    return [np.concatenate(parts) for parts in got]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", REGRESSORS)
def test_tritonclient_regression_matches_sklearn(client, repository, name, binary, capsys):
    rows, sklearn = held_out(repository, name)
    (prediction,) = infer_held_out(client, name, rows, ["variable"], binary)
    assert prediction.dtype == np.float32 and prediction.shape == (len(rows), 1)
    result = agreement.regression(prediction, sklearn.predict(rows))
    with capsys.disabled():
        print(f"\ntritonclient ({'binary' if binary else 'JSON'}) {name}: {result.rows:,} held-out rows through nginx: "
              f"max abs difference {result.max_abs_error:.3g} min, max relative difference {result.max_rel_error:.3g}")
    assert result.rows == len(rows)
    assert result.within_bound


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_classifier_matches_sklearn(client, repository, binary, capsys):
    rows, sklearn = held_out(repository, CLASSIFIER)
    outputs = {o["name"]: o for o in client.get_model_metadata(CLASSIFIER)["outputs"]}
    assert outputs["label"]["datatype"] == "INT64" and outputs["probabilities"]["datatype"] == "FP32"
    labels, probabilities = infer_held_out(client, CLASSIFIER, rows, ["label", "probabilities"], binary)
    assert labels.dtype == np.int64 and labels.shape == (len(rows),)
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(rows), len(sklearn.classes_))
    result = agreement.classification(labels, probabilities, sklearn.predict(rows), sklearn.predict_proba(rows))
    with capsys.disabled():
        print(f"\ntritonclient ({'binary' if binary else 'JSON'}) {CLASSIFIER}: {result.rows:,} held-out rows through nginx: "
              f"labels {result.label_agreement:.2%} identical, max probability difference {result.max_proba_abs_error:.3g}")
    assert result.rows == len(rows)
    assert result.within_bound
    assert set(np.unique(labels)) == set(sklearn.classes_)  # both answers occur


def test_tritonclient_defaults_return_every_output_as_binary(client, repository):
    rows, sklearn = held_out(repository, "trip_duration")
    rows = rows.iloc[:3]
    result = client.infer("trip_duration", infer_inputs(client.get_model_metadata("trip_duration"), rows, True))
    output = result.get_output("variable")
    assert output["parameters"]["binary_data_size"] == 3 * 4
    assert agreement.regression(result.as_numpy("variable"), sklearn.predict(rows)).within_bound


@pytest.mark.parametrize(
    "edit, status, needles",
    [
        (lambda spec, col: (spec, col.astype(np.float64)) if spec["name"] == "trip_distance" else (spec, col),
         "400", ["trip_distance", "FP64", "FP32"]),
        (lambda spec, col: (spec, col.ravel()) if spec["name"] == "pickup_hour" else (spec, col),
         "400", ["pickup_hour", "shape [3]", "[-1, 1]"]),
    ],
    ids=["wrong datatype", "wrong shape"],
)
def test_tritonclient_bad_inputs_get_clear_errors(client, repository, edit, status, needles):
    rows, _ = held_out(repository, "trip_duration")
    inputs = []
    for spec in client.get_model_metadata("trip_duration")["inputs"]:
        spec, column = edit(spec, rows[spec["name"]].to_numpy()[:3].reshape(-1, 1))
        tensor = triton.InferInput(spec["name"], list(column.shape), np_to_triton_dtype(column.dtype))
        tensor.set_data_from_numpy(column)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("trip_duration", inputs)
    assert caught.value.status() == status
    assert all(needle in caught.value.message() for needle in needles), caught.value.message()


def test_tritonclient_unknown_model_and_output(client, repository):
    rows, _ = held_out(repository, "trip_duration")
    inputs = infer_inputs(client.get_model_metadata("trip_duration"), rows.iloc[:2], True)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("no_such_model", inputs)
    assert caught.value.status() == "404" and "no_such_model" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("trip_duration", inputs, outputs=[triton.InferRequestedOutput("label")])
    assert caught.value.status() == "400" and 'unknown output "label"' in caught.value.message()


def test_requests_json_inference(topology, repository):
    """The protocol with nothing but an HTTP library, as the README shows it."""
    rows, sklearn = held_out(repository, "trip_duration")
    rows = rows.iloc[:20]
    metadata = requests.get(f"{topology.url}/v2/models/trip_duration", timeout=10).json()
    body = {"id": "trip-1", "inputs": [
        {"name": spec["name"], "datatype": spec["datatype"], "shape": [len(rows), 1],
         "data": rows[spec["name"]].tolist()} for spec in metadata["inputs"]]}
    answer = requests.post(f"{topology.url}/v2/models/trip_duration/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    output = answer.json()["outputs"][0]
    assert (output["name"], output["datatype"], output["shape"]) == ("variable", "FP32", [len(rows), 1])
    assert agreement.regression(output["data"], sklearn.predict(rows)).within_bound


def documented_examples() -> list:
    """The curl and Python examples of the README ("Ask for a prediction")
    and of docs/api.md ("Using skl2go from existing clients"), as (language,
    code) parameters named after their document and client."""
    sections = {
        "readme": ((ROOT / "README.md").read_text(), "## Ask for a prediction"),
        "api": ((ROOT / "docs" / "api.md").read_text(), "## Using skl2go from existing clients"),
    }
    client = lambda code: "curl" if code.startswith("curl ") else "tritonclient" if "tritonclient" in code else "requests"
    params = []
    for doc, (text, heading) in sections.items():
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```(sh|python)\n(.*?)```", section, flags=re.S)
        params += [pytest.param(lang, code, id=f"{doc}-{client(code)}") for lang, code in blocks
                   if lang == "python" or code.startswith("curl ")]
    return params


@pytest.mark.parametrize("lang, code", documented_examples())
def test_documented_examples_run_and_agree_with_sklearn(topology, repository, lang, code):
    code = code.replace("127.0.0.1:8080", topology.url.removeprefix("http://"))
    command = ["bash", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    if lang == "sh":
        answer = json.loads(run.stdout)
        got = answer["outputs"][0]["data"] if "outputs" in answer else answer["predictions"]
    else:
        got = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", run.stdout)]
    rows, sklearn = held_out(repository, "trip_duration")
    trips = pd.DataFrame({"PULocationID": [74, 99], "DOLocationID": [75, 99], "trip_distance": [2.5, 1.08],
                          "pickup_hour": [8, 17], "pickup_weekday": [1, 0]}).astype(rows.dtypes.to_dict())
    assert len(got) == 2, run.stdout
    assert agreement.regression(got, sklearn.predict(trips)).within_bound, (got, sklearn.predict(trips))
