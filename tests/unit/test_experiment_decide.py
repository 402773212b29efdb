"""python -m experiments decide on synthetic inference logs: a better
challenger ends promoted, a worse one rolled back, an equal one is not
promoted, and the guard rails roll back at once."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest

from experiments import decide
from experiments.__main__ import main
from monitor import logs

MODEL = "trip_duration"
NOW = datetime.now(timezone.utc).isoformat()


def repository(tmp_path, control=1, challenger=2, weights=(90, 10)) -> tuple:
    models, log = tmp_path / "models", tmp_path / "run" / "inference"
    for v in (1, 2, 3):
        (models / MODEL / str(v)).mkdir(parents=True)
    (log / "replica-1").mkdir(parents=True)
    experiment = {"id": "e1", "sticky": "X-User", "variants": [
        {"name": "control", "version": control, "weight": weights[0]},
        {"name": "challenger", "version": challenger, "weight": weights[1]}]}
    (models / MODEL / "experiment.json").write_text(json.dumps(experiment))
    return models, log


class Traffic:
    """Requests split as experiment.json says, each row's error drawn with
    the variant's spread, written as the replicas write the log."""

    def __init__(self, models, log, spread: dict[str, float], seed: int):
        self.models, self.log, self.spread = models, log, spread
        self.random = random.Random(seed)
        self.requests = 0
        self.file = log / "replica-1" / "inference-000001.jsonl"

    def send(self, n: int) -> None:
        path = self.models / MODEL / "experiment.json"
        variants = json.loads(path.read_text())["variants"] if path.exists() else []
        with self.file.open("a") as f:
            for _ in range(n):
                self.requests += 1
                request = f"r{self.requests}"
                variant = self.random.choices(variants, weights=[v["weight"] for v in variants])[0]
                actual = self.random.uniform(5, 40)
                prediction = actual + self.random.gauss(0, self.spread[variant["name"]])
                f.write(json.dumps({"specversion": "1.0", "type": logs.INFERENCE, "time": NOW, "requestid": request, "model": MODEL,
                                    "version": variant["version"], "variant": variant["name"],
                                    "data": {"outputs": {"predictions": [prediction]}}}) + "\n")
                f.write(json.dumps({"specversion": "1.0", "type": logs.ACTUAL,
                                    "data": {"requestid": request, "row": 0, "actual": actual}}) + "\n")


