"""Malformed inference requests, generated with hypothesis from a model's
model.json: each is wrong by construction (broken JSON, wrong shape, wrong
types, missing or unknown fields, out-of-range numbers, wrong media type),
so the server must answer every one with a 4xx and a JSON error.

    requests(meta)  a strategy of Request(path, content_type, body, kind)
    send(conn, r)   post one on a keep-alive connection; (status, JSON or None)
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

from hypothesis import strategies as st

# Characters that cannot be inserted anywhere in a JSON document without
# breaking it or renaming a key (an unknown field): never a valid request.
BREAKERS = '{}[],:"'
MEDIA_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"]


@dataclass(frozen=True)
class Request:
    path: str
    content_type: str
    body: bytes
    kind: str  # which malformation, for the summary


class Raw(str):
    """A JSON token written as is (1e309, NaN, 074): what json.dumps cannot write."""


def dumps(value) -> str:
    """json.dumps, but Raw values are written verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


def valid_value(spec: dict) -> st.SearchStrategy:
    low, high = (spec.get("range") or [None, None])
    kind = spec["type"]
    if kind == "tensor(int64)":
        return st.integers(-(2**63) if low is None else int(low), 2**63 - 1 if high is None else int(high))
    if kind == "tensor(int32)":
        return st.integers(-(2**31) if low is None else int(low), 2**31 - 1 if high is None else int(high))
    if kind in ("tensor(float)", "tensor(double)"):
        return st.floats(low, high, allow_nan=False, allow_infinity=False, width=32 if kind == "tensor(float)" else 64)
    if kind == "tensor(string)":
        return st.text(max_size=20)
    return st.booleans()


def wrong_value(spec: dict) -> st.SearchStrategy:
    """A JSON value the input must refuse."""
    kind = spec["type"]
    low, high = (spec.get("range") or [None, None])
    not_numbers = st.text(max_size=10) | st.booleans() | st.none() | st.lists(st.integers(), max_size=3) | \
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
    if kind in ("tensor(int64)", "tensor(int32)"):
        bits = 63 if kind == "tensor(int64)" else 31
        options = [not_numbers,
                   st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
                   st.integers(2**bits, 2**80) | st.integers(-(2**80), -(2**bits) - 1),
                   st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("074"), Raw("1e400")])]
    elif kind in ("tensor(float)", "tensor(double)"):
        overflow = "1e39" if kind == "tensor(float)" else "1e309"
        options = [not_numbers, st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw(overflow), Raw("-" + overflow),
                                                 Raw(".5"), Raw("1."), Raw("+1")])]
    elif kind == "tensor(string)":
        options = [st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none() | st.lists(st.text(), max_size=2)]
    else:
        options = [st.integers() | st.text(max_size=5) | st.none()]
    # Outside the range once rounded to the input's width (a float32 input
    # reads -1e-300 as -0.0, inside [0, …]).
    width = 32 if kind == "tensor(float)" else 64
    if low is not None:
        options.append(st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False, width=width))
    if high is not None:
        options.append(st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False, width=width))
    return st.one_of(options)


def rows(inputs: list[dict]) -> st.SearchStrategy:
    return st.fixed_dictionaries({spec["name"]: valid_value(spec) for spec in inputs})


@st.composite
def broken_row(draw, inputs: list[dict]) -> tuple[dict, str]:
    row = draw(rows(inputs))
    spec = draw(st.sampled_from(inputs))
    how = draw(st.sampled_from(["wrong value", "unknown field", "missing field"]))
    if how == "missing field":
        del row[spec["name"]]
    elif how == "unknown field":
        names = {s["name"] for s in inputs}
        row[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in names))] = draw(json_values)
    else:
        row[spec["name"]] = draw(wrong_value(spec))
    return row, how


