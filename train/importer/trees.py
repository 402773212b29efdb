"""Tree ensembles that decide exactly as sklearn does, as ai.onnx.ml opset 5 TreeEnsemble.

sklearn's DecisionTree, RandomForest, ExtraTrees and GradientBoosting cast X
to float32 and compare `x <= threshold` with a float64 threshold.
skl2onnx stores the threshold as the nearest float32, which flips the
decision for any x between the two. Here the graph does what sklearn does:
x is cast to float32 and back to double, then compared in double with the
very float64 threshold (TreeEnsemble opset 5 takes double splits and leaf
weights; ONNX Runtime 1.32 runs it in double). HistGradientBoosting
compares float64 X with float64 thresholds: x goes in as double unrounded.
NaN follows each node's missing-value direction, as in sklearn.

Leaf weights are sklearn's own leaf values (class fractions normalised as
predict_proba does, learning rate applied as predict_stages does), summed
in double; averaging, baselines and link functions follow as plain ONNX
ops. A classifier's trees are repeated once per class, one target each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, numpy_helper
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType

# TreeEnsemble is ai.onnx.ml 5; skl2onnx accepts nodes up to 3 and
# convert.py lifts the graph's ai.onnx.ml opset to 5 when one is in it.
ML_OPSET = 3


@dataclass
class Tree:
    """One tree's nodes in sklearn's numbering; leaves carry `values` (one per node, for one target)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    is_leaf: np.ndarray
    values: np.ndarray
    target: int = 0


def sklearn_tree(tree, values: np.ndarray, target: int = 0) -> Tree:
    """A fitted sklearn `Tree` (estimator.tree_) with the given leaf values."""
    left = tree.children_left
    missing = getattr(tree, "missing_go_to_left", np.zeros(len(left), dtype=np.uint8))
    return Tree(left, tree.children_right, tree.feature, tree.threshold, np.asarray(missing), left == -1,
                np.asarray(values, dtype=np.float64), target)


def hist_tree(predictor, target: int = 0) -> Tree:
    nodes = predictor.nodes
    if nodes["is_categorical"].any():
        raise ValueError("HistGradientBoosting with categorical splits cannot be converted")
    return Tree(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), nodes["feature_idx"],
                nodes["num_threshold"], nodes["missing_go_to_left"], nodes["is_leaf"].astype(bool),
                nodes["value"].astype(np.float64), target)


def ensemble_attributes(trees: list[Tree], n_targets: int) -> dict:
    """TreeEnsemble (opset 5) attributes summing the trees' leaf values per target."""
    feature, split, missing, true_id, true_leaf, false_id, false_leaf, roots = ([] for _ in range(8))
    leaf_target, leaf_weight = [], []

    def leaf(tree: Tree, node: int) -> int:
        leaf_target.append(tree.target)
        leaf_weight.append(tree.values[node])
        return len(leaf_weight) - 1

    for tree in trees:
        if tree.is_leaf[0]:  # a tree that is one leaf: a split whose two branches reach it
            roots.append(len(feature))
            index = leaf(tree, 0)
            feature.append(0), split.append(0.0), missing.append(0)
            true_id.append(index), true_leaf.append(1), false_id.append(index), false_leaf.append(1)
            continue
        interior = np.flatnonzero(~tree.is_leaf)
        position = {int(n): len(feature) + k for k, n in enumerate(interior)}
        roots.append(position[0])
        for node in interior:
            feature.append(int(tree.feature[node]))
            split.append(float(tree.threshold[node]))
            missing.append(int(tree.missing_left[node]))
            for child, ids, leafs in ((tree.left[node], true_id, true_leaf), (tree.right[node], false_id, false_leaf)):
                child = int(child)
                if tree.is_leaf[child]:
                    ids.append(leaf(tree, child))
                    leafs.append(1)
                else:
                    ids.append(position[child])
                    leafs.append(0)
    return {
        "n_targets": n_targets,
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE
        "tree_roots": roots,
        "nodes_featureids": feature,
        "nodes_splits": numpy_helper.from_array(np.array(split, dtype=np.float64)),
        "nodes_modes": numpy_helper.from_array(np.zeros(len(feature), dtype=np.uint8)),  # BRANCH_LEQ
        "nodes_truenodeids": true_id,
        "nodes_trueleafs": true_leaf,
        "nodes_falsenodeids": false_id,
        "nodes_falseleafs": false_leaf,
        "nodes_missing_value_tracks_true": missing,
        "leaf_targetids": leaf_target,
        "leaf_weights": numpy_helper.from_array(np.array(leaf_weight, dtype=np.float64)),
    }


