"""A fitted DictVectorizer as a graph with one named input per key.

skl2onnx converts a DictVectorizer with a map input, one row per run: no
batching, and a request shape no client sends. The course's records,
{"PU_DO": "43_151", "trip_distance": 1.8}, become instead one input per key:
a string key is a `tensor(string)` one-hot encoded by value over the
vectorizer's vocabulary (an unseen value encodes as all zeros, as in
sklearn), a numeric key a `tensor(double)` taken as is. The columns come out
in the vectorizer's order (feature_names_), as a double matrix [N, n_features]
that the rest of the pipeline, converted by skl2onnx, reads.
"""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from .load import ImportRefused

OUTPUT = "dictvectorizer_features"


def key_types(vectorizer, sample: pd.DataFrame) -> dict[str, str]:
    """For each sample column: "string" (one-hot by value) or "number", checked against the vocabulary."""
    vocabulary, sep = vectorizer.vocabulary_, vectorizer.separator
    types = {}
    for key in sample.columns:
        one_hot = any(f.startswith(f"{key}{sep}") for f in vocabulary)
        if sample[key].dtype == object:
            if not one_hot:
                raise ImportRefused(f"sample key {key!r} holds strings, but the DictVectorizer has no "
                                    f"'{key}{sep}<value>' feature: the pipeline was fitted on other records")
            types[key] = "string"
        else:
            if key not in vocabulary:
                raise ImportRefused(f"sample key {key!r} holds numbers, but the DictVectorizer has no feature {key!r}: "
                                    "the pipeline was fitted on other records")
            types[key] = "number"
    covered = {f for f in vocabulary if f in types or f.split(sep, 1)[0] in types}
    missing = [f for f in vectorizer.feature_names_ if f not in covered]
    if missing:
        raise ImportRefused(f"the DictVectorizer has features {missing[:5]} that no sample key gives: "
                            f"the sample's records must have every key the pipeline was fitted on")
    return types


def graph(vectorizer, types: dict[str, str], opsets: dict[str, int]) -> onnx.ModelProto:
    """A model from the per-key inputs to OUTPUT, double [N, len(feature_names_)]."""
    vocabulary, sep = vectorizer.vocabulary_, vectorizer.separator
    inputs, nodes, initializers, blocks, columns = [], [], [], [], []
    for key, kind in types.items():
        if kind == "number":
            inputs.append(helper.make_tensor_value_info(key, TensorProto.DOUBLE, [None, 1]))
            blocks.append(key)
            columns.append(vocabulary[key])
            continue
        inputs.append(helper.make_tensor_value_info(key, TensorProto.STRING, [None, 1]))
        values = sorted((f[len(key) + len(sep):] for f in vocabulary if f.startswith(f"{key}{sep}")),
                        key=lambda v: vocabulary[f"{key}{sep}{v}"])
        encoded, flat = f"{key}_onehot", f"{key}_onehot_2d"
        nodes.append(helper.make_node("OneHotEncoder", [key], [encoded], domain="ai.onnx.ml",
                                      cats_strings=values, zeros=1, name=f"{key}_OneHotEncoder"))
        shape = f"{key}_onehot_shape"
        initializers.append(numpy_helper.from_array(np.array([-1, len(values)], dtype=np.int64), shape))
        nodes.append(helper.make_node("Reshape", [encoded, shape], [flat], name=f"{key}_Reshape"))
        as_double = f"{key}_onehot_double"
        nodes.append(helper.make_node("Cast", [flat], [as_double], to=TensorProto.DOUBLE, name=f"{key}_Cast"))
        blocks.append(as_double)
        columns.extend(vocabulary[f"{key}{sep}{v}"] for v in values)
    concat = "dictvectorizer_blocks"
    nodes.append(helper.make_node("Concat", blocks, [concat], axis=1, name="dictvectorizer_Concat"))
    # Concat gives the blocks key by key; Gather puts them in the vectorizer's column order.
    order = np.argsort(np.array(columns))
    initializers.append(numpy_helper.from_array(order.astype(np.int64), "dictvectorizer_order"))
    nodes.append(helper.make_node("Gather", [concat, "dictvectorizer_order"], [OUTPUT], axis=1,
                                  name="dictvectorizer_Gather"))
    output = helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None, len(vectorizer.feature_names_)])
    g = helper.make_graph(nodes, "dictvectorizer", inputs, [output], initializers)
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