@st.composite
def v1_request(draw, meta: dict) -> Request:
    inputs, name = meta["inputs"], meta["name"]
    path = draw(st.sampled_from([f"/v1/models/{name}:predict", f"/v1/models/{name}/versions/{meta['version']}:predict"]))
    good = draw(st.lists(rows(inputs), min_size=1, max_size=3))
    shape = draw(st.sampled_from(["broken row", "broken row", "broken row", "not an object", "no instances",
                                  "extra field", "instances not a list of objects", "truncated", "broken character",
                                  "duplicate key", "wrong media type", "empty"]))
    if shape == "broken row":
        row, how = draw(broken_row(inputs))
        at = draw(st.integers(0, len(good)))
        return Request(path, "application/json", dumps({"instances": good[:at] + [row] + good[at:]}).encode(), f"v1 {how}")
    if shape == "not an object":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return Request(path, "application/json", dumps(value).encode(), "v1 " + shape)
    if shape == "no instances":
        value = draw(st.dictionaries(st.text(max_size=10).filter(lambda k: k != "instances"), json_values, max_size=3))
        return Request(path, "application/json", dumps(value).encode(), "v1 " + shape)
    if shape == "extra field":
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k != "instances"))
        return Request(path, "application/json", dumps({"instances": good, key: draw(json_values)}).encode(), "v1 " + shape)
    if shape == "instances not a list of objects":
        value = draw(json_values.filter(lambda v: not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))))
        return Request(path, "application/json", dumps({"instances": value}).encode(), "v1 " + shape)
    text = dumps({"instances": good})
    if shape == "truncated":
        return Request(path, "application/json", text[: draw(st.integers(0, len(text) - 1))].encode(), "v1 " + shape)
    if shape == "broken character":
        at = draw(st.integers(0, len(text)))
        return Request(path, "application/json", (text[:at] + draw(st.sampled_from(BREAKERS)) + text[at:]).encode(),
                       "v1 " + shape)
    if shape == "duplicate key":
        first = inputs[0]["name"]
        row = dumps(good[0])
        twice = row.replace("{", "{" + json.dumps(first) + ": " + dumps(good[0][first]) + ", ", 1)
        return Request(path, "application/json", ('{"instances": [' + twice + "]}").encode(), "v1 " + shape)
    if shape == "wrong media type":
        return Request(path, draw(st.sampled_from(MEDIA_TYPES)), text.encode(), "v1 " + shape)
    return Request(path, "application/json", draw(st.sampled_from([b"", b" ", b"\n\t"])), "v1 " + shape)


V2_TYPES = {"tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(float)": "FP32", "tensor(double)": "FP64",
            "tensor(string)": "BYTES", "tensor(bool)": "BOOL"}


@st.composite
def v2_request(draw, meta: dict) -> Request:
    """A V2 (Open Inference Protocol) infer request with one thing wrong."""
    inputs, name = meta["inputs"], meta["name"]
    path = f"/v2/models/{name}/infer"
    n = draw(st.integers(1, 3))
    tensors = [{"name": s["name"], "datatype": V2_TYPES[s["type"]], "shape": [n, 1],
                "data": draw(st.lists(valid_value(s), min_size=n, max_size=n))} for s in inputs]
    i = draw(st.integers(0, len(tensors) - 1))
    how = draw(st.sampled_from(["wrong datatype", "wrong shape", "wrong data", "no name", "unknown input",
                                "missing input", "not an object", "truncated"]))
    if how == "wrong datatype":
        tensors[i]["datatype"] = draw(st.sampled_from(sorted(set(V2_TYPES.values()) - {tensors[i]["datatype"]}) + ["FP16", "x"]))
    elif how == "wrong shape":
        tensors[i]["shape"] = draw(st.sampled_from([[n + 1, 1], [n, 2], [n], [], [-1, 1], [n, 1, 1]]))
    elif how == "wrong data":
        # (not lists: V2 data may be nested, [[74]] is a valid [1, 1] tensor)
        wrong = wrong_value(inputs[i]).filter(lambda v: not isinstance(v, list))
        tensors[i]["data"] = draw(st.lists(wrong, min_size=n, max_size=n))
    elif how == "no name":
        del tensors[i]["name"]
    elif how == "unknown input":
        tensors[i]["name"] = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in {s["name"] for s in inputs}))
    elif how == "missing input":
        del tensors[i]
    elif how == "not an object":
        return Request(path, "application/json", dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode(),
                       "v2 " + how)
    text = dumps({"inputs": tensors})
    if how == "truncated":
        text = text[: draw(st.integers(0, len(text) - 1))]
    return Request(path, "application/json", text.encode(), "v2 " + how)


def requests(meta: dict) -> st.SearchStrategy:
    """Malformed requests for the model meta describes (its model.json): 3 in 4 v1, 1 in 4 v2."""
    return st.one_of(v1_request(meta), v1_request(meta), v1_request(meta), v2_request(meta))


def send(conn: http.client.HTTPConnection, req: Request) -> tuple[int, dict | None]:
    """Post req on a keep-alive connection (reopened once if the server had
    closed it); return the status and the JSON body (None if not JSON)."""
    for attempt in range(2):
        try:
            conn.request("POST", req.path, req.body, {"Content-Type": req.content_type})
            resp = conn.getresponse()
            data = resp.read()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            if attempt == 1:
                raise
    if resp.getheader("Connection", "").lower() == "close":
        conn.close()
    try:
        return resp.status, json.loads(data) if resp.getheader("Content-Type", "").startswith("application/json") else None
    except ValueError:
        return resp.status, None
