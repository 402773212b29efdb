"""The monitor's figures as Prometheus gauges, read from its database at
every scrape (the newest window of each model version):

    skl2go_drift_score{model,version,feature}      drift score of an input, or feature="prediction"
    skl2go_drifted{model,version,feature}          1 if that score crossed its threshold
    skl2go_missing_rate{model,version,feature}     share of rows missing the input
    skl2go_window_rows{model,version}              rows in the window
    skl2go_window_end_seconds{model,version}       the window's end (Unix time)
    skl2go_quality_rows{model,version}             rows whose actual arrived
    skl2go_quality_rmse / _mae / _accuracy{model,version}   where actuals arrived

    python -m monitor serve --db URL [--port 9190]   (loopback only)
"""

from __future__ import annotations

import time

from . import db

LABELS = ["model", "version"]


class Collector:
    """A prometheus_client collector over the monitor's database."""

    def __init__(self, url: str):
        self.url = url

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        drift = GaugeMetricFamily("skl2go_drift_score", "Drift score of an input (or the prediction) in the newest "
                                  "window, against the version's reference data", labels=LABELS + ["feature"])
        drifted = GaugeMetricFamily("skl2go_drifted", "1 if the drift score crossed its threshold",
                                    labels=LABELS + ["feature"])
        missing = GaugeMetricFamily("skl2go_missing_rate", "Share of the window's rows missing the input",
                                    labels=LABELS + ["feature"])
        rows = GaugeMetricFamily("skl2go_window_rows", "Rows in the newest window", labels=LABELS)
        end = GaugeMetricFamily("skl2go_window_end_seconds", "End of the newest window (Unix time)", labels=LABELS)
        quality = {k: GaugeMetricFamily(f"skl2go_quality_{k}", f"{k} of the window's rows whose actual arrived",
                                        labels=LABELS) for k in ("rows", "rmse", "mae", "accuracy")}
        up = GaugeMetricFamily("skl2go_monitor_db_up", "1 if the monitor's database answered this scrape")
        try:
            with db.connect(self.url) as conn:
                windows = db.latest(conn)
            up.add_metric([], 1)
        except Exception:  # a database fault is a gauge, never a failed scrape
            windows = []
            up.add_metric([], 0)
        for w in windows:
            key = [w["model"], str(w["version"])]
            for i in w["inputs"]:
                drift.add_metric(key + [i["input"]], i["drift_score"])
                drifted.add_metric(key + [i["input"]], float(i["drifted"]))
                missing.add_metric(key + [i["input"]], i["missing_rate"])
            drift.add_metric(key + ["prediction"], w["prediction_drift"])
            drifted.add_metric(key + ["prediction"], float(w["prediction_drifted"]))
            rows.add_metric(key, w["rows"])
            end.add_metric(key, w["window_end"].timestamp())
            quality["rows"].add_metric(key, w["actuals"])
            for k in ("rmse", "mae", "accuracy"):
                if w[k] is not None:
                    quality[k].add_metric(key, w[k])
        yield from (drift, drifted, missing, rows, end, *quality.values(), up)


def serve(url: str, port: int, host: str = "127.0.0.1") -> None:
    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY

    REGISTRY.register(Collector(url))
    start_http_server(port, addr=host)
    print(f"[monitor] gauges on http://{host}:{port}/metrics from {db.redact(url)}", flush=True)
    while True:
        time.sleep(3600)
