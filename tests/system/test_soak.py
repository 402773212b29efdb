"""A short form of `make soak`: its own topology under a paced, checked load
at a fraction of the capacity measured at the start, each replica's and
nginx's memory sampled; no request may fail and no process restart.
"""

from __future__ import annotations

import json
import subprocess
import sys

from topology import ROOT


def test_short_soak_answers_every_request_and_samples_every_process(repository, tmp_path):
    done = subprocess.run([sys.executable, "-m", "verify.soak", "--minutes", "0.5", "--fraction", "0.1",
                           "--interval", "1", "--capacity-seconds", "2", "--out", str(tmp_path / "reports"),
                           "--state", str(tmp_path / "state"), "--build", str(repository.build),
                           "--models", str(repository.models)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "reports" / "soak.json").read_text())
    summary = {k: v for k, v in report.items() if k not in ("samples", "load")}
    assert report["errors"] == 0 and report["requests"] > 0 and not report["restarted"], summary
    assert report["load"]["errors"] == {} and set(report["load"]["versions"]) == {"1"}, report["load"]
    assert report["requests"] == report["load"]["ok"] == sum(report["load"]["versions"].values())
    assert report["rate"] == round(0.1 * report["capacity"]["rps"]) and report["capacity"]["failures"] == 0
    names = set(report["processes"])
    assert {"replica-1", "replica-2", "nginx-master", "nginx-worker-1", "nginx-worker-2"} <= names, names
    assert len(report["samples"]) >= 20
    for name, figures in report["processes"].items():
        assert not figures["exited"] and figures["samples"] == len(report["samples"]), (name, figures)
        assert 0 < figures["start_mib"] <= figures["max_mib"], (name, figures)
    assert all(f["steady"] for f in report["processes"].values()), report["processes"]
    assert report["passed"] and done.returncode == 0, done.stderr[-2000:]
    markdown = (tmp_path / "reports" / "soak.md").read_text()
    assert "| replica-1 |" in markdown and "errors: 0" in markdown
