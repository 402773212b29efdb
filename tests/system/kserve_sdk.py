"""Drive a running skl2go with KServe's own Python SDK (kserve.InferenceRESTClient,
Open Inference Protocol v2): run in the client venv that `make venv-kserve`
builds (kserve pins pandas<3, which the project's venv cannot hold), by
tests/system/test_kserve_sdk.py.

    .venv-kserve/bin/python tests/system/kserve_sdk.py < request.json > answers.json

The request names the server and, per model, the rows to send as columns:
{"url": "http://127.0.0.1:8080", "models": {"trip_duration": {"PULocationID": [...], ...}}},
and optionally, for an edge with TLS and API keys, "cert" (the CA or
self-signed certificate to trust) and "key" (sent as a bearer token).
The answers are what the SDK returned, for the test to check: health,
readiness, metadata (parsed by KServe's own response models), and each
model's outputs for JSON and for binary tensor data.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import kserve
import numpy as np
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse, ServerMetadataResponse

# The protocol's datatypes, as numpy dtypes.
DTYPES = {"BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "FP64": np.float64}


def infer_request(name: str, metadata: ModelMetadataResponse, columns: dict, binary: bool, request_id: str) -> kserve.InferRequest:
    inputs = []
    for spec in metadata.inputs:
        values = np.asarray(columns[spec.name], dtype=DTYPES[spec.datatype]).reshape(-1, 1)
        tensor = kserve.InferInput(spec.name, list(values.shape), spec.datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    outputs = [RequestedOutput(o.name, {"binary_data": binary}) for o in metadata.outputs]
    return kserve.InferRequest(model_name=name, infer_inputs=inputs, request_id=request_id, request_outputs=outputs)


class Bearer(httpx.Auth):
    """An API key as httpx (and so the SDK, through RESTConfig.auth) sends it."""

    def __init__(self, key: str):
        self.key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self.key}"
        yield request


def ok(response: httpx.Response) -> bytes:
    """The body of a successful answer; a refusal raises with its status."""
    response.raise_for_status()
    return response.content


def outputs(response: kserve.InferResponse) -> dict:
    return {o.name: {"datatype": o.datatype, "shape": list(o.shape), "data": o.as_numpy().tolist()}
            for o in response.outputs}


async def main(request: dict) -> dict:
    url = request["url"]
    answers: dict = {"models": {}}
    verify = request.get("cert", True)
    auth = Bearer(request["key"]) if "key" in request else None
    config = kserve.RESTConfig(protocol="v2", retries=0, timeout=30, verify=verify, auth=auth)
    async with (kserve.InferenceRESTClient(config) as client,
                httpx.AsyncClient(timeout=30, verify=verify, auth=auth) as http):
        answers["server_live"] = await client.is_server_live(url)
        answers["server_ready"] = await client.is_server_ready(url)
        answers["unknown_model_ready"] = await client.is_model_ready(url, "no_such_model")
        # InferenceRESTClient has no metadata calls: KServe's own response models read them.
        answers["server_metadata"] = ServerMetadataResponse.model_validate_json(ok(await http.get(f"{url}/v2"))).model_dump()
        for name, columns in request["models"].items():
            got: dict = {"ready": await client.is_model_ready(url, name)}
            metadata = ModelMetadataResponse.model_validate_json(ok(await http.get(f"{url}/v2/models/{name}")))
            got["metadata"] = metadata.model_dump()
            for binary in (False, True):
                form = "binary" if binary else "json"
                response = await client.infer(url, infer_request(name, metadata, columns, binary, f"{name}-{form}"),
                                              model_name=name)
                got[form] = {"model_name": response.model_name, "id": response.id, "outputs": outputs(response)}
            # A request that also names the version, as a dict: the SDK posts it as JSON.
            body, _ = infer_request(name, metadata, columns, False, f"{name}-versioned").to_rest()
            body["model_version"] = metadata.versions[-1]
            got["versioned"] = await client.infer(f"{url}/v2/models/{name}/versions/{metadata.versions[-1]}/infer",
                                                  body, is_graph_endpoint=True)
            # One that names another model: the server refuses it, naming the field.
            body["model_name"] = "no_such_model"
            try:
                await client.infer(url, body, model_name=name)
                got["contradiction"] = None
            except httpx.HTTPStatusError as err:
                got["contradiction"] = {"status": err.response.status_code, "error": err.response.json()["error"]}
            answers["models"][name] = got
    return answers


if __name__ == "__main__":
    json.dump(asyncio.run(main(json.load(sys.stdin))), sys.stdout)
