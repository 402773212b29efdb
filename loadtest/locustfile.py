"""Locust users for skl2go and the sklearn baseline (they speak the same API).

PredictUser posts held-out trips (see loadtest/samples.py) to
/v1/models/{name}:predict and checks every answer: status 200, one
prediction per instance, each a finite number (or a classifier's
{"label", "probabilities"} object), the model's name, and an integer
version. Anything else is a failure with a message saying what was wrong.
The versions seen in answers are counted (a hot reload shows up as two).

    locust -f loadtest/locustfile.py --headless -u 16 -r 16 -t 30s \\
        --host http://127.0.0.1:8080 --rows-per-request 100 PredictUser

Options (also environment variables):
  --model-name NAME        LOADTEST_MODEL_NAME   (trip_duration)
  --model-version V        LOADTEST_MODEL_VERSION (0: the latest, /v1/models/{name}:predict)
  --rows-per-request N     LOADTEST_ROWS         (1; e.g. 100, 1000)
  --held-out DIR           LOADTEST_HELD_OUT     (build/<name>: validation.parquet + training.json)
  --bodies N               LOADTEST_BODIES       (distinct request bodies prepared, 500)
  --user-rate R            LOADTEST_USER_RATE    (requests/s per user; 0: as fast as answers come)
  --summary-file PATH      LOADTEST_SUMMARY      (JSON at the end: requests, failures, versions seen)

GetUser sends GET --get-path (/healthz) with the same pacing: the ceilings.

A chaos harness can import the module (the users and `Tally`), or run it as
above and read --summary-file.
"""

from __future__ import annotations

import csv
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from locust.user.wait_time import constant_throughput

from loadtest import samples


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("skl2go")
    group.add_argument("--model-name", default="trip_duration", env_var="LOADTEST_MODEL_NAME",
                       help="model to call")
    group.add_argument("--model-version", type=int, default=0, env_var="LOADTEST_MODEL_VERSION",
                       help="pin a version (0: the latest)")
    group.add_argument("--rows-per-request", type=int, default=1, env_var="LOADTEST_ROWS",
                       help="instances per request (1, 100, 1000, ...)")
    group.add_argument("--held-out", default="", env_var="LOADTEST_HELD_OUT",
                       help="directory with validation.parquet and training.json (default: build/<model-name>)")
    group.add_argument("--bodies", type=int, default=500, env_var="LOADTEST_BODIES",
                       help="distinct request bodies to prepare")
    group.add_argument("--user-rate", type=float, default=0.0, env_var="LOADTEST_USER_RATE",
                       help="requests per second per user (0: no waiting)")
    group.add_argument("--get-path", default="/healthz", env_var="LOADTEST_GET_PATH",
                       help="path GetUser requests")
    group.add_argument("--summary-file", default="", env_var="LOADTEST_SUMMARY",
                       help="write requests, failures and versions seen as JSON here at the end")


@dataclass
class Tally:
    """What the users saw, per process: checked answers by outcome and
    model version, and the failure messages (first few of each kind)."""

    requests: int = 0
    failures: int = 0
    rows: int = 0
    versions: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list, repr=False)  # every request, exact
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ok(self, rows: int = 0, version: int | None = None) -> None:
        with self.lock:
            self.requests += 1
            self.rows += rows
            if version is not None:
                self.versions[version] += 1

    def failed(self, message: str) -> None:
        with self.lock:
            self.requests += 1
            self.failures += 1
            self.errors[message] += 1

    def as_dict(self) -> dict:
        latencies = sorted(self.latencies_ms)

        def percentile(p: float) -> float | None:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

        return {"requests": self.requests, "failures": self.failures, "rows": self.rows,
                "versions": {str(v): n for v, n in sorted(self.versions.items())},
                "errors": dict(self.errors.most_common(20)),
                "p50_ms": percentile(0.50), "p95_ms": percentile(0.95), "p99_ms": percentile(0.99)}


