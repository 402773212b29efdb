"""The short form of `make chaos`: every scenario under a paced, checked load
(skl2go-load) through nginx at a fraction of the capacity measured at the
start, with its own topology and model repository; no request may be lost
and no answer may be a 5xx. (`make chaos` runs the full form.)
"""

from __future__ import annotations

import json
import subprocess
import sys

from verify.chaos.run import SCENARIOS
from topology import ROOT


def test_short_chaos_run_loses_no_request_in_any_scenario(repository, tmp_path, capsys):
    done = subprocess.run([sys.executable, "-m", "verify.chaos", "--short", "--out", str(tmp_path / "reports"),
                           "--state", str(tmp_path / "state"), "--build", str(repository.build),
                           "--models", str(repository.models)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    with capsys.disabled():
        print("\n" + "\n".join(line for line in done.stdout.splitlines() if line.startswith("[chaos]")))
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    report = json.loads((tmp_path / "reports" / "chaos.json").read_text())
    assert list(report) == ["load", "scenarios"]
    load = report["load"]
    assert load["capacity"]["rps"] > 0 and load["capacity"]["failures"] == 0
    assert load["rate"] == round(0.05 * load["capacity"]["rps"])  # --short: 5% of the capacity measured
    assert [s["scenario"] for s in report["scenarios"]] == [name for name, _ in SCENARIOS] == [
        "kill_replica", "sigterm_replica", "grpc_kill_replica", "rollout", "make_up_again", "scale_2_3_2",
        "publish_good_version", "publish_corrupt_version", "experiment_changed", "shadow_overloaded",
        "fuzzed_bodies", "slow_client"]
    for s in report["scenarios"]:
        assert list(s) == ["scenario", "requests", "failures", "status_5xx", "versions_served", "passed", "load"]
        assert s["requests"] > 0 and s["failures"] == 0 and s["status_5xx"] == 0 and s["passed"] is True, s
        assert sum(s["versions_served"].values()) == s["requests"]
        assert s["load"]["rate"] == load["rate"]
    by_name = {s["scenario"]: s for s in report["scenarios"]}
    assert set(by_name["publish_good_version"]["versions_served"]) == {"1", "2"}  # the swap happened under load
    assert set(by_name["publish_corrupt_version"]["versions_served"]) == {"2"}  # the broken 3 never served
    markdown = (tmp_path / "reports" / "chaos.md").read_text()
    assert "| kill_replica |" in markdown and "- [ ]" not in markdown
