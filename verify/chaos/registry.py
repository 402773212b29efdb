"""The chaos run's registry scenarios: a real `mlflow server`
(topology/mlflow.py), two versions registered by export, and 2 replicas
behind nginx serving trip_duration@champion (docs/registry.md).

- alias_moved: champion moves from version 1 to 2 under load; every replica
  swaps to 2, no request lost.
- registry_down: MLflow is stopped under load; the replicas keep serving
  version 2, stay ready and count their failed polls.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import topology
from topology import Topology, free_ports, request
from topology import mlflow as mlflow_server
from train import export, tracking


def alias_moved(topo: Topology, ctx: dict, out) -> None:
    from verify.chaos.run import MODEL, eventually

    tracking.set_alias(MODEL, 2)
    ctx["version"], ctx["expect_versions"] = 2, {"1", "2"}
    out.did = f"make promote NAME={MODEL} VERSION=2: {MODEL}@champion moved from version 1 to 2 in MLflow"
    out.check("every replica swapped in registry version 2",
              eventually(lambda: topo.served_versions(MODEL) == [[2]] * len(topo.replicas), timeout=60))


def registry_down(topo: Topology, ctx: dict, out) -> None:
    from verify.chaos.run import MODEL, eventually

    def poll_errors() -> list[float]:
        return [topo.metric(r, "skl2go_registry_poll_errors_total") for r in range(1, len(topo.replicas) + 1)]

    before = poll_errors()
    mlflow_server.stop(ctx["mlflow_state"])
    out.did = "stopped the MLflow server (registry and artifact proxy) under load"
    out.check("every replica counted failed polls (skl2go_registry_poll_errors_total)",
              eventually(lambda: all(a > b for a, b in zip(poll_errors(), before)), timeout=30))
    out.check("every replica still ready", all(request("GET", r + "/readyz")[0] == 200 for r in topo.replicas))
    out.check("every replica still serves version 2", topo.served_versions(MODEL) == [[2]] * len(topo.replicas))


SCENARIOS = [("alias_moved", alias_moved), ("registry_down", registry_down)]


def run(s, build: Path, state: Path, work: Path) -> list:
    """The registry scenarios on their own MLflow server and topology under state."""
    from verify.chaos.run import MODEL, run_scenario

    mlflow_state = state / "mlflow"
    url = mlflow_server.start(free_ports(1), mlflow_state)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "PROMOTE")}
    os.environ["MLFLOW_TRACKING_URI"], os.environ["PROMOTE"] = url, ""
    try:
        with warnings.catch_warnings():  # sklearn on unseen zones in the held-out rows: expected
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(2):  # registry versions 1 and 2
                export.export(MODEL, build, state / "exported")
        tracking.set_alias(MODEL, 1)
        ctx = {"settings": s, "held_out": build / MODEL, "version": 1, "mlflow_state": mlflow_state}
        with topology.running(state / "exported", state / "run", replicas=2, SKL2GO_REGISTRY=url,
                              SKL2GO_REGISTRY_POLL="1s") as topo:
            return [run_scenario(name, action, topo, ctx, s, work) for name, action in SCENARIOS]
    finally:
        mlflow_server.stop(mlflow_state)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
