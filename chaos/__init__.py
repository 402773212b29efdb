"""Faults under load: the chaos run (python -m chaos, make chaos) and the
helpers the tests share with it."""