def tally(environment: Environment) -> Tally:
    """The environment's Tally (created on first use)."""
    if not hasattr(environment, "skl2go_tally"):
        environment.skl2go_tally = Tally()
    return environment.skl2go_tally


@events.init.add_listener
def _record_latencies(environment: Environment, **_kwargs) -> None:
    latencies = tally(environment).latencies_ms

    def on_request(response_time: float, **_kw) -> None:
        latencies.append(response_time)

    environment.events.request.add_listener(on_request)


@events.quitting.add_listener
def _write_final_csv(environment: Environment, **_kwargs) -> None:
    """Locust rewrites its --csv files every second while running, not at the
    end: without this, the last second of a run is missing from them."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
        with open(f"{prefix}_stats.csv", "w", newline="") as f:
            writer.requests_csv(csv.writer(f))
        with open(f"{prefix}_failures.csv", "w", newline="") as f:
            writer.failures_csv(csv.writer(f))


@events.quitting.add_listener
def _write_summary(environment: Environment, **_kwargs) -> None:
    """The tally and Locust's own totals, complete."""
    path = getattr(environment.parsed_options, "summary_file", "")
    if path:
        total = environment.stats.total
        elapsed = (total.last_request_timestamp or total.start_time) - total.start_time
        summary = {**tally(environment).as_dict(),
                   "locust": {"requests": total.num_requests, "failures": total.num_failures,
                              "elapsed_s": elapsed, "rps": total.num_requests / elapsed if elapsed > 0 else 0.0,
                              "p50_ms": total.get_response_time_percentile(0.50),
                              "p99_ms": total.get_response_time_percentile(0.99)}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(summary, indent=2) + "\n")


class PacedUser(FastHttpUser):
    """Requests back to back, or at --user-rate requests per second."""

    abstract = True

    def wait_time(self) -> float:
        rate = self.environment.parsed_options.user_rate
        return constant_throughput(rate)(self) if rate > 0 else 0.0


_bodies_lock = threading.Lock()


class PredictUser(PacedUser):
    """Posts held-out trips to the predict endpoint and checks each answer."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.name = options.model_name
        self.version = options.model_version
        self.rows = options.rows_per_request
        self.path = f"/v1/models/{self.name}" + (f"/versions/{self.version}" if self.version else "") + ":predict"
        self.label = f"predict rows={self.rows}"
        self.bodies = prepared_bodies(self.environment)
        self.tally = tally(self.environment)

    @task
    def predict(self) -> None:
        body = random.choice(self.bodies)
        with self.rest_request("POST", body) as resp:
            if resp.status_code != 200:
                message = f"HTTP {resp.status_code}: {samples.error_text(resp.content)}"
            else:
                version, message = samples.check_prediction(resp.content, self.rows, self.name, self.version)
            if message:
                resp.failure(message)
                self.tally.failed(message)
            else:
                self.tally.ok(self.rows, version)

    def rest_request(self, method: str, body: bytes):
        return self.client.request(method, self.path, data=body, name=self.label, catch_response=True,
                                   headers={"Content-Type": "application/json"})


class GetUser(PacedUser):
    """GETs --get-path (e.g. /healthz, or / on nginx's static bench server):
    the HTTP path without the model, for the ceilings."""

    @task
    def get(self) -> None:
        options = self.environment.parsed_options
        t = tally(self.environment)
        with self.client.get(options.get_path, name=f"GET {options.get_path}", catch_response=True) as resp:
            if resp.status_code == 200:
                t.ok()
            else:
                message = f"HTTP {resp.status_code}: {samples.error_text(resp.content)}"
                resp.failure(message)
                t.failed(message)


def prepared_bodies(environment: Environment) -> list[bytes]:
    """The request bodies, made once per process from the held-out rows."""
    with _bodies_lock:
        if not hasattr(environment, "skl2go_bodies"):
            options = environment.parsed_options
            held_out = options.held_out or str(Path("build") / options.model_name)
            rows = samples.held_out_features(held_out)
            environment.skl2go_bodies = samples.request_bodies(rows, options.rows_per_request, options.bodies)
        return environment.skl2go_bodies
