"""Decide an experiment: shift weight to the challenger, promote it, or roll it back.

The rule (docs/experiments.md):

1. Guard rails, from the replicas' /metrics when given: a challenger whose
   error rate exceeds --max-error-rate, or whose mean latency exceeds
   --max-latency-ratio times the control's, is rolled back at once.
2. Below --min-outcomes outcomes (predictions joined with their ground
   truth) per variant: wait.
3. A mixture sequential probability ratio test (mSPRT) on the difference of
   the mean absolute errors, d = MAE(control) - MAE(challenger), with a
   normal mixture of scale tau = --tau x MAE(control): the test may be run
   after every new outcome and still promotes a challenger no better than
   the control with probability at most --alpha (an always-valid p-value).
   Evidence (Lambda >= 1/alpha) that the challenger is better: promote;
   that it is worse: roll back.
4. No evidence yet: move --max-step points of weight to the challenger if
   it is not behind so far (up to --max-share), else hold.

Promoting or rolling back ends the experiment with the winner answering:
experiment.json is removed when the winner is the latest version (which
answers without an experiment), else rewritten to give it all the weight;
with MLFLOW_TRACKING_URI set, a promotion also moves the registry alias.

With the registry (registry=True: replicas run with --registry), the
experiment is the registered model's tag skl2go.experiment, its variants may
name aliases (resolved through train/tracking.py), and promoting or rolling
back moves the champion alias to the winner's version (when it is not
there already) and removes the tag.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from monitor import logs
from train import repository, tracking

EXPERIMENT_FILE = "experiment.json"
DECISIONS_FILE = "decisions.jsonl"


@dataclass(frozen=True)
class Outcome:
    """One row an experiment's variant answered, whose ground truth arrived."""

    variant: str
    version: int
    prediction: float
    actual: float


def outcomes(state: str | Path, model: str) -> list[Outcome]:
    """Every outcome in the inference log under $STATE/inference of `model`'s
    answers that an experiment assigned (they have a variant; mirror runs,
    which answered nobody, are not outcomes)."""
    window = logs.read(state, since=datetime(1970, 1, 1, tzinfo=timezone.utc), model=model)
    found = []
    for (_, version), frame in window.frames.items():
        rows = frame[(frame["type"] == logs.INFERENCE) & frame["variant"].notna() & frame["actual"].notna()]
        found += [Outcome(str(v), version, float(p), float(a))
                  for v, p, a in zip(rows["variant"], rows["prediction"], rows["actual"])]
    return found


@dataclass
class Rules:
    alpha: float = 0.05
    min_outcomes: int = 200
    max_step: int = 10  # percentage points of weight per decision
    max_share: int = 50  # the challenger's largest share before a verdict
    tau: float = 0.1  # the mixture's scale, relative to the control's MAE
    max_error_rate: float = 0.01
    max_latency_ratio: float = 2.0
    min_requests: int = 50  # requests per variant before the guard rails judge


@dataclass
class Arm:
    """What a variant's outcomes say: n absolute errors, their mean and variance."""

    name: str
    version: int
    weight: int
    alias: str | None = None  # the registry alias the variant names, if it names one
    n: int = 0
    mae: float = 0.0
    var: float = 0.0
    requests: float = 0.0
    failures: float = 0.0
    latency: float | None = None  # mean seconds, from the metrics


@dataclass
class Decision:
    model: str
    experiment: str
    action: str  # wait | shift | hold | promote | rollback
    reason: str
    control: dict
    challenger: dict
    figures: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # variant -> weight after the decision
    applied: bool = False
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class ExperimentError(ValueError):
    """No experiment to decide, or one this rule cannot decide."""


def load(models: str | Path, name: str, registry: bool = False) -> dict:
    """The experiment of model name: models/<name>/experiment.json, or with
    the registry its registered model's tag."""
    if registry:
        try:
            doc = tracking.experiment(name)
        except tracking.TrackingError as err:
            raise ExperimentError(str(err)) from None
        if doc is None:
            raise ExperimentError(f"no experiment on {name}: registered model {name} has no tag {tracking.EXPERIMENT_TAG}")
        return doc
    path = Path(models) / name / EXPERIMENT_FILE
    if not path.is_file():
        raise ExperimentError(f"no experiment on {name}: {path} does not exist")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ExperimentError(f"{path}: not valid JSON: {err}") from None


