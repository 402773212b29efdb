"""Experiments: decide an A/B experiment on a model from its inference log.

models/<name>/experiment.json splits the unpinned requests between versions
(docs/experiments.md); `python -m experiments decide NAME` reads the
outcomes the inference log joined with the ground truth, and shifts weight,
promotes or rolls back.
"""
