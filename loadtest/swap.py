"""A version swap under a steady stream of requests: the bench's hot-reload
figure and the system test's check that a swap never stalls or fails one.

    swap(stack, models, "random_forest", bodies)

Clients send single-row predicts through nginx back to back, each on its
own keep-alive connection, and record every answer (when sent, how long it
took, the version that answered, or the error). Meanwhile the model's
latest version is published again as the next version, the way
`python -m train export` publishes (train/repository.py: written aside,
renamed into place), and the replicas are sent SIGHUP, as an operator
does, instead of waiting for their next poll. The swap is over when every
replica reports the new version as the one it answers with
(skl2go_model_latest_version); the replicas' own load time is
skl2go_model_load_seconds.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtest import samples
from topology import Topology, wait_until
from train import repository

REQUEST_TIMEOUT = 30.0  # seconds, per request


@dataclass
class Answer:
    client: int
    sent: float  # time.monotonic() when sent
    ms: float  # until the whole answer was read
    version: int  # 0 on failure
    error: str  # "" when answered well


def republish(models: Path, name: str) -> Path:
    """Publish the latest version's files again as the next version, as
    export publishes a new one; returns the new version's directory."""
    latest = repository.latest_version(models, name)
    metadata = repository.load_metadata(latest)
    metadata.pop("version", None)
    files = {p.name: p for p in latest.iterdir() if p.is_file() and p.name != repository.METADATA_FILE}
    return repository.publish(models / name, files, metadata)


def client(url: str, model: str, bodies: list[bytes], number: int, stop: threading.Event, deadline: float,
           answers: list[Answer]) -> None:
    """Send predicts one after another until stop is set (or the deadline passes)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
    path = f"/v1/models/{model}:predict"
    i = number
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            body = bodies[i % len(bodies)]
            i += 1
            sent = time.monotonic()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                content = resp.read()
                if resp.status != 200:
                    version, error = 0, f"{resp.status}: {samples.error_text(content)}"
                else:
                    version, error = samples.check_prediction(content, 1, model, 0)
            except (OSError, http.client.HTTPException) as exc:
                version, error = 0, f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
            answers.append(Answer(number, sent, 1000 * (time.monotonic() - sent), version, error))
    finally:
        conn.close()


def latency(answers: list[Answer]) -> dict:
    """Requests, failures and latency figures of some answers."""
    ms = np.array([a.ms for a in answers]) if answers else np.array([0.0])
    return {"requests": len(answers), "failures": sum(1 for a in answers if a.error),
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def swap(stack: Topology, models: Path, model: str, bodies: list[bytes], before: float = 3.0, after: float = 2.0,
         clients: int = 2, timeout: float = 120.0) -> dict:
    """Stream requests for `before` seconds, publish the next version and
    signal the replicas, wait until every replica answers with it, stream
    `after` seconds more. Returns the figures and every answer."""
    old = int(repository.latest_version(models, model).name)
    answers: list[Answer] = []
    stop = threading.Event()
    deadline = time.monotonic() + before + timeout + after + 30
    threads = [threading.Thread(target=client, args=(stack.url, model, bodies, n, stop, deadline, answers), daemon=True)
               for n in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(before)
        published_at = time.monotonic()
        new = int(republish(models, model).name)
        stack.reload()  # now, not at the next poll

        def serving_new() -> bool:
            return all(stack.metric(n, "skl2go_model_latest_version", f'model="{model}"') == new
                       for n in range(1, len(stack.replicas) + 1))

        wait_until(f"every replica serving {model} version {new}", serving_new, timeout, interval=0.01)
        ready_at = time.monotonic()
        time.sleep(after)
    finally:
        stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT + 5)
    answers.sort(key=lambda a: a.sent)
    first_new = next((a.sent + a.ms / 1000 for a in answers if a.version == new), None)
    return {
        "model": model, "old_version": old, "new_version": new, "clients": clients,
        "publish_to_ready_s": ready_at - published_at,
        "publish_to_first_new_answer_s": None if first_new is None else first_new - published_at,
        "load_seconds": [stack.metric(n, "skl2go_model_load_seconds", f'model="{model}"')
                         for n in range(1, len(stack.replicas) + 1)],
        "before": latency([a for a in answers if published_at - before <= a.sent < published_at]),
        "during": latency([a for a in answers if published_at <= a.sent < ready_at]),
        "after": latency([a for a in answers if a.sent >= ready_at]),
        "versions": {str(v): sum(1 for a in answers if a.version == v) for v in sorted({a.version for a in answers})},
        "published_at": published_at, "ready_at": ready_at,
        "answers": answers,
    }
