"""A fitted pipeline and its sample -> one ONNX graph the Go server serves.

One input per sample column, named after it: strings `tensor(string)`,
integers `tensor(int64)`, floats `tensor(double)`. Double, because that is
what sklearn computes with: every transformer works in double up to the
estimator, and the trees round to float32 exactly where sklearn does
(trees.py). A DictVectorizer first step becomes one input per key
(dictvec.py). Classifiers output `label` (int64) and `probabilities`
(float), the two tensors the server reads.
"""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, compose, helper
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from skl2onnx import to_onnx

from . import converters, dictvec

# skl2onnx 1.20 knows ai.onnx.ml up to 3; a graph with trees.py's TreeEnsemble
# (double splits) is then lifted to ai.onnx.ml 5, its opset (ai.onnx 21 goes with it).
OPSETS = {"": 21, "ai.onnx.ml": 3}
TREE_ML_OPSET = 5


def typed(sample: pd.DataFrame) -> pd.DataFrame:
    """The sample with the dtypes its graph inputs take: float64, int64 or object (strings)."""
    out = sample.copy()
    for column in out.columns:
        if out[column].dtype.kind == "f":
            out[column] = out[column].astype(np.float64)
    return out


def convert(model: Pipeline, sample: pd.DataFrame) -> onnx.ModelProto:
    estimator = model.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if is_classifier(estimator) else None
    first = model.steps[0][1]
    with converters.registered():
        if type(first).__name__ == "DictVectorizer":
            onnx_model = _dict_vectorizer_pipeline(model, first, sample, options)
        else:
            onnx_model = to_onnx(model, typed(sample).iloc[:1], options=options, target_opset=OPSETS)
    if any(node.op_type == "TreeEnsemble" for node in onnx_model.graph.node):
        for opset in onnx_model.opset_import:
            if opset.domain == "ai.onnx.ml":
                opset.version = TREE_ML_OPSET
    if is_classifier(estimator):
        onnx_model = _float_probabilities(onnx_model)
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _dict_vectorizer_pipeline(model: Pipeline, vectorizer, sample: pd.DataFrame, options) -> onnx.ModelProto:
    types = dictvec.key_types(vectorizer, sample)
    rest = Pipeline(model.steps[1:])
    width = len(vectorizer.feature_names_)
    tail = to_onnx(rest, np.zeros((1, width), dtype=np.float64), options=options, target_opset=OPSETS)
    opsets = {o.domain: o.version for o in tail.opset_import}
    opsets.setdefault("ai.onnx.ml", OPSETS["ai.onnx.ml"])
    head = dictvec.graph(vectorizer, types, opsets)
    head.ir_version = tail.ir_version
    for o in tail.opset_import:  # merge_models wants the same opsets on both sides
        if o.domain not in {h.domain for h in head.opset_import}:
            head.opset_import.append(helper.make_opsetid(o.domain, o.version))
    for domain in {h.domain for h in head.opset_import} - {o.domain for o in tail.opset_import}:
        tail.opset_import.append(helper.make_opsetid(domain, opsets[domain]))
    merged = compose.merge_models(head, tail, io_map=[(dictvec.OUTPUT, tail.graph.input[0].name)])
    unique = {o.domain: o.version for o in merged.opset_import}  # merge_models lists each twice
    del merged.opset_import[:]
    merged.opset_import.extend(helper.make_opsetid(d, v) for d, v in unique.items())
    return merged


def _float_probabilities(model: onnx.ModelProto) -> onnx.ModelProto:
    """The probabilities cast to float: the graph computes them in double, whatever skl2onnx declares."""
    graph = model.graph
    if len(graph.output) != 2:
        raise ValueError(f"the classifier's graph has {len(graph.output)} outputs: expected label and probabilities")
    label, proba = graph.output
    if label.name != "label" or proba.name != "probabilities":
        raise ValueError(f"the classifier's graph outputs {label.name}, {proba.name}: expected label, probabilities")
    inner = "probabilities_double"
    for node in graph.node:
        node.output[:] = [inner if o == "probabilities" else o for o in node.output]
        node.input[:] = [inner if i == "probabilities" else i for i in node.input]
    graph.node.append(helper.make_node("Cast", [inner], ["probabilities"], to=TensorProto.FLOAT,
                                       name="probabilities_as_float"))
    proba.type.tensor_type.elem_type = TensorProto.FLOAT
    return model
