"""The OpenAPI document the server serves describes what it does: schemathesis
generates requests from it (its examples, boundary cases, then random data,
valid and invalid) against the live topology through nginx, and every answer
must be documented: no 5xx, documented status codes, content types, headers
and body schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys

import requests
import yaml

from conftest import ROOT

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance"]
MAX_EXAMPLES = 30  # per operation and phase: about 800 requests, ~10 s
SEED = 2026  # fixed, so a failure reproduces with the command printed


def test_openapi_document_is_served_through_nginx(topology):
    answer = requests.get(f"{topology.url}/openapi.yaml", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/yaml"
    assert answer.content == (ROOT / "serve-go" / "http" / "openapi.yaml").read_bytes()
    document = yaml.safe_load(answer.content)
    assert document["openapi"].startswith("3.")
    assert {"/v1/models/{name}:predict", "/v2/models/{name}/infer", "/v2/health/ready"} <= set(document["paths"])


def test_schemathesis_finds_no_undocumented_answer(topology, tmp_path, capsys):
    report = tmp_path / "schemathesis.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{topology.url}/openapi.yaml", "--url", topology.url,
               "--checks", ",".join(CHECKS), "--phases", "examples,coverage,fuzzing",
               "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "2",
               "--request-timeout", "10", "--report", "json", "--report-json-path", str(report)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert report.exists(), f"schemathesis wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(report.read_text())
    with capsys.disabled():
        print(f"\nschemathesis: {result['test_cases']['generated']} requests over {result['operations']['tested']} "
              f"operations through nginx in {result['running_time']:.1f}s, "
              f"{result['test_cases']['with_failures']} with failures (checks: {', '.join(CHECKS)})")
    assert run.returncode == 0 and result["exit_code"] == 0, run.stdout[-6000:]
    assert result["failures"] == [] and result["errors"] == []
    assert result["operations"]["errored"] == 0
    assert result["operations"]["tested"] >= 17  # every operation but the document itself, which it was read from
    assert result["test_cases"]["generated"] >= 17 * 10
    assert all(result["phases"][phase]["status"] == "success" for phase in ["examples", "coverage", "fuzzing"])