# --- what each family sums, and what it does with the sum -----------------

def _family(estimator) -> str:
    name = type(estimator).__name__
    if name.startswith("HistGradientBoosting"):
        return "hist"
    if name.startswith("GradientBoosting"):
        return "boosting"
    if name.startswith("DecisionTree"):
        return "tree"
    return "forest"


def _classifier_trees(estimators, n_classes: int) -> list[Tree]:
    """predict_proba of each tree (class fractions, normalised as sklearn does), one copy per class."""
    trees = []
    for est in estimators:
        value = est.tree_.value[:, 0, :n_classes].astype(np.float64)
        normalizer = value.sum(axis=1, keepdims=True)
        normalizer[normalizer == 0.0] = 1.0
        proba = value / normalizer
        trees.extend(sklearn_tree(est.tree_, proba[:, c], c) for c in range(n_classes))
    return trees


def _boosting_parts(estimator) -> tuple[list[Tree], np.ndarray]:
    """GradientBoosting's trees (learning rate applied) and its constant init raw prediction."""
    init = estimator.init_
    if not (isinstance(init, str) and init == "zero") and type(init).__name__ not in ("DummyRegressor", "DummyClassifier"):
        raise ValueError(f"GradientBoosting with init={type(init).__name__} cannot be converted (a constant init only)")
    base = estimator._raw_predict_init(np.zeros((1, estimator.n_features_in_)))  # constant: Dummy ignores X
    trees = [sklearn_tree(est.tree_, estimator.learning_rate * est.tree_.value[:, 0, 0], k)
             for stage in estimator.estimators_ for k, est in enumerate(stage)]
    return trees, np.asarray(base, dtype=np.float64).reshape(1, -1)


def _hist_parts(estimator) -> tuple[list[Tree], np.ndarray]:
    if getattr(estimator, "_preprocessor", None) is not None:
        raise ValueError("HistGradientBoosting with categorical_features cannot be converted: "
                         "one-hot encode the categories in the pipeline instead")
    trees = [hist_tree(predictor, k) for iteration in estimator._predictors for k, predictor in enumerate(iteration)]
    return trees, np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1, -1)


