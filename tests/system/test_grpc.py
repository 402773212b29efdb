"""The gRPC Open Inference Protocol (docs/grpc.md) through nginx's gRPC
port, with Triton's own Python client (tritonclient.grpc, which sends
raw_input_contents) and with typed contents through the same client's
generated stub: every served model's metadata and answers, compared with
sklearn on held-out rows and with the REST V2 API's answers for the same
rows, bit for bit.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from conftest import MODELS
from topology import free_ports, listening
from test_clients import BATCH, CLASSIFIER, REGRESSORS, held_out, infer_held_out
from train import agreement

# The typed-contents field of each datatype the models use.
CONTENTS = {"INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


@pytest.fixture(scope="module")
def client(topology):
    assert topology.grpc, "the shared topology serves gRPC"
    with tgrpc.InferenceServerClient(topology.grpc) as client:
        yield client


@pytest.fixture(scope="module")
def stub(topology):
    with grpc.insecure_channel(topology.grpc) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def rest(topology):
    with thttp.InferenceServerClient(topology.url.removeprefix("http://")) as client:
        yield client


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    for name in MODELS:
        assert client.is_model_ready(name) and client.is_model_ready(name, "1")
    assert not client.is_model_ready("trip_duration", "2")
    assert not client.is_model_ready("no_such_model")
    meta = client.get_server_metadata()
    assert meta.name == "skl2go" and meta.version and "binary_tensor_data" in meta.extensions


def test_standard_health_service(topology):
    """grpc.health.v1.Health/Check, as load balancers and grpc_health_probe
    call it (messages written by hand: HealthCheckRequest{service: ""} is
    empty, and status SERVING is field 1 = 1)."""
    with grpc.insecure_channel(topology.grpc) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=bytes, response_deserializer=bytes)
        assert check(b"", timeout=10) == b"\x08\x01"


@pytest.mark.parametrize("name", list(MODELS))
def test_model_metadata_matches_rest(client, rest, name):
    for version in ["", "1"]:
        got = client.get_model_metadata(name, version, as_json=True)
        want = rest.get_model_metadata(name, version)
        tensors = lambda ts: [{"name": t["name"], "datatype": t["datatype"], "shape": [int(d) for d in t["shape"]]} for t in ts]  # noqa: E731
        assert (got["name"], got["versions"], got["platform"]) == (want["name"], want["versions"], want["platform"])
        assert tensors(got["inputs"]) == want["inputs"] and tensors(got["outputs"]) == want["outputs"]


def raw_infer(client, name: str, rows, outputs: list[str]) -> list[np.ndarray]:
    """tritonclient.grpc's own way: raw_input_contents, raw_output_contents back."""
    metadata = client.get_model_metadata(name, as_json=True)
    got: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, len(rows), BATCH):
        batch = rows.iloc[start:start + BATCH]
        inputs = []
        for spec in metadata["inputs"]:
            column = batch[spec["name"]].to_numpy().reshape(-1, 1)
            assert column.dtype == triton_to_np_dtype(spec["datatype"]), spec
            tensor = tgrpc.InferInput(spec["name"], list(column.shape), spec["datatype"])
            tensor.set_data_from_numpy(column)
            inputs.append(tensor)
        result = client.infer(name, inputs, request_id=f"rows-{start}",
                              outputs=[tgrpc.InferRequestedOutput(o) for o in outputs])
        answer = result.get_response()
        assert (answer.model_name, answer.model_version, answer.id) == (name, "1", f"rows-{start}")
        assert len(answer.raw_output_contents) == len(outputs)  # answered raw, as asked
        for i, output in enumerate(outputs):
            got[i].append(result.as_numpy(output))
    return [np.concatenate(parts) for parts in got]


def typed_infer(stub, client, name: str, rows, outputs: list[str]) -> list[np.ndarray]:
    """Typed contents (fp32_contents, int64_contents, …) with the generated stub."""
    metadata = client.get_model_metadata(name, as_json=True)
    answers: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, len(rows), BATCH):
        batch = rows.iloc[start:start + BATCH]
        request = service_pb2.ModelInferRequest(model_name=name, id=f"typed-{start}")
        for spec in metadata["inputs"]:
            tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=[len(batch), 1])
            getattr(tensor.contents, CONTENTS[spec["datatype"]]).extend(batch[spec["name"]].tolist())
        for output in outputs:
            request.outputs.add(name=output)
        answer = stub.ModelInfer(request, timeout=30)
        assert not answer.raw_output_contents  # typed in, typed out
        for i, out in enumerate(answer.outputs):
            values = np.array(getattr(out.contents, CONTENTS[out.datatype]), dtype=triton_to_np_dtype(out.datatype))
            answers[i].append(values.reshape([int(d) for d in out.shape]))
    return [np.concatenate(parts) for parts in answers]


