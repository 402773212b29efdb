"""make bench-stream: the Go stream consumer (skl2go-stream) against the
Python baseline (loadtest/stream_baseline.py: kafka-python + sklearn), on
the same broker and the same cores.

For each consumer, on fresh topics:
  - throughput: a backlog of --events ride events (1 in 97 malformed) is
    produced first, then the consumer starts; sustained events/s is the
    backlog over the time from its first output record to its last;
  - latency: the consumer runs while events are produced at --rate per
    second for --seconds; end-to-end latency per event is its output
    record's timestamp minus its input record's (both set by the clients
    when they produce, on this machine's clock).

    python -m loadtest.stream_bench --bootstrap 127.0.0.1:9092 --models models --name trip_duration
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer

from loadtest import rides, samples
from topology import ROOT, free_ports, stream


def log(message: str) -> None:
    print(f"[bench-stream] {message}", flush=True)


class Consumer:
    """Start and stop one consumer of a model on given topics."""

    def __init__(self, kind: str, args: argparse.Namespace, state: Path):
        self.kind, self.args, self.state = kind, args, state
        self.process: subprocess.Popen | None = None

    def start(self, topic: str) -> None:
        topics = ["--input", topic, "--output", topic + ".out", "--dead-letter", topic + ".dlq"]
        if self.kind == "go":
            self.metrics = f"127.0.0.1:{free_ports(1)}"
            stream.start(self.state, self.args.name, ["--brokers", self.args.bootstrap, "--models", str(self.args.models),
                                                            "--group", topic + "-group", *topics], self.metrics)
        else:
            log_file = open(self.state / "logs" / "stream-baseline.log", "ab")
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loadtest.stream_baseline", "--bootstrap", self.args.bootstrap, "--models",
                 str(self.args.models), "--name", self.args.name, "--group", topic + "-group", *topics],
                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.kind == "go":
            stream.stop(self.state, self.args.name)
        elif self.process:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_counter: dict[str, KafkaConsumer] = {}


def done_count(bootstrap: str, topic: str) -> int:
    """Output and dead-letter records so far (one client kept: polling must
    not load the cores the consumers are measured on)."""
    if bootstrap not in _counter:
        _counter[bootstrap] = KafkaConsumer(bootstrap_servers=bootstrap)
    consumer = _counter[bootstrap]
    return rides.count(bootstrap, topic + ".out", consumer) + rides.count(bootstrap, topic + ".dlq", consumer)


def throughput(consumer: Consumer, events: list[rides.Ride], topic: str, timeout: float) -> dict:
    bootstrap = consumer.args.bootstrap
    rides.create_topics(bootstrap, [topic, topic + ".out", topic + ".dlq"])
    rides.produce(bootstrap, topic, events)
    consumer.start(topic)
    try:
        deadline = time.monotonic() + timeout
        first = None
        while (n := done_count(bootstrap, topic)) < len(events):
            if first is None and n > 0:
                first = (time.monotonic(), n)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{consumer.kind}: {n} of {len(events)} events done after {timeout:g}s")
            time.sleep(0.1)
        end = time.monotonic()
    finally:
        consumer.stop()
    if first is None:  # everything within one poll interval
        first = (end - 0.05, 0)
    rate = (len(events) - first[1]) / (end - first[0])
    log(f"{consumer.kind}: {len(events):,} events, {rate:,.0f} events/s sustained")
    return {"consumer": consumer.kind, "events": len(events), "events_per_s": rate}


def latency(consumer: Consumer, events: list[rides.Ride], topic: str, rate: float) -> dict:
    bootstrap = consumer.args.bootstrap
    rides.create_topics(bootstrap, [topic, topic + ".out", topic + ".dlq"])
    consumer.start(topic)
    try:
        # One warm-up event answered first: the group joined and the model loaded before the clock starts.
        warm = rides.make_rides([events[0].instance], 1, first=len(events))
        rides.produce(bootstrap, topic, warm)
        deadline = time.monotonic() + 120
        while done_count(bootstrap, topic) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        rides.produce(bootstrap, topic, events, rate=rate)
        while done_count(bootstrap, topic) < len(events) + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        consumer.stop()
    sent = {r.key: r.timestamp for r in rides.read(bootstrap, topic, lambda recs: len(recs) >= len(events) + 1)}
    valid = sum(r.instance is not None for r in events)
    out = rides.read(bootstrap, topic + ".out", lambda recs: len(recs) >= valid + 1)
    lat = sorted(r.timestamp - sent[r.key] for r in out if r.key != warm[0].ride_id.encode())
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    log(f"{consumer.kind}: {rate:,.0f} events/s offered, end-to-end p50 {p(0.5)} ms, p99 {p(0.99)} ms, max {lat[-1]} ms")
    return {"consumer": consumer.kind, "rate": rate, "events": len(out), "p50_ms": p(0.5), "p99_ms": p(0.99), "max_ms": lat[-1]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.stream_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--name", default="trip_duration")
    parser.add_argument("--events", type=int, default=600_000, help="backlog for the Go consumer")
    parser.add_argument("--python-events", type=int, default=30_000, help="backlog for the Python baseline")
    parser.add_argument("--rate", type=float, default=500, help="events/s offered in the latency runs")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--consumers", default="python,go", help="which to run: python, go or both")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    state = ROOT / "build" / "bench-stream"
    (state / "logs").mkdir(parents=True, exist_ok=True)
    instances = samples.instances(samples.held_out_features(ROOT / "build" / args.name).head(5000))
    stamp = time.strftime("%Y%m%d%H%M%S")
    results = {"throughput": [], "latency": [], "cores": os.cpu_count(), "bootstrap": args.bootstrap}
    steady = rides.make_rides(instances, int(args.rate * args.seconds), 97)
    for kind, n in (("python", args.python_events), ("go", args.events)):
        if kind not in args.consumers.split(","):
            continue
        consumer = Consumer(kind, args, state)
        results["throughput"].append(throughput(consumer, rides.make_rides(instances, n, 97), f"bench-{stamp}-{kind}-tp", 600))
        results["latency"].append(latency(consumer, steady, f"bench-{stamp}-{kind}-lat", args.rate))
    rates = {r["consumer"]: r["events_per_s"] for r in results["throughput"]}
    if len(rates) == 2:
        results["speedup"] = rates["go"] / rates["python"]
        log(f"Go / Python: {results['speedup']:.1f}x events/s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream-bench.json").write_text(json.dumps(results, indent=2))
    log(f"wrote {args.out / 'stream-bench.json'}")


if __name__ == "__main__":
    main()