class _Graph:
    """Adds nodes and constants to skl2onnx's container under unique names."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.scope.get_unique_variable_name(op.lower())
        domain = attrs.pop("op_domain", "")
        version = attrs.pop("op_version", None)
        self.container.add_node(op, inputs, output, name=self.scope.get_unique_operator_name(op),
                                op_domain=domain, op_version=version, **attrs)
        return output

    def const(self, value: np.ndarray, what: str = "const") -> str:
        name = self.scope.get_unique_variable_name(what)
        array = np.asarray(value)
        proto = {np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int64): TensorProto.INT64,
                 np.dtype(np.float32): TensorProto.FLOAT}[array.dtype]
        self.container.add_initializer(name, proto, list(array.shape), array.ravel().tolist())
        return name

    def ensemble(self, x: str, trees: list[Tree], n_targets: int) -> str:
        return self.node("TreeEnsemble", [x], op_domain="ai.onnx.ml", op_version=ML_OPSET,
                         **ensemble_attributes(trees, n_targets))


def _input_as_sklearn_sees_it(g: _Graph, operator, family: str) -> str:
    """X as double, rounded to float32 first for the families that compare in float32."""
    x = operator.inputs[0].full_name
    if family != "hist" and not isinstance(operator.inputs[0].type, FloatTensorType):
        x = g.node("Cast", [x], to=TensorProto.FLOAT)
    return g.node("Cast", [x], to=TensorProto.DOUBLE)


def convert_regressor(scope, operator, container) -> None:
    estimator, g = operator.raw_operator, _Graph(scope, container)
    family = _family(estimator)
    x = _input_as_sklearn_sees_it(g, operator, family)
    out = operator.outputs[0].full_name
    if family in ("tree", "forest"):
        estimators = [estimator] if family == "tree" else estimator.estimators_
        trees = [sklearn_tree(e.tree_, e.tree_.value[:, 0, 0]) for e in estimators]
        raw = g.ensemble(x, trees, 1)
        if family == "forest":  # sklearn sums the trees' predictions, then divides
            raw = g.node("Div", [raw, g.const(np.array([[float(len(estimators))]]), "n_trees")])
        g.node("Identity", [raw], out)
        return
    trees, base = _boosting_parts(estimator) if family == "boosting" else _hist_parts(estimator)
    raw = g.node("Add", [g.ensemble(x, trees, 1), g.const(base, "baseline")])
    link = type(getattr(estimator, "_loss", None)).__name__
    if family == "hist" and link in ("HalfPoissonLoss", "HalfGammaLoss", "HalfTweedieLoss"):
        g.node("Exp", [raw], out)  # the log link's inverse
    elif family == "hist" and link not in ("HalfSquaredError", "AbsoluteError", "PinballLoss"):
        raise ValueError(f"HistGradientBoostingRegressor with loss {estimator.loss!r} cannot be converted")
    else:
        g.node("Identity", [raw], out)


def convert_classifier(scope, operator, container) -> None:
    estimator, g = operator.raw_operator, _Graph(scope, container)
    family = _family(estimator)
    x = _input_as_sklearn_sees_it(g, operator, family)
    classes = np.asarray(estimator.classes_).astype(np.int64)
    n_classes = len(classes)
    label, proba_out = operator.outputs[0].full_name, operator.outputs[1].full_name
    if family in ("tree", "forest"):
        estimators = [estimator] if family == "tree" else estimator.estimators_
        proba = g.ensemble(x, _classifier_trees(estimators, n_classes), n_classes)
        if family == "forest":
            proba = g.node("Div", [proba, g.const(np.array([[float(len(estimators))]]), "n_trees")])
        index = g.node("ArgMax", [proba], axis=1, keepdims=0)
    else:
        trees, base = _boosting_parts(estimator) if family == "boosting" else _hist_parts(estimator)
        raw = g.node("Add", [g.ensemble(x, trees, base.shape[1]), g.const(base, "baseline")])
        if n_classes == 2:
            # GradientBoosting predicts class 1 for raw >= 0, HistGradientBoosting for raw > 0.
            compare = "GreaterOrEqual" if family == "boosting" else "Greater"
            positive = g.node(compare, [raw, g.const(np.array([[0.0]]), "zero")])
            index = g.node("Reshape", [g.node("Cast", [positive], to=TensorProto.INT64),
                                       g.const(np.array([-1], dtype=np.int64), "rows")])
            p1 = g.node("Sigmoid", [raw])
            p0 = g.node("Sub", [g.const(np.array([[1.0]]), "one"), p1])
            proba = g.node("Concat", [p0, p1], axis=1)
        else:
            index = g.node("ArgMax", [raw], axis=1, keepdims=0)
            proba = g.node("Softmax", [raw], axis=1)
    g.node("Gather", [g.const(classes, "classes"), index], label, axis=0)
    want = TensorProto.FLOAT if isinstance(operator.outputs[1].type, FloatTensorType) else TensorProto.DOUBLE
    g.node("Cast", [proba], proba_out, to=want)


def regressor_shape(operator) -> None:
    operator.outputs[0].type = DoubleTensorType([operator.inputs[0].get_first_dimension(), 1])


def classifier_shape(operator) -> None:
    _classifier_outputs(operator, DoubleTensorType)


def _classifier_outputs(operator, probabilities) -> None:
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = Int64TensorType([rows])
    operator.outputs[1].type = probabilities([rows, len(operator.raw_operator.classes_)])


def register() -> None:
    """Replace skl2onnx's converters for the sklearn tree families and LightGBM with these
    (see converters.registered)."""
    from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                                  GradientBoostingRegressor, HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    for cls in (DecisionTreeRegressor, RandomForestRegressor, ExtraTreesRegressor, GradientBoostingRegressor,
                HistGradientBoostingRegressor):
        update_registered_converter(cls, f"Sklearn{cls.__name__}", regressor_shape, convert_regressor, overwrite=True)
    for cls in (DecisionTreeClassifier, RandomForestClassifier, ExtraTreesClassifier, GradientBoostingClassifier,
                HistGradientBoostingClassifier):
        update_registered_converter(cls, f"Sklearn{cls.__name__}", classifier_shape, convert_classifier,
                                    overwrite=True, options={"zipmap": [True, False, "columns"], "nocl": [True, False]})
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
    except ImportError:
        return
    update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", regressor_shape, convert_lightgbm_regressor,
                                overwrite=True)
    update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", classifier_shape,
                                convert_lightgbm_classifier, overwrite=True,
                                options={"zipmap": [True, False, "columns"], "nocl": [True, False]})


# --- LightGBM: its own dump, compared in double --------------------------
#
# LightGBM compares float64 features with float64 thresholds (x <= t), so
# onnxmltools' float32 graph sends a value between t and its float32
# rounding down another branch. Its model dump holds every threshold and
# leaf value with 17 digits: exact doubles. Two habits of its predictor are
# reproduced: it reads |x| <= 1e-35 (kZeroThreshold) as 0.0, and it dumps
# an infinite threshold as +-1e300.

ZERO_THRESHOLD = float(np.float32(1e-35))
DUMPED_INFINITY = 1e300

def lightgbm_trees(booster) -> tuple[list[Tree], int, str]:
    """The trees of a LightGBM booster (per-iteration trees target class i % K), K, and its objective."""
    dump = booster.dump_model()
    if dump.get("average_output"):
        raise ValueError("LightGBM with boosting_type='rf' (averaged trees) cannot be converted")
    per_iteration = int(dump["num_tree_per_iteration"])
    trees = []
    for info in dump["tree_info"]:
        nodes: list[dict] = []
        _flatten(info["tree_structure"], nodes)
        left = np.full(len(nodes), -1, dtype=np.int64)
        right = np.full(len(nodes), -1, dtype=np.int64)
        feature = np.zeros(len(nodes), dtype=np.int64)
        threshold = np.zeros(len(nodes))
        missing = np.zeros(len(nodes), dtype=np.int64)
        values = np.zeros(len(nodes))
        for i, node in enumerate(nodes):
            if "leaf_value" in node or "split_feature" not in node:
                values[i] = node.get("leaf_value", 0.0)
                continue
            if node["decision_type"] != "<=":
                raise ValueError("LightGBM with categorical splits cannot be converted: one-hot encode the "
                                 "categories in the pipeline instead")
            if node["missing_type"] == "Zero":
                raise ValueError("LightGBM with zero_as_missing=True cannot be converted")
            left[i], right[i] = node["_left"], node["_right"]
            feature[i], threshold[i] = node["split_feature"], node["threshold"]
            if abs(threshold[i]) == DUMPED_INFINITY:
                threshold[i] = np.copysign(np.inf, threshold[i])
            # missing_type None: LightGBM reads NaN as 0.0 and compares that; NaN: the default branch.
            missing[i] = int(node["default_left"]) if node["missing_type"] == "NaN" else int(0.0 <= node["threshold"])
        trees.append(Tree(left, right, feature, threshold, missing, left == -1, values,
                          info["tree_index"] % per_iteration))
    return trees, per_iteration, dump["objective"]


def _flatten(node: dict, out: list[dict]) -> int:
    """Number the nodes depth first (root 0), recording each split's children."""
    index = len(out)
    out.append(node)
    if "split_feature" in node and "leaf_value" not in node:
        node["_left"] = _flatten(node["left_child"], out)
        node["_right"] = _flatten(node["right_child"], out)
    return index


