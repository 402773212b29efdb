"""Load tests and benchmarks: held-out trips as requests, the sklearn baseline
server (Flask + gunicorn), the Locust users, wrk's script, and the `make
bench` runner and its report.

Nothing here is part of the product: it measures it.
"""