def run(models, log, capsys, *extra: str) -> dict:
    assert main(["decide", MODEL, "--apply", "--models", str(models), "--state", str(log.parent), *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def simulate(tmp_path, capsys, spread, seed=1, rounds=40, per_round=400) -> list[dict]:
    models, log = repository(tmp_path)
    traffic = Traffic(models, log, spread, seed)
    decisions = []
    for _ in range(rounds):
        traffic.send(per_round)
        decisions.append(run(models, log, capsys))
        if decisions[-1]["action"] in ("promote", "rollback"):
            break
    return decisions


def test_better_challenger_ends_promoted(tmp_path, capsys):
    decisions = simulate(tmp_path, capsys, {"control": 4.0, "challenger": 3.4})
    actions = [d["action"] for d in decisions]
    assert actions[-1] == "promote", actions
    # The challenger (version 2) is not the latest (3): it now takes all the traffic.
    experiment = json.loads((tmp_path / "models" / MODEL / "experiment.json").read_text())
    assert experiment["variants"] == [{"name": "challenger", "version": 2, "weight": 100}]
    lines = (tmp_path / "models" / MODEL / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == len(decisions)
    last = json.loads(lines[-1])
    assert last["figures"]["lambda"] >= last["figures"]["threshold"] and last["figures"]["d"] > 0 and last["applied"]


def test_worse_challenger_ends_rolled_back(tmp_path, capsys):
    decisions = simulate(tmp_path, capsys, {"control": 2.5, "challenger": 4.0})
    assert decisions[-1]["action"] == "rollback", [d["action"] for d in decisions]
    experiment = json.loads((tmp_path / "models" / MODEL / "experiment.json").read_text())
    assert experiment["variants"] == [{"name": "control", "version": 1, "weight": 100}]
    assert all(d["action"] != "shift" or d["figures"]["d"] >= 0 for d in decisions)


def test_equal_challenger_is_rarely_promoted(tmp_path, capsys):
    """Both variants equally good: over 20 experiments each decided after
    every batch of outcomes, at most a few (alpha = 5 %) are promoted."""
    promoted = 0
    for seed in range(20):
        decisions = simulate(tmp_path / str(seed), capsys, {"control": 3.0, "challenger": 3.0}, seed=seed, rounds=6)
        promoted += decisions[-1]["action"] == "promote"
    assert promoted <= 3


def test_promoting_the_latest_version_ends_the_experiment(tmp_path):
    models, _ = repository(tmp_path, control=1, challenger=3)
    experiment = decide.load(models, MODEL)
    outcomes = [decide.Outcome("control", 1, 10 + e, 10) for e in (3, -3) * 300] + \
               [decide.Outcome("challenger", 3, 10 + e, 10) for e in (1, -1) * 300]
    decision = decide.decide(MODEL, experiment, outcomes, decide.Rules())
    assert decision.action == "promote"
    decide.apply(models, decision, experiment)
    assert not (models / MODEL / "experiment.json").exists()  # version 3 is the latest: it answers alone


def test_no_verdict_shifts_weight_by_the_step_up_to_the_cap(tmp_path):
    models, _ = repository(tmp_path, weights=(90, 10))
    outcomes = [decide.Outcome("control", 1, 10 + e, 10) for e in (0, -6.1) * 150] + \
               [decide.Outcome("challenger", 2, 10 + e, 10) for e in (0, 6.0) * 150]
    shares = []
    for _ in range(6):
        experiment = decide.load(models, MODEL)
        decision = decide.decide(MODEL, experiment, outcomes, decide.Rules())
        decide.apply(models, decision, experiment)
        shares.append(decision.weights["challenger"])
    assert shares == [20, 30, 40, 50, 50, 50]
    assert decision.action == "hold" and "cap" in decision.reason


def test_waits_for_enough_outcomes(tmp_path):
    models, _ = repository(tmp_path)
    outcomes = [decide.Outcome("control", 1, 13, 10)] * 50 + [decide.Outcome("challenger", 2, 10, 10)] * 50
    decision = decide.decide(MODEL, decide.load(models, MODEL), outcomes, decide.Rules())
    assert decision.action == "wait" and "fewer than 200" in decision.reason


@pytest.mark.parametrize("metrics, reason", [
    ({"control": {"requests": 1000}, "challenger": {"requests": 100, "failures": 5}}, "error rate"),
    ({"control": {"requests": 1000, "latency_sum": 1.0, "latency_count": 1000},
      "challenger": {"requests": 100, "latency_sum": 0.5, "latency_count": 100}}, "mean latency"),
])
def test_guard_rails_roll_back_at_once(tmp_path, metrics, reason):
    models, _ = repository(tmp_path)
    decision = decide.decide(MODEL, decide.load(models, MODEL), [], decide.Rules(), metrics)
    assert decision.action == "rollback" and reason in decision.reason


def test_refuses_what_it_cannot_decide(tmp_path, capsys):
    models, log = repository(tmp_path)
    (models / MODEL / "experiment.json").write_text(json.dumps({"id": "e", "variants": [
        {"name": "a", "version": 1, "weight": 1}, {"name": "b", "version": 2, "weight": 1}, {"name": "c", "version": 3, "weight": 1}]}))
    assert main(["decide", MODEL, "--models", str(models), "--state", str(log.parent)]) == 2
    assert "a control and one challenger, got 3 variants" in capsys.readouterr().err
    assert main(["decide", "other", "--models", str(models), "--state", str(log.parent)]) == 2
    assert "no experiment on other" in capsys.readouterr().err


def test_reader_joins_on_request_and_row_across_files(tmp_path):
    import gzip

    root = tmp_path / "inference"
    (root / "replica-1").mkdir(parents=True)
    (root / "actuals").mkdir()
    records = [{"type": logs.INFERENCE, "time": NOW, "requestid": "a", "model": MODEL, "version": 2, "variant": "challenger",
                "data": {"outputs": {"predictions": [10.0, 20.0]}}},
               {"type": logs.INFERENCE, "time": NOW, "requestid": "b", "model": MODEL, "version": 1,  # no variant: not an experiment's
                "data": {"outputs": {"predictions": [5.0]}}},
               {"type": logs.SHADOW, "time": NOW, "requestid": "a", "model": MODEL, "version": 3, "variant": "shadow",
                "data": {"outputs": {"predictions": [0.0, 0.0]}}}]
    with gzip.open(root / "replica-1" / "inference-000001.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n{cut short")
    (root / "actuals" / "late.jsonl").write_text("\n".join(json.dumps(
        {"type": logs.ACTUAL, "data": {"requestid": r, "row": row, "actual": v}}) for r, row, v in
        [("a", 1, 21.0), ("b", 0, 5.0), ("zzz", 0, 1.0)]) + "\n")
    assert decide.outcomes(tmp_path, MODEL) == [decide.Outcome("challenger", 2, 20.0, 21.0)]


def test_scrape_reads_the_replicas_metrics(tmp_path):
    text = "\n".join([
        '# TYPE skl2go_experiment_requests_total counter',
        'skl2go_experiment_requests_total{experiment="e1",model="trip_duration",variant="challenger"} 90',
        'skl2go_experiment_request_failures_total{experiment="e1",model="trip_duration",reason="internal",variant="challenger"} 10',
        'skl2go_experiment_request_duration_seconds_sum{experiment="e1",model="trip_duration",variant="challenger"} 0.5',
        'skl2go_experiment_request_duration_seconds_count{experiment="e1",model="trip_duration",variant="challenger"} 90',
        'skl2go_experiment_requests_total{experiment="e1",model="other",variant="challenger"} 7'])
    page = tmp_path / "metrics"
    page.write_text(text)
    figures = decide.scrape([page.as_uri(), page.as_uri()], MODEL)  # two replicas
    assert figures["challenger"] == {"requests": 180, "failures": 20, "latency_sum": 1.0, "latency_count": 180}
    models, _ = repository(tmp_path)
    decision = decide.decide(MODEL, decide.load(models, MODEL), [], decide.Rules(), figures)
    assert decision.action == "rollback" and "error rate 0.1000" in decision.reason


def test_alias_variants_resolve_through_the_registry_or_are_refused():
    experiment = {"id": "e1", "variants": [{"name": "control", "alias": "champion", "weight": 90},
                                           {"name": "challenger", "alias": "challenger", "weight": 10}]}
    with pytest.raises(decide.ExperimentError, match="variant control: alias 'champion' needs the registry"):
        decide.decide(MODEL, experiment, [], decide.Rules())
    aliases = {"champion": 4, "challenger": 7}
    decision = decide.decide(MODEL, experiment, [], decide.Rules(), resolve=aliases.__getitem__)
    assert (decision.control["version"], decision.control["alias"]) == (4, "champion")
    assert (decision.challenger["version"], decision.challenger["alias"]) == (7, "challenger")
    assert "version" not in experiment["variants"][0]  # the experiment as written keeps its aliases
