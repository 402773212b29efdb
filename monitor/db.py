"""The monitor's figures in PostgreSQL: one row per window and model version,
one per input of it. Tables are created when missing; storing a window again
(the same model, version and window end) replaces its figures, so a re-run
is harmless. docs/monitoring.md has the schema; Grafana reads these tables.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

SCHEMA = """
CREATE TABLE IF NOT EXISTS monitor_window (
    model            text        NOT NULL,
    version          integer     NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    rows             integer     NOT NULL,
    prediction_drift double precision NOT NULL,
    prediction_drifted boolean   NOT NULL,
    drifted_inputs   integer     NOT NULL,
    actuals          integer     NOT NULL,
    rmse             double precision,
    mae              double precision,
    accuracy         double precision,
    summary          jsonb       NOT NULL,
    PRIMARY KEY (model, version, window_end)
);
CREATE TABLE IF NOT EXISTS monitor_input (
    model          text        NOT NULL,
    version        integer     NOT NULL,
    window_end     timestamptz NOT NULL,
    input          text        NOT NULL,
    drift_score    double precision NOT NULL,
    drifted        boolean     NOT NULL,
    method         text        NOT NULL,
    threshold      double precision NOT NULL,
    missing_rate   double precision NOT NULL,
    out_of_range_rate double precision,
    PRIMARY KEY (model, version, window_end, input),
    FOREIGN KEY (model, version, window_end) REFERENCES monitor_window ON DELETE CASCADE
);
"""


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def connect(url: str):
    """A connection to the monitor's database (psycopg 3), the tables created if missing."""
    import psycopg

    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.OperationalError as err:
        raise RuntimeError(f"monitor database {redact(url)}: {err}".strip()) from None
    with conn.transaction():
        conn.execute(SCHEMA)
    return conn


def store(conn, summary: dict) -> None:
    """Upsert one window's figures (the report's summary), in one transaction."""
    q, w = summary["quality"], summary["window"]
    key = (summary["model"], summary["version"], w["end"])
    with conn.transaction():
        conn.execute("DELETE FROM monitor_window WHERE model = %s AND version = %s AND window_end = %s", key)
        conn.execute(
            "INSERT INTO monitor_window (model, version, window_start, window_end, rows, prediction_drift, "
            "prediction_drifted, drifted_inputs, actuals, rmse, mae, accuracy, summary) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (summary["model"], summary["version"], w["start"], w["end"], w["rows"],
             summary["prediction"]["drift_score"], summary["prediction"]["drifted"],
             len(summary["drifted_inputs"]), q["rows"], q.get("rmse"), q.get("mae"), q.get("accuracy"),
             json.dumps(summary)))
        for name, f in summary["inputs"].items():
            conn.execute(
                "INSERT INTO monitor_input (model, version, window_end, input, drift_score, drifted, method, "
                "threshold, missing_rate, out_of_range_rate) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*key, name, f["drift_score"], f["drifted"], f["method"], f["threshold"], f["missing_rate"],
                 f.get("out_of_range_rate")))


def latest(conn) -> list[dict]:
    """The newest window of every model version, with its inputs: what the
    Prometheus exporter shows."""
    rows = conn.execute(
        "SELECT DISTINCT ON (model, version) model, version, window_end, rows, prediction_drift, "
        "prediction_drifted, drifted_inputs, actuals, rmse, mae, accuracy FROM monitor_window "
        "ORDER BY model, version, window_end DESC").fetchall()
    out = []
    for model, version, end, n, pdrift, pdrifted, drifted, actuals, rmse, mae, accuracy in rows:
        inputs = conn.execute(
            "SELECT input, drift_score, drifted, missing_rate, out_of_range_rate FROM monitor_input "
            "WHERE model = %s AND version = %s AND window_end = %s ORDER BY input", (model, version, end)).fetchall()
        out.append({"model": model, "version": version, "window_end": end, "rows": n, "prediction_drift": pdrift,
                    "prediction_drifted": pdrifted, "drifted_inputs": drifted, "actuals": actuals, "rmse": rmse,
                    "mae": mae, "accuracy": accuracy,
                    "inputs": [{"input": i, "drift_score": s, "drifted": d, "missing_rate": m, "out_of_range_rate": o}
                               for i, s, d, m, o in inputs]})
    return out
