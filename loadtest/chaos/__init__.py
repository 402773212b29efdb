"""Faults under load: the chaos run (python -m loadtest.chaos, make chaos) and the
helpers the tests share with it."""
