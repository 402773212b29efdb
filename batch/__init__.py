"""Batch scoring: TLC trip files scored with a published model version, parquet to parquet.

    python -m batch score --data a.parquet b.parquet --out scored.parquet --name trip_duration

The same features (train/features.py), graph and ONNX Runtime as the Go
server, so a trip gets the server's answer bit for bit. Two engines: local
(local.py, one machine, streaming by row group) and Spark (spark.py).
"""
