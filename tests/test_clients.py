"""Standard Open Inference Protocol clients against the real topology, through
nginx: Triton's own Python client (tritonclient.http) with its defaults
(binary tensor data) and with JSON, and plain `requests`. Answers are
compared with sklearn's `predict` on held-out rows.
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

from conftest import ROOT
from train import data, export

REGRESSORS = ["trip_duration", "trip_duration_hgb"]
BATCH = 500


@pytest.fixture(scope="module")
def client(topology):
    with triton.InferenceServerClient(topology.url.removeprefix("http://")) as client:
        yield client


def held_out(repository, name: str) -> tuple[pd.DataFrame, object]:
    """The model's held-out rows (features only) and its fitted sklearn pipeline."""
    rows = pd.read_parquet(repository.build / name / "validation.parquet").drop(columns=[data.TARGET])
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
    for name in REGRESSORS:
        assert client.is_model_ready(name)
        assert client.is_model_ready(name, "1")
    assert not client.is_model_ready("trip_duration", "2")
    assert not client.is_model_ready("no_such_model")


def test_server_metadata(client):
    meta = client.get_server_metadata()
    assert meta["name"] == "skl2go"
    assert meta["version"]
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("name", REGRESSORS)
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


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", REGRESSORS)
def test_tritonclient_inference_matches_sklearn(client, repository, name, binary, capsys):
    rows, sklearn = held_out(repository, name)
    want = sklearn.predict(rows)
    metadata = client.get_model_metadata(name)
    got = []
    for start in range(0, len(rows), BATCH):
        batch = rows.iloc[start:start + BATCH]
        result = client.infer(name, infer_inputs(metadata, batch, binary), request_id=f"rows-{start}",
                              outputs=[triton.InferRequestedOutput("variable", binary_data=binary)])
        answer = result.get_response()
        assert (answer["model_name"], answer["model_version"], answer["id"]) == (name, "1", f"rows-{start}")
        assert ("parameters" in answer["outputs"][0]) == binary  # binary_data_size, or JSON data
        prediction = result.as_numpy("variable")
        assert prediction.dtype == np.float32 and prediction.shape == (len(batch), 1)
        got.append(prediction.ravel())
    got = np.concatenate(got).astype(np.float64)
    abs_err = np.abs(got - want)
    rel_err = abs_err / np.maximum(np.abs(want), 1.0)
    with capsys.disabled():
        print(f"\ntritonclient ({'binary' if binary else 'JSON'}) {name}: {len(got):,} held-out rows through nginx: "
              f"max abs difference {abs_err.max():.3g} min, max relative difference {rel_err.max():.3g}")
    assert len(got) == len(rows)
    assert rel_err.max() <= export.RTOL


def test_tritonclient_defaults_return_every_output_as_binary(client, repository):
    rows, sklearn = held_out(repository, "trip_duration")
    rows = rows.iloc[:3]
    result = client.infer("trip_duration", infer_inputs(client.get_model_metadata("trip_duration"), rows, True))
    output = result.get_output("variable")
    assert output["parameters"]["binary_data_size"] == 3 * 4
    np.testing.assert_allclose(result.as_numpy("variable").ravel(), sklearn.predict(rows), rtol=export.RTOL)


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
    np.testing.assert_allclose(output["data"], sklearn.predict(rows), rtol=export.RTOL, atol=export.RTOL)


def readme_examples() -> list:
    """The curl and Python examples in the README's section on existing
    clients, as (language, code) parameters named after their client."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Using skl2go from existing clients", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(sh|python)\n(.*?)```", section, flags=re.S)
    client = lambda code: "curl" if code.startswith("curl ") else "tritonclient" if "tritonclient" in code else "requests"
    return [pytest.param(lang, code, id=client(code)) for lang, code in blocks if lang == "python" or code.startswith("curl ")]


@pytest.mark.parametrize("lang, code", readme_examples())
def test_readme_examples_run_and_agree_with_sklearn(topology, repository, lang, code):
    code = code.replace("127.0.0.1:8080", topology.url.removeprefix("http://"))
    command = ["bash", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    if lang == "sh":
        got = json.loads(run.stdout)["outputs"][0]["data"]
    else:
        got = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", run.stdout)]
    rows, sklearn = held_out(repository, "trip_duration")
    trips = pd.DataFrame({"PULocationID": [74, 99], "DOLocationID": [75, 99], "trip_distance": [2.5, 1.08],
                          "pickup_hour": [8, 17], "pickup_weekday": [1, 0]}).astype(rows.dtypes.to_dict())
    assert len(got) == 2, run.stdout
    np.testing.assert_allclose(got, sklearn.predict(trips), rtol=export.RTOL)
