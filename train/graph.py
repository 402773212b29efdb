"""Rewrites of an exported graph that make ONNX Runtime faster. Export
checks the rewritten graph against sklearn on every held-out row, as any
graph; the Go server and batch scoring both run the rewritten one, so they
agree with each other bit for bit.

- A Gather of a contiguous range of constant indices along one axis becomes
  a Slice. skl2onnx drops the first one-hot level (drop="first", the linear
  families) with such a Gather; ONNX Runtime's Gather copies element by
  element along the last axis, Slice copies runs. On the linear model,
  1,000 rows: 4.6 ms -> 0.5 ms per run; 1 row: 21 -> 15 µs. Same results
  bit for bit.
- A linear model over one-hot blocks (`sparse_linear`) gathers each
  category's coefficients instead of multiplying a dense one-hot row:
  sklearn's own sparse sum, and no more work per row than there are
  columns (BENCHMARKS.md, "Batch scoring").
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


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


ML = "ai.onnx.ml"
LINEAR_OPS = ("LinearRegressor", "LinearClassifier")


def sparse_linear(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A linear model over one-hot blocks, rewritten to skip the one-hot matrix.

    skl2onnx encodes each categorical column into a dense one-hot block
    (OneHotEncoder, then a Slice when a level is dropped), concatenates the
    blocks and the numeric columns and multiplies the whole row by the
    coefficients: hundreds of multiplications by zero per row. The rewrite
    gives each categorical column a LabelEncoder (category -> row of a table)
    and a Gather of that row of its coefficients (one per class), sums them
    in column order, adds the numeric columns times their coefficients, and
    hands the per-class scores to the original Linear node with identity
    coefficients, so its intercepts, post-transform and labels stay as
    skl2onnx wrote them. Categories the encoder does not know, and dropped
    levels, map to a row of zeros: what OneHotEncoder(zeros=1) encodes them
    as (sklearn's handle_unknown="ignore").

    The sum is the one sklearn computes on its sparse matrix (the non-zero
    terms in column order), not the dense product's, so the answers may
    differ from the unrewritten graph's in the last bits; export checks the
    result against sklearn like any graph. Returns the model unchanged (and
    no names) when the graph is not of that shape.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    linear = [n for n in graph.node if n.domain == ML and n.op_type in LINEAR_OPS]
    if len(linear) != 1:
        return model, []
    node = linear[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    coefficients = np.asarray(attrs.get("coefficients", []), dtype=np.float32)
    if node.op_type == "LinearRegressor":
        classes = int(attrs.get("targets", 1))
    else:
        classes = len(attrs["intercepts"]) if "intercepts" in attrs else 0
    if classes < 1 or coefficients.size % classes:
        return model, []
    weights = coefficients.reshape(classes, -1)  # [class, feature]
    blocks = _linear_blocks(producer.get(node.input[0]), producer, constants, model)
    if blocks is None or sum(width for _, width, _ in blocks) != weights.shape[1]:
        return model, []

    out = node.output[0]
    new_nodes, inits, parts, onehots, dense = [], [], [], [], []
    column = 0
    for k, (kind, width, info) in enumerate(blocks):
        block = weights[:, column:column + width].T  # [width, class]
        column += width
        name = f"{out}_sparse{k}"
        if kind == "onehot":
            source, categories, start = info
            # Row i of the table: the coefficients of the i-th kept level;
            # the last row, zeros, for dropped levels and unknown categories.
            table = np.vstack([block, np.zeros((1, classes), dtype=np.float32)])
            index = np.full(len(categories), width, dtype=np.int64)
            index[start:start + width] = np.arange(width)
            new_nodes.append(helper.make_node(
                "LabelEncoder", [source], [f"{name}_row"], domain=ML, name=f"{name}_row",
                keys_int64s=[int(c) for c in categories], values_int64s=index.tolist(), default_int64=width))
            inits.append(numpy_helper.from_array(table, f"{name}_table"))
            new_nodes.append(helper.make_node("Gather", [f"{name}_table", f"{name}_row"], [f"{name}_terms"],
                                              axis=0, name=f"{name}_terms"))
            onehots.append(f"{name}_terms")
        else:
            inits.append(numpy_helper.from_array(block, f"{name}_weights"))
            op = "Mul" if width == 1 else "MatMul"  # one column: a product per class, no sum
            new_nodes.append(helper.make_node(op, [info, f"{name}_weights"], [f"{name}_terms"], name=f"{name}_terms"))
            dense.append(f"{name}_terms")
    if not onehots:
        return model, []
    inits.append(numpy_helper.from_array(np.array([-1, classes], dtype=np.int64), f"{out}_sparse_shape"))
    new_nodes.append(helper.make_node("Sum", onehots, [f"{out}_sparse_categories"], name=f"{out}_sparse_categories"))
    new_nodes.append(helper.make_node("Reshape", [f"{out}_sparse_categories", f"{out}_sparse_shape"],
                                      [f"{out}_sparse_onehot"], name=f"{out}_sparse_onehot"))
    scores = f"{out}_sparse_scores"
    new_nodes.append(helper.make_node("Sum", [f"{out}_sparse_onehot", *dense], [scores], name=scores))
    del node.input[:]
    node.input.append(scores)
    for a in node.attribute:
        if a.name == "coefficients":
            del a.floats[:]
            a.floats.extend(np.eye(classes, dtype=np.float32).reshape(-1).tolist())
    at = list(graph.node).index(node)
    nodes = list(graph.node)
    nodes[at:at] = new_nodes
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    _prune(graph)
    for opset in model.opset_import:
        if opset.domain == ML and opset.version < 2:
            opset.version = 2  # LabelEncoder maps int64 to int64 from version 2
    onnx.checker.check_model(model)
    return model, [node.name or out]


def _linear_blocks(concat, producer: dict, constants: dict, model: onnx.ModelProto):
    """The column blocks of a Linear node's input, in order: ("onehot", width,
    (int64 input, categories, first kept level)) or ("dense", width, tensor);
    None when the input is not a row-wise concatenation of such blocks."""
    if concat is None or concat.op_type != "Concat" or _axis(concat) not in (1, -1):
        return None
    widths = _widths(model)
    blocks = []
    for name in concat.input:
        node = producer.get(name)
        onehot = _onehot_blocks(node, producer, constants) if node is not None and node.op_type == "Reshape" else None
        if onehot is not None:
            blocks.extend(onehot)
        elif _width(name, producer, widths):
            blocks.append(("dense", _width(name, producer, widths), name))
        else:
            return None
    return blocks


def _onehot_blocks(reshape, producer: dict, constants: dict):
    """Reshape(Concat(last axis) of OneHotEncoder blocks, each maybe Sliced), as blocks."""
    shape = constants.get(reshape.input[1])
    inner = producer.get(reshape.input[0])
    if shape is None or shape.tolist()[-1:] != [-1] and len(shape) != 2 or inner is None or inner.op_type != "Concat":
        return None
    blocks = []
    for name in inner.input:
        node, start, stop = producer.get(name), 0, None
        if node is not None and node.op_type == "Slice":
            bounds = [constants.get(i) for i in node.input[1:]]
            if len(bounds) not in (3, 4) or any(b is None or b.size != 1 for b in bounds) \
                    or int(bounds[2][0]) not in (2, -1) or (len(bounds) == 4 and int(bounds[3][0]) != 1):
                return None
            start, stop = int(bounds[0][0]), int(bounds[1][0])
            node = producer.get(node.input[0])
        if node is None or node.op_type != "OneHotEncoder" or node.domain != ML:
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        categories = list(attrs.get("cats_int64s", []))
        if not categories or attrs.get("zeros", 1) != 1 or len(set(categories)) != len(categories):
            return None
        kept = range(len(categories))[start:stop]
        if len(kept) == 0 or kept.step != 1:
            return None
        source = producer.get(node.input[0])
        if source is None or source.op_type != "Cast" or helper.get_attribute_value(source.attribute[0]) != TensorProto.INT64:
            return None  # the encoder's input must be int64 (LabelEncoder keys)
        blocks.append(("onehot", len(kept), (node.input[0], categories, kept.start)))
    return blocks


def _axis(node: onnx.NodeProto) -> int:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)


def _widths(model: onnx.ModelProto) -> dict[str, int]:
    """The fixed second dimension of every [N, w] tensor shape inference knows."""
    inferred = onnx.shape_inference.infer_shapes(model)
    widths = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            widths[info.name] = dims[1].dim_value
    return widths


def _width(name: str, producer: dict, widths: dict[str, int]) -> int | None:
    """A tensor's width; shape inference does not see through Scaler and
    Cast (they keep their input's shape), so it is read off their input."""
    while name not in widths and name in producer and producer[name].op_type in ("Scaler", "Cast"):
        name = producer[name].input[0]
    return widths.get(name)


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers nothing uses any more."""
    wanted = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in wanted for o in node.output):
            kept.append(node)
            wanted.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [i for i in graph.initializer if i.name in wanted]
    del graph.initializer[:]
    graph.initializer.extend(inits)
