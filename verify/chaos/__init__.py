"""Faults under load: the chaos run (python -m verify.chaos, make chaos) and the
helpers the tests share with it."""
