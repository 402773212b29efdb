"""A new version of the largest forest published while requests stream in
(loadtest/swap.py, the bench's hot-reload figure): no request fails, and
every answer comes from the old version until the new one is ready. Speed
is never asserted here; BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import shutil

from loadtest import samples, swap
from topology import running
from train import repository

FOREST = "random_forest"


def test_a_version_swap_under_load_fails_no_request_and_answers_old_until_new(every_family, tmp_path):
    models = tmp_path / "models"
    latest = repository.latest_version(every_family.models, every_family.names[FOREST])
    shutil.copytree(latest, models / FOREST / latest.name)
    bodies = samples.request_bodies(samples.held_out_features(every_family.build / FOREST), 1, 200)

    # One replica: its answers switch once, so each client's sequence is old... then new...
    with running(models, tmp_path / "run", replicas=1) as stack:
        result = swap.swap(stack, models, FOREST, bodies, before=1.0, after=1.0, clients=2)
        assert stack.served_versions(FOREST) == [[result["new_version"]]]

    old, new = result["old_version"], result["new_version"]
    answers = result["answers"]
    assert new == old + 1
    assert [a for a in answers if a.error] == []
    assert {a.version for a in answers} == {old, new}
    # nothing answers with the new version before it is published, and
    # everything sent once the replica reports it ready gets it
    assert all(a.sent >= result["published_at"] for a in answers if a.version == new)
    assert all(a.version == new for a in answers if a.sent >= result["ready_at"])
    assert any(a.version == old for a in answers if a.sent < result["published_at"])
    for number in range(result["clients"]):
        versions = [a.version for a in answers if a.client == number]
        assert versions == sorted(versions), f"client {number} got the old version after the new one"
    assert all(s > 0 for s in result["load_seconds"])  # skl2go_model_load_seconds of the new version