def arms(experiment: dict, resolve: Callable[[str], int] | None = None) -> tuple[Arm, Arm]:
    """The control (the variant named control, else the first) and the one
    challenger; a variant named by alias gets the version resolve gives."""
    variants = [dict(v) for v in experiment.get("variants") or []]  # the experiment as written stays
    for v in variants:
        if "version" in v:
            continue
        if "alias" not in v:
            raise ExperimentError(f"variant {v.get('name')}: missing version (a number) or alias (a registry alias)")
        if resolve is None:
            raise ExperimentError(f"variant {v.get('name')}: alias {v['alias']!r} needs the registry (--registry URL, make … REGISTRY=)")
        try:
            v["version"] = resolve(v["alias"])
        except tracking.TrackingError as err:
            raise ExperimentError(f"variant {v.get('name')}: {err}") from None
    control = next((v for v in variants if v.get("name") == "control"), variants[0] if variants else None)
    others = [v for v in variants if v is not control]
    if control is None or len(others) != 1:
        raise ExperimentError(f"variants: a decision compares a control and one challenger, got {len(variants)} variants")
    make = lambda v: Arm(v["name"], int(v["version"]), int(v.get("weight", 0)), alias=v.get("alias"))  # noqa: E731
    return make(control), make(others[0])


def summarize(arm: Arm, outcomes: list[Outcome]) -> None:
    errors = [abs(o.prediction - o.actual) for o in outcomes if o.variant == arm.name]
    arm.n = len(errors)
    if errors:
        arm.mae = sum(errors) / len(errors)
        arm.var = sum((e - arm.mae) ** 2 for e in errors) / max(len(errors) - 1, 1)


def msprt(control: Arm, challenger: Arm, tau: float) -> tuple[float, float]:
    """d = MAE(control) - MAE(challenger) and the mixture likelihood ratio
    Lambda of "d != 0" against "d = 0" (normal approximation, normal mixture
    of variance tau**2 on d)."""
    d = control.mae - challenger.mae
    v = control.var / max(control.n, 1) + challenger.var / max(challenger.n, 1)
    if v <= 0:
        return d, math.inf if d != 0 else 1.0
    t2 = tau * tau
    log_lambda = 0.5 * math.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    return d, math.exp(min(log_lambda, 700.0))


_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def scrape(urls: list[str], model: str, timeout: float = 5.0) -> dict[str, dict]:
    """Per variant, summed over the replicas: requests, failures, latency_sum, latency_count."""
    out: dict[str, dict[str, float]] = {}
    wanted = {"skl2go_experiment_requests_total": "requests", "skl2go_experiment_request_failures_total": "failures",
              "skl2go_experiment_request_duration_seconds_sum": "latency_sum",
              "skl2go_experiment_request_duration_seconds_count": "latency_count"}
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                text = resp.read().decode()
        except OSError as err:  # a replica down: the others' figures still count
            out.setdefault("", {}).setdefault("unreachable", []).append(f"{url}: {err}")
            continue
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if not m or m["name"] not in wanted:
                continue
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m["labels"]))
            if labels.get("model") != model:
                continue
            figures = out.setdefault(labels.get("variant", ""), {})
            figures[wanted[m["name"]]] = figures.get(wanted[m["name"]], 0.0) + float(m["value"])
    return out


def guard(control: Arm, challenger: Arm, rules: Rules) -> str | None:
    """Why the challenger must be rolled back at once, or None."""
    if challenger.requests + challenger.failures >= rules.min_requests:
        rate = challenger.failures / (challenger.requests + challenger.failures)
        if rate > rules.max_error_rate:
            return f"error rate {rate:.4f} > {rules.max_error_rate}"
    if challenger.latency is not None and control.latency and challenger.requests >= rules.min_requests:
        if challenger.latency > rules.max_latency_ratio * control.latency:
            return f"mean latency {challenger.latency:.6f}s > {rules.max_latency_ratio} x control's {control.latency:.6f}s"
    return None


