"""Experiments with the MLflow registry, on the real session `mlflow server`
and 2 Go replicas following it: an experiment in the registered model's tag
whose variants name aliases (champion, challenger) runs on both replicas,
and `python -m experiments decide --apply --registry` promotes the
challenger by moving the champion alias, after which every replica serves
that version alone."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from experiments import decide
from experiments.__main__ import main
from monitor import logs
from topology import exchange, running, wait_until
from train import tracking

NAME = "experiment_duration"
ROW = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1}
EXPERIMENT = {"id": "registry-ab", "sticky": "X-User", "variants": [
    {"name": "control", "alias": "champion", "weight": 50},
    {"name": "challenger", "alias": "challenger", "weight": 50}]}


@pytest.fixture(scope="module")
def versions(register, mlflow_registry):
    """Version 1 (linear) is the champion, version 2 (ridge) the challenger."""
    url, _ = mlflow_registry
    champion, challenger = register(NAME, "linear", True), register(NAME, "ridge", False)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        tracking.set_alias(NAME, challenger, "challenger")
        yield url, champion, challenger
    finally:
        tracking.set_experiment(NAME, None)
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def predict(url: str, user: str) -> tuple[int, str | None, str | None, str | None]:
    """status, experiment, variant and version of one answer for user."""
    status, _, h = exchange("POST", f"{url}/v1/models/{NAME}:predict", json.dumps({"instances": [ROW]}).encode(),
                            {"Content-Type": "application/json", "X-User": user}, timeout=10)
    return status, h.get("X-Skl2go-Experiment"), h.get("X-Skl2go-Variant"), h.get("X-Skl2go-Version")


def answers(topo, users=range(40)) -> set[tuple]:
    return {predict(r, f"user-{u}") for r in topo.replicas for u in users}


def synthetic_outcomes(state, champion: int, challenger: int) -> None:
    """An inference log in which the challenger's errors are smaller: the
    decision's input, written as the replicas write it (the joining of real
    ground truth is tests/unit/test_experiment_decide.py's and
    test_inference_log.py's business)."""
    now = datetime.now(timezone.utc).isoformat()
    directory = state / "inference" / "replica-1"
    directory.mkdir(parents=True)
    with (directory / "inference-000001.jsonl").open("w") as f:
        for i in range(600):
            variant, version, error = (("control", champion, 3.0) if i % 2 else ("challenger", challenger, 1.0))
            actual = 10.0 + i % 7
            f.write(json.dumps({"specversion": "1.0", "type": logs.INFERENCE, "time": now, "requestid": f"r{i}",
                                "model": NAME, "version": version, "variant": variant,
                                "data": {"outputs": {"predictions": [actual + (error if i % 4 < 2 else -error)]}}}) + "\n")
            f.write(json.dumps({"specversion": "1.0", "type": logs.ACTUAL,
                                "data": {"requestid": f"r{i}", "row": 0, "actual": actual}}) + "\n")


def test_alias_experiment_runs_and_its_promotion_moves_the_champion(versions, tmp_path, capsys):
    url, champion, challenger = versions
    with running(tmp_path / "unused-models", tmp_path / "run", replicas=2, SKL2GO_REGISTRY=url,
                 SKL2GO_REGISTRY_POLL="0.3s", SKL2GO_REGISTRY_MODELS=NAME) as topo:
        assert topo.served_versions(NAME) == [[champion], [champion]]

        experiment = tmp_path / "experiment.json"
        experiment.write_text(json.dumps(EXPERIMENT))
        assert main(["start", NAME, str(experiment), "--registry", url]) == 0
        assert tracking.experiment(NAME) == EXPERIMENT
        want = {(200, "registry-ab", "control", str(champion)), (200, "registry-ab", "challenger", str(challenger))}
        wait_until("both replicas running the experiment by alias", lambda: answers(topo) == want, timeout=20)
        assert topo.served_versions(NAME) == [[champion, challenger], [champion, challenger]]
        # A key gets the same variant on both replicas.
        for u in range(20):
            assert len({predict(r, f"key-{u}")[2] for r in topo.replicas}) == 1

        synthetic_outcomes(tmp_path / "run-decide", champion, challenger)
        assert main(["decide", NAME, "--apply", "--registry", url, "--state", str(tmp_path / "run-decide"),
                     "--models", str(tmp_path / "decisions")]) == 0
        decision = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert decision["action"] == "promote" and decision["applied"], decision
        assert decision["challenger"]["version"] == challenger and decision["challenger"]["alias"] == "challenger"
        assert decision["figures"]["registry"] == f"{NAME}@champion -> {challenger}"
        assert tracking.alias_version(NAME) == challenger  # the alias moved in the registry
        assert tracking.experiment(NAME) is None  # and the experiment ended

        # A poll between the alias moving and the tag going sees both variants on the new champion: wait for both.
        wait_until("both replicas serving the promoted version alone, out of any experiment",
                   lambda: topo.served_versions(NAME) == [[challenger], [challenger]]
                   and answers(topo, range(10)) == {(200, None, None, str(challenger))}, timeout=20)
        for slot in (1, 2):
            log = (topo.state / "logs" / f"replica-{slot}.log").read_text()
            assert "experiment running" in log and "experiment ended" in log
