"""The experiment scenarios of the chaos run (run.py): models/<name>/experiment.json
started, changed and stopped under load, and an experiment's mirror
flooded until its queue drops. Both need two versions on disk: they run
after publish_good_version.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

from experiments import decide
from topology import Topology, request
from train import repository

MODEL = "trip_duration"
ROWS = [{"PULocationID": 74 + i % 50, "DOLocationID": 75, "trip_distance": 1.0 + i / 40, "pickup_hour": i % 24,
         "pickup_weekday": i % 7} for i in range(200)]
BURST = 8, 40  # threads, requests each, of len(ROWS) rows: more than one mirror worker per replica keeps up with


def write(models: Path, doc: dict | None) -> None:
    decide.write(models, MODEL, doc)


def two_versions(ctx: dict) -> tuple[int, int]:
    versions = repository.versions(ctx["models"] / MODEL)
    if len(versions) < 2:
        raise RuntimeError(f"the experiment scenarios need two versions of {MODEL}, found {versions}")
    return versions[-2], versions[-1]


def variants(topo: Topology, n: int = 8) -> set:
    body = json.dumps({"instances": ROWS[:1]}).encode()
    seen = set()
    for replica in topo.replicas:
        for _ in range(n):
            status, answer = request("POST", f"{replica}/v1/models/{MODEL}:predict", body)
            seen.add(answer.get("variant") if status == 200 else f"status {status}")
    return seen


def experiment_changed(topo: Topology, ctx: dict, out, eventually) -> None:
    old, new = two_versions(ctx)
    models = ctx["models"]
    ctx["cleanup"] = lambda: write(models, None)
    ctx["expect_versions"] = {str(old), str(new)}
    split = lambda w: {"id": "chaos", "variants": [{"name": "control", "version": new, "weight": w[0]},  # noqa: E731
                                                   {"name": "challenger", "version": old, "weight": w[1]}]}
    write(models, split((50, 50)))
    out.check(f"every replica loaded versions {old} and {new} for the experiment",
              eventually(lambda: topo.served_versions(MODEL) == [[old, new]] * len(topo.replicas), 30))
    out.check("both variants answer on every replica", eventually(lambda: variants(topo) == {"control", "challenger"}, 30))
    write(models, split((100, 0)))
    out.check("the weight change reached every replica", eventually(lambda: variants(topo) == {"control"}, 30))
    write(models, {"id": "chaos", "variants": [{"name": "control", "version": new, "weight": 1}], "sticky": "X-User"})
    write(models, None)
    out.check(f"stopped: every replica serves version {new} alone, without a variant",
              eventually(lambda: topo.served_versions(MODEL) == [[new]] * len(topo.replicas) and variants(topo) == {None}, 30))
    out.did = (f"experiment.json written under load: versions {new}/{old} at 50/50, then 100/0, then removed "
               "(each a rename into place)")


def shadow_overloaded(topo: Topology, ctx: dict, out, eventually) -> None:
    old, new = two_versions(ctx)
    models = ctx["models"]
    ctx["cleanup"] = lambda: write(models, None)
    ctx["expect_versions"] = {str(new)}
    write(models, {"id": "shadow", "variants": [{"name": "control", "version": new, "weight": 1}],
                   "mirror": {"name": "shadow", "version": old}})
    out.check("every replica runs the mirrored experiment", eventually(lambda: variants(topo) == {"control"}, 30))
    body = json.dumps({"instances": ROWS}).encode()
    status, pinned = request("POST", f"{topo.url}/v1/models/{MODEL}/versions/{new}:predict", body)
    answers: Counter = Counter()
    lock = threading.Lock()

    def burst() -> None:
        local = Counter()
        for _ in range(BURST[1]):
            status, answer = request("POST", f"{topo.url}/v1/models/{MODEL}:predict", body)
            local[(status, status == 200 and answer["predictions"] == pinned["predictions"])] += 1
        with lock:
            answers.update(local)

    threads = [threading.Thread(target=burst) for _ in range(BURST[0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replicas = range(1, len(topo.replicas) + 1)
    runs = sum(topo.metric(r, "skl2go_shadow_runs_total", 'outcome="ok"') for r in replicas)
    dropped = sum(topo.metric(r, "skl2go_shadow_dropped_total", f'model="{MODEL}"') for r in replicas)
    sent = BURST[0] * BURST[1]
    out.did = (f"mirror: version {old} shadowing {new}; a burst of {sent} requests of {len(ROWS)} rows from "
               f"{BURST[0]} threads beside the load: {runs:.0f} mirror runs, {dropped:.0f} dropped")
    out.check(f"all {sent} burst answers 200 and equal to version {new}'s pinned answer",
              status == 200 and answers == {(200, True): sent})
    out.check("the mirror ran", runs > 0)
    out.check("the mirror was overloaded: runs were dropped (SKL2GO_SHADOW_QUEUE=1)", dropped > 0)
