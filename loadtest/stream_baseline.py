"""The Python baseline of the stream consumer: kafka-python and the fitted
sklearn pipeline (pipeline.joblib) doing skl2go-stream's job, as a data
scientist would write it. It reads ride events from a topic in a consumer
group, validates them with the sklearn baseline server's checks
(loadtest/baseline.py), predicts each poll as one DataFrame, produces
{ride_id, prediction, model, version, variant} per event (unscorable events
to the dead-letter topic with the error in a header), waits for the acks and
only then commits the offsets: the same at-least-once contract.

    python -m loadtest.stream_baseline --models models --name trip_duration --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings

from kafka import KafkaConsumer, KafkaProducer

from loadtest.baseline import Served, _not_json, _object, _row_error, decode_instances, load_latest, predictions


def score(model: Served, values: list[bytes]) -> list[tuple[bytes | None, str | None]]:
    """(prediction record, None) or (None, error) per event, in order."""
    results: list[tuple[bytes | None, str | None]] = [(None, None)] * len(values)
    rows, ids, where = [], [], []
    for i, value in enumerate(values):
        try:
            event = json.loads(value, parse_constant=_not_json, object_pairs_hook=_object)
        except (ValueError, RecursionError) as exc:
            results[i] = (None, f"malformed JSON: {exc}")
            continue
        if not isinstance(event, dict):
            results[i] = (None, "event: expected an object")
            continue
        ride_id = event.pop("ride_id", None)
        if not isinstance(ride_id, (str, int)) or isinstance(ride_id, bool) or ride_id == "":
            results[i] = (None, "event.ride_id: missing or not a string or an integer")
            continue
        rows.append(event)
        ids.append(ride_id)
        where.append(i)
    if not rows:
        return results
    # Each event's fields checked as the sklearn HTTP baseline checks an
    # instance; the good ones become one DataFrame.
    good = []
    for row, ride_id, i in zip(rows, ids, where):
        error = _row_error(model, 0, row)
        if error is None:
            good.append((row, ride_id, i))
        else:
            results[i] = (None, error.message)
    if not good:
        return results
    rows, ids, where = map(list, zip(*good))
    frame = decode_instances(model, rows)
    for ride_id, i, prediction in zip(ids, where, predictions(model, frame)):
        results[i] = (json.dumps({"ride_id": ride_id, "prediction": prediction, "model": model.name,
                                  "version": model.version, "variant": None}, separators=(",", ":")).encode(), None)
    return results


def run(args: argparse.Namespace) -> None:
    model = load_latest(args.models)[args.name]
    consumer = KafkaConsumer(args.input, bootstrap_servers=args.bootstrap, group_id=args.group or f"baseline-{args.name}",
                             enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=args.max_poll_records)
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(f"[stream-baseline] {model.name} version {model.version}: {args.input} -> {args.output}", flush=True)
    while not stopping:
        polled = consumer.poll(timeout_ms=100)
        records = [r for batch in polled.values() for r in batch]
        if not records:
            continue
        futures = []
        for record, (value, error) in zip(records, score(model, [r.value for r in records])):
            if error is None:
                futures.append(producer.send(args.output, key=record.key, value=value))
            else:
                futures.append(producer.send(args.dead_letter or args.input + ".dlq", key=record.key, value=record.value,
                                             headers=[("skl2go-error", error.encode())]))
        producer.flush()
        for future in futures:
            future.get()  # raises if a record was not acknowledged: nothing is committed then
        consumer.commit()
    consumer.close()
    producer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.stream_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--name", default="trip_duration")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--input", default="rides")
    parser.add_argument("--output", default="predictions")
    parser.add_argument("--dead-letter")
    parser.add_argument("--group")
    parser.add_argument("--max-poll-records", type=int, default=1000)
    warnings.filterwarnings("ignore", message="Found unknown categories")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