def _lightgbm_input(g: _Graph, operator) -> str:
    """X in double, with what LightGBM reads as zero set to 0.0."""
    x = g.node("Cast", [operator.inputs[0].full_name], to=TensorProto.DOUBLE)
    tiny = g.node("LessOrEqual", [g.node("Abs", [x]), g.const(np.array([[ZERO_THRESHOLD]]), "zero_threshold")])
    return g.node("Where", [tiny, g.const(np.array([[0.0]]), "zero"), x])


def convert_lightgbm_regressor(scope, operator, container) -> None:
    g = _Graph(scope, container)
    trees, _, objective = lightgbm_trees(operator.raw_operator.booster_)
    x = _lightgbm_input(g, operator)
    raw = g.ensemble(x, trees, 1)
    name = objective.split()[0]
    if name in ("poisson", "gamma", "tweedie"):
        g.node("Exp", [raw], operator.outputs[0].full_name)
    elif name in ("regression", "regression_l1", "huber", "fair", "quantile", "mape"):
        g.node("Identity", [raw], operator.outputs[0].full_name)
    else:
        raise ValueError(f"LGBMRegressor with objective {objective!r} cannot be converted")


def convert_lightgbm_classifier(scope, operator, container) -> None:
    estimator, g = operator.raw_operator, _Graph(scope, container)
    trees, per_iteration, objective = lightgbm_trees(estimator.booster_)
    x = _lightgbm_input(g, operator)
    raw = g.ensemble(x, trees, per_iteration)
    name, *params = objective.split()
    if name == "binary":
        scale = float(next((p.split(":")[1] for p in params if p.startswith("sigmoid:")), 1.0))
        p1 = g.node("Sigmoid", [g.node("Mul", [raw, g.const(np.array([[scale]]), "sigmoid")])])
        proba = g.node("Concat", [g.node("Sub", [g.const(np.array([[1.0]]), "one"), p1]), p1], axis=1)
    elif name in ("multiclass", "softmax"):
        proba = g.node("Softmax", [raw], axis=1)
    else:
        raise ValueError(f"LGBMClassifier with objective {objective!r} cannot be converted")
    # LGBMClassifier.predict is the argmax of predict_proba (first class on a tie)
    index = g.node("ArgMax", [proba], axis=1, keepdims=0)
    g.node("Gather", [g.const(np.asarray(estimator.classes_).astype(np.int64), "classes"), index],
           operator.outputs[0].full_name, axis=0)
    want = TensorProto.FLOAT if isinstance(operator.outputs[1].type, FloatTensorType) else TensorProto.DOUBLE
    g.node("Cast", [proba], operator.outputs[1].full_name, to=want)


# --- XGBoost: onnxmltools' converter, fed float32 -------------------------

def booster_regressor_shape(operator) -> None:
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), 1])


def booster_classifier_shape(operator) -> None:
    _classifier_outputs(operator, FloatTensorType)


def float32_booster(convert):
    """onnxmltools' `convert` on X cast to float32, as XGBoost reads a float64 matrix."""

    def converter(scope, operator, container) -> None:
        source = operator.inputs[0]
        if isinstance(source.type, FloatTensorType):
            return convert(scope, operator, container)
        cast = scope.declare_local_variable("booster_input", FloatTensorType(source.type.shape))
        container.add_node("Cast", source.full_name, cast.full_name, to=TensorProto.FLOAT,
                           name=scope.get_unique_operator_name("Cast"))
        operator.inputs.set_element(0, cast)
        try:
            convert(scope, operator, container)
        finally:
            operator.inputs.set_element(0, source)

    return converter