@pytest.mark.parametrize("form", ["raw", "typed"])
@pytest.mark.parametrize("name", REGRESSORS)
def test_regression_matches_sklearn_and_rest(client, stub, rest, repository, name, form, capsys):
    rows, sklearn = held_out(repository, name)
    infer = raw_infer if form == "raw" else lambda c, n, r, o: typed_infer(stub, c, n, r, o)
    (prediction,) = infer(client, name, rows, ["variable"])
    assert prediction.dtype == np.float32 and prediction.shape == (len(rows), 1)
    (over_rest,) = infer_held_out(rest, name, rows, ["variable"], True)
    assert np.array_equal(prediction, over_rest)  # the same numbers as the REST V2 API
    result = agreement.regression(prediction, sklearn.predict(rows))
    with capsys.disabled():
        print(f"\ntritonclient.grpc ({form}) {name}: {result.rows:,} held-out rows through nginx: "
              f"max abs difference {result.max_abs_error:.3g} min, identical to REST")
    assert result.rows == len(rows) and result.within_bound


@pytest.mark.parametrize("form", ["raw", "typed"])
def test_classifier_matches_sklearn_and_rest(client, stub, rest, repository, form):
    rows, sklearn = held_out(repository, CLASSIFIER)
    outputs = ["label", "probabilities"]
    if form == "raw":
        labels, probabilities = raw_infer(client, CLASSIFIER, rows, outputs)
    else:
        labels, probabilities = typed_infer(stub, client, CLASSIFIER, rows, outputs)
    assert labels.dtype == np.int64 and labels.shape == (len(rows),)
    assert probabilities.shape == (len(rows), len(sklearn.classes_))
    rest_labels, rest_probabilities = infer_held_out(rest, CLASSIFIER, rows, outputs, True)
    assert np.array_equal(labels, rest_labels) and np.array_equal(probabilities, rest_probabilities)
    result = agreement.classification(labels, probabilities, sklearn.predict(rows), sklearn.predict_proba(rows))
    assert result.rows == len(rows) and result.within_bound


def test_bad_requests_get_codes_naming_the_field(client, repository):
    rows, _ = held_out(repository, "trip_duration")
    metadata = client.get_model_metadata("trip_duration", as_json=True)
    inputs = []
    for spec in metadata["inputs"]:
        column = rows[spec["name"]].to_numpy()[:3].reshape(-1, 1)
        if spec["name"] == "trip_distance":
            column = column.astype(np.float64)
        tensor = tgrpc.InferInput(spec["name"], list(column.shape), "FP64" if spec["name"] == "trip_distance" else spec["datatype"])
        tensor.set_data_from_numpy(column)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("trip_duration", inputs)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert 'input "trip_distance": datatype FP64 does not match the model, which expects FP32' in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("no_such_model", inputs)
    assert caught.value.status() == "StatusCode.NOT_FOUND" and "no_such_model" in caught.value.message()


def test_metrics_labelled_grpc(client, topology, repository):
    rows, _ = held_out(repository, "trip_duration")
    raw_infer(client, "trip_duration", rows.iloc[:5], ["variable"])
    total = sum(topology.metric(r, "skl2go_inference_request_success_total", 'protocol="grpc"')
                for r in range(1, len(topology.replicas) + 1))
    assert total >= 1


def test_make_up_moves_the_grpc_port_and_converges(topology):
    """make up GRPC_PORT=… on the running stack: nginx reloads onto the new
    port (the replicas are kept), and the same make up again changes nothing.
    Last in the module: the shared stack keeps the new port."""
    old = topology.grpc
    new_port = free_ports(1)
    pids = topology.pids()
    moved = topology.up(GRPC_PORT=str(new_port))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "nginx reloaded" in moved.stdout and topology.pids() == pids
    assert topology.grpc == f"127.0.0.1:{new_port}" and not listening(int(old.rsplit(":", 1)[1]))
    with tgrpc.InferenceServerClient(topology.grpc) as client:
        assert client.is_server_ready() and client.is_model_ready("trip_duration")
    again = topology.up()
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr
