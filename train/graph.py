"""Rewrites of an exported graph that keep its results bit for bit and make
ONNX Runtime faster. Export checks the rewritten graph against sklearn on
every held-out row, as any graph.

- A Gather of a contiguous range of constant indices along one axis becomes
  a Slice. skl2onnx drops the first one-hot level (drop="first", the linear
  families) with such a Gather; ONNX Runtime's Gather copies element by
  element along the last axis, Slice copies runs. On the linear model,
  1,000 rows: 4.6 ms -> 0.5 ms per run; 1 row: 21 -> 15 µs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` with the rewrites applied, and the nodes rewritten."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0) < 10:
        return model, []  # Slice takes its bounds as inputs from opset 10
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    nodes, done = [], []
    for node in graph.node:
        span = _contiguous_gather(node, constants)
        if span is None:
            nodes.append(node)
            continue
        start, stop, axis = span
        out = node.output[0]
        for suffix, value in (("starts", start), ("ends", stop), ("axes", axis)):
            graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), f"{out}_slice_{suffix}"))
        nodes.append(helper.make_node("Slice", [node.input[0], f"{out}_slice_starts", f"{out}_slice_ends",
                                                f"{out}_slice_axes"], [out], name=f"{node.name or out}_as_slice"))
        done.append(node.name or out)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used or init.name in {o.name for o in graph.output}]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model, done


def _contiguous_gather(node: onnx.NodeProto, constants: dict) -> tuple[int, int, int] | None:
    """(start, stop, axis) if node gathers indices start, start+1, …, stop-1 given as a constant."""
    if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or node.input[1] not in constants:
        return None
    indices = numpy_helper.to_array(constants[node.input[1]])
    if indices.ndim != 1 or len(indices) == 0 or indices[0] < 0:
        return None
    if not np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        return None
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
    return int(indices[0]), int(indices[0] + len(indices)), int(axis)