def decide(model: str, experiment: dict, outcomes: list[Outcome], rules: Rules,
           metrics: dict[str, dict[str, float]] | None = None,
           resolve: Callable[[str], int] | None = None) -> Decision:
    control, challenger = arms(experiment, resolve)
    for arm in (control, challenger):
        summarize(arm, outcomes)
        m = (metrics or {}).get(arm.name, {})
        arm.requests, arm.failures = m.get("requests", 0.0), m.get("failures", 0.0)
        if m.get("latency_count"):
            arm.latency = m["latency_sum"] / m["latency_count"]
    d, lam = msprt(control, challenger, rules.tau * max(control.mae, 1e-9))
    figures = {"d": d, "lambda": lam if math.isfinite(lam) else 1e308, "threshold": 1 / rules.alpha, "p_always_valid": min(1.0, 1 / lam) if lam else 1.0,
               "rules": asdict(rules)}
    if unreachable := (metrics or {}).get("", {}).get("unreachable"):
        figures["metrics_unreachable"] = unreachable
    decision = Decision(model, experiment.get("id", ""), "hold", "", asdict(control), asdict(challenger), figures)
    total = control.weight + challenger.weight
    share = round(100 * challenger.weight / total) if total else 0
    if reason := guard(control, challenger, rules):
        decision.action, decision.reason = "rollback", "guard rail: " + reason
    elif min(control.n, challenger.n) < rules.min_outcomes:
        decision.action = "wait"
        decision.reason = f"{min(control.n, challenger.n)} outcomes on the smaller variant, fewer than {rules.min_outcomes}"
    elif lam >= 1 / rules.alpha:
        decision.action = "promote" if d > 0 else "rollback"
        better = "lower" if d > 0 else "higher"
        decision.reason = f"mSPRT: Lambda {lam:.3g} >= {1 / rules.alpha:.3g}; the challenger's MAE is {better} by {abs(d):.4g}"
    elif d >= 0 and share < rules.max_share:
        share = min(rules.max_share, share + rules.max_step)
        decision.action = "shift"
        decision.reason = f"no verdict yet (Lambda {lam:.3g}); the challenger is not behind: {share}% of the traffic"
    else:
        decision.reason = f"no verdict yet (Lambda {lam:.3g}); " + ("the challenger is behind" if d < 0 else f"at the {rules.max_share}% cap")
    if decision.action == "shift":
        decision.weights = {control.name: 100 - share, challenger.name: share}
    elif decision.action == "promote":
        decision.weights = {challenger.name: 100}
    elif decision.action == "rollback":
        decision.weights = {control.name: 100}
    else:
        decision.weights = {control.name: control.weight, challenger.name: challenger.weight}
    return decision


def write(models: str | Path, name: str, doc: dict | None, registry: bool = False) -> None:
    """Start, change (doc) or end (None) model `name`'s experiment: the one
    writer of models/<name>/experiment.json, atomic, as the replicas read it
    (with the registry: of the registered model's tag)."""
    if registry:
        try:
            tracking.set_experiment(name, doc)
        except tracking.TrackingError as err:
            raise ExperimentError(str(err)) from None
        return
    path = Path(models) / name / EXPERIMENT_FILE
    if doc is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)  # a replica never reads half a file


def apply(models: str | Path, decision: Decision, experiment: dict, registry: bool = False) -> None:
    """Carry a decision out on models/<name>/experiment.json (and the
    registry), or with registry on the tag and the champion alias."""
    if decision.action == "shift":
        doc = dict(experiment)
        doc["variants"] = [dict(v, weight=decision.weights.get(v["name"], v.get("weight", 0))) for v in experiment["variants"]]
        write(models, decision.model, doc, registry)
    elif registry and decision.action in ("promote", "rollback"):
        winner = decision.challenger if decision.action == "promote" else decision.control
        try:
            if tracking.alias_version(decision.model) != winner["version"]:
                tracking.set_alias(decision.model, winner["version"])
                decision.figures["registry"] = f"{decision.model}@{tracking.ALIAS} -> {winner['version']}"
            else:
                decision.figures["registry"] = f"{decision.model}@{tracking.ALIAS} stays on {winner['version']}"
        except tracking.TrackingError as err:  # the alias first: a failure leaves the experiment running
            raise ExperimentError(str(err)) from None
        write(models, decision.model, None, registry)
    elif decision.action in ("promote", "rollback"):
        winner = decision.challenger if decision.action == "promote" else decision.control
        latest = max(repository.versions(Path(models) / decision.model), default=0)
        if winner["version"] == latest:
            write(models, decision.model, None)  # the latest answers without an experiment
        else:
            doc = {k: v for k, v in experiment.items() if k != "mirror"}
            doc["variants"] = [{"name": winner["name"], "version": winner["version"], "weight": 100}]
            write(models, decision.model, doc)
        if decision.action == "promote" and os.environ.get("MLFLOW_TRACKING_URI"):
            decision.figures["registry"] = _move_alias(decision.model, winner["version"])
    else:
        return
    decision.applied = True


def _move_alias(name: str, local_version: int) -> str:
    """Point the champion alias at the registered version published as local_version."""
    try:
        import mlflow

        from train import tracking

        found = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
        for mv in found:
            if mv.tags.get("skl2go.local_version") == str(local_version):
                tracking.set_alias(name, int(mv.version))
                return f"{name}@{tracking.ALIAS} -> {mv.version}"
        return f"no registered version of {name} is local version {local_version}; alias not moved"
    except Exception as err:  # noqa: BLE001 - the registry's fault never undoes the decision
        return f"alias not moved: {err}"


def record(models: str | Path, decision: Decision) -> str:
    """The decision as one JSON line, appended to models/<name>/decisions.jsonl."""
    line = json.dumps(asdict(decision), default=str)
    (Path(models) / decision.model).mkdir(parents=True, exist_ok=True)  # with the registry it may not exist
    with open(Path(models) / decision.model / DECISIONS_FILE, "a") as f:
        f.write(line + "\n")
    return line
