"""The chaos run's load: loadtest/locustfile.py's PredictUser (held-out
trips, every answer checked, model versions counted; its options and
--summary-file come with it), plus a count of answers by HTTP status
(0: no answer) written at the end to --status-file.

    python -m locust -f verify/chaos/locustfile.py --headless -u 8 -r 8 --user-rate 20 \\
        --host http://127.0.0.1:8080 --summary-file s.json --status-file st.json PredictUser
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from locust import events

from loadtest.locustfile import PredictUser  # noqa: F401  (the users Locust runs)


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--status-file", default="", env_var="CHAOS_STATUS_FILE",
                        help="write the count of answers by HTTP status here at the end")


@events.init.add_listener
def _count_statuses(environment, **_kwargs) -> None:
    environment.chaos_statuses = Counter()

    def on_request(response=None, **_kw) -> None:
        environment.chaos_statuses[getattr(response, "status_code", None) or 0] += 1

    environment.events.request.add_listener(on_request)


@events.quitting.add_listener
def _write_statuses(environment, **_kwargs) -> None:
    path = environment.parsed_options.status_file
    if path:
        Path(path).write_text(json.dumps({str(k): v for k, v in sorted(environment.chaos_statuses.items())}) + "\n")
