"""python -m topology up|down|status|rollout|start-replica N

    up               start the stack, or converge a running one to the settings
                     (see topology/stack.py): same settings change nothing
    down             stop what `up` started (nginx, then the replicas), and the
                     stream consumers (topology/stream.py)
    status           what runs from STATE
    rollout          replace the replicas one at a time, no request lost
    start-replica N  start replica N (1-based) again where it was, wait until ready
    keys add|revoke|list FILE …   manage an API key file (topology/keys.py)

Settings come from the environment (topology/settings.py lists them);
rollout and start-replica reuse those `up` saved in $STATE/topology.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import keys, stack, stream
from .nginx import NginxError
from .settings import Settings, SettingsError

USAGE = "usage: python -m topology up|down|status|rollout|start-replica N"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    state = Path(os.environ.get("STATE") or "run").resolve()
    try:
        match args:
            case ["up"]:
                stack.up(Settings.from_env())
            case ["down"]:
                stream.stop(state)  # each finishes its batch and commits
                stack.down(state)
            case ["status"]:
                stack.status(state)
            case ["rollout"]:
                stack.rollout(state)
            case ["start-replica", slot]:
                stack.start_replica(state, slot)
            case ["keys", *rest]:
                return keys.main(rest)
            case ["-h" | "--help"]:
                print(__doc__)
            case _:
                print(USAGE, file=sys.stderr)
                return 2
    except (keys.KeyFileError, stack.TopologyError, SettingsError, NginxError, TimeoutError) as exc:
        print(f"[topology] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
