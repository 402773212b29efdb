"""Prometheus metrics of the replicas: requests through nginx move exactly the
counters they should, for both protocols, and the Grafana dashboard queries
only series and labels the replicas expose.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pandas as pd
import requests

from conftest import ROOT
from train import data

DASHBOARD = ROOT / "serve-go" / "grafana" / "skl2go-dashboard.json"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(replica: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """A replica's metric families (name -> type) and samples."""
    text = requests.get(f"{replica}/metrics", timeout=10).text
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            name, labels, value = SAMPLE.match(line).groups()
            samples.append((name, dict(LABEL.findall(labels or "")), float(value)))
    return types, samples


def totals(topology, name: str, *labels: str) -> dict[tuple, float]:
    """The series `name` summed over the replicas, keyed by the given labels."""
    out: dict[tuple, float] = defaultdict(float)
    for replica in topology.replicas:
        for sample, values, value in scrape(replica)[1]:
            if sample == name:
                out[tuple(values.get(label, "") for label in labels)] += value
    return out


def test_requests_through_nginx_move_the_counters_they_should(topology, repository):
    rows = pd.read_parquet(repository.build / "trip_duration" / "validation.parquet").drop(columns=[data.TARGET])
    names = ["skl2go_inference_request_success_total", "skl2go_inference_count_total",
             "skl2go_inference_request_failure_total", "skl2go_inference_exec_count_total"]
    keys = [("model", "protocol"), ("model", "protocol"), ("model", "protocol", "reason"), ("model",)]
    before = [totals(topology, name, *labels) for name, labels in zip(names, keys)]

    for start in range(0, 15, 5):  # 3 v1 requests of 5 rows
        body = {"instances": rows.iloc[start:start + 5].to_dict(orient="records")}
        assert requests.post(f"{topology.url}/v1/models/trip_duration:predict", json=body, timeout=10).status_code == 200
    metadata = requests.get(f"{topology.url}/v2/models/trip_duration", timeout=10).json()
    for start in range(0, 14, 7):  # 2 v2 requests of 7 rows
        batch = rows.iloc[start:start + 7]
        body = {"inputs": [{"name": spec["name"], "datatype": spec["datatype"], "shape": [len(batch), 1],
                            "data": batch[spec["name"]].tolist()} for spec in metadata["inputs"]]}
        assert requests.post(f"{topology.url}/v2/models/trip_duration/infer", json=body, timeout=10).status_code == 200
    bad = requests.post(f"{topology.url}/v2/models/trip_duration/infer", json={"inputs": []}, timeout=10)
    assert bad.status_code == 400

    after = [totals(topology, name, *labels) for name, labels in zip(names, keys)]
    delta = [{key: a[key] - b.get(key, 0.0) for key in a if a[key] != b.get(key, 0.0)} for a, b in zip(after, before)]
    assert delta == [
        {("trip_duration", "v1"): 3, ("trip_duration", "v2"): 2},
        {("trip_duration", "v1"): 15, ("trip_duration", "v2"): 14},
        {("trip_duration", "v2", "invalid"): 1},
        {("trip_duration",): 5},
    ]


def test_dashboard_queries_only_exposed_series_and_labels(topology):
    requests.post(f"{topology.url}/v1/models/trip_duration:predict", json={"instances": []}, timeout=10)  # a failure series
    types, samples = scrape(topology.replicas[0])
    labels_of: dict[str, set[str]] = {}
    for name, labels, _ in samples:
        labels_of.setdefault(name, set()).update(labels)
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"], "no panels"
    checked = 0
    for panel in dashboard["panels"]:
        if panel["title"].startswith("Monitor:"):
            continue  # the monitor's exporter and database: tests/system/test_monitor.py
        for target in panel["targets"]:
            expr = target["expr"]
            series = set(re.findall(r"\b((?:skl2go|go|process)_[a-z_]+)\b", expr))
            assert series, f"{panel['title']}: no series in {expr}"
            grouped = {label.strip() for clause in re.findall(r"by \(([^)]*)\)", expr) for label in clause.split(",")}
            for name in series:
                family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
                assert family in types, f"{panel['title']}: {name} is not exposed by the replicas"
                assert name in labels_of, f"{panel['title']}: {name} has no samples"
                missing = grouped - labels_of[name]
                assert not missing, f"{panel['title']}: {name} has no label(s) {missing}"
                checked += 1
    assert checked >= 10
