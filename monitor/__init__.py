"""The monitor: the replicas' inference log against each version's reference
data (drift, data and model quality), its figures in PostgreSQL and as
Prometheus gauges, and the retraining loop (docs/monitoring.md)."""
