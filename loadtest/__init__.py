"""Load tests and benchmarks: held-out trips as requests, the sklearn baseline
server (Flask + gunicorn), the Locust user, and the `make bench` runner.

Nothing here is part of the product: it measures it.
"""
