"""The shadow bench's arithmetic (loadtest/shadow.py) without a server: the
mirror's effect is on minus off within a pair, the noise off minus off."""

from __future__ import annotations

import pytest

from loadtest import shadow


def round_(mirror: str, p50: float, p95: float, p99: float) -> dict:
    return {"mirror": mirror, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


@pytest.mark.parametrize("pairs, p, effect, noise, median, spread", [
    # (off, on), (on, off), (off, off): on−off whichever comes first.
    ([(round_("off", 1, 2, 3), round_("on", 1, 2, 4)),
      (round_("on", 1, 2, 5), round_("off", 1, 2, 3)),
      (round_("off", 1, 2, 3), round_("off", 1, 2, 2.5))],
     "p99", [1.0, 2.0], [-0.5], 1.5, 0.5),
    ([(round_("off", 1, 2, 3), round_("on", 1.25, 2, 3)),
      (round_("off", 1, 2, 3), round_("off", 1.5, 2, 3)),
      (round_("off", 1, 2, 3), round_("off", 0.75, 2, 3))],
     "p50", [0.25], [0.5, -0.25], 0.25, 0.5),
    ([(round_("off", 1, 2, 3), round_("off", 1, 2, 3))], "p95", [], [0.0], None, 0.0),
])
def test_summarize(pairs, p, effect, noise, median, spread):
    got = shadow.summarize(pairs)[p]
    assert got["on_minus_off_ms"] == effect
    assert got["off_minus_off_ms"] == noise
    assert got["median_effect_ms"] == median
    assert got["noise_ms"] == spread


@pytest.mark.parametrize("mirror, has_mirror", [(True, True), (False, False)])
def test_experiment_sends_every_request_to_the_control(mirror, has_mirror):
    e = shadow.experiment(mirror)
    assert e["variants"] == [{"name": "control", "version": shadow.CONTROL_VERSION, "weight": 1}]
    assert ("mirror" in e) == has_mirror
    assert e["id"] != shadow.experiment(not mirror)["id"]  # each replica shows which one it runs
