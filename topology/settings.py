"""What the running stack should be, from the environment, and the plan that
takes the stack as it is to it.

Settings (environment variables, as `make up` passes them):
  PORT=8080        nginx listens on 127.0.0.1:$PORT
  REPLICAS=2       number of Go replicas
  BASE_PORT=9001   replicas listen on 127.0.0.1 from $BASE_PORT up
  GRPC_PORT=8081   nginx's gRPC port (Open Inference Protocol, docs/grpc.md); 0 = gRPC off.
                   Off by default with AUTH (API keys cover the REST API only)
  GRPC_OFFSET=100  each replica's gRPC port is its HTTP port + GRPC_OFFSET
  MODELS=models    model repository
  SKL2GO_REGISTRY  MLflow tracking server URL (make up REGISTRY=…): the replicas serve
                   the registry's alias versions instead of MODELS, each caching them
                   in $STATE/registry/replica-N (docs/registry.md)
  STATE=run        topology.json, pid files, logs/, nginx.conf and nginx temp files
  SERVER=serve-go/bin/skl2go-server
  SKL2GO_*         server settings (flags), passed to every replica, e.g.
                   SKL2GO_POLL_INTERVAL=1s, SKL2GO_VERSIONS_KEPT=2, SKL2GO_ORT_LIB
  GOMAXPROCS       threads running Go code in each replica (default: cores / REPLICAS, at least 1)
  RATE_LIMIT       nginx rate limit per client address, e.g. 100r/s (off by default)
  RATE_BURST       requests above the rate accepted at once (default: the rate per second)
  CLIENT_TIMEOUT   nginx client header/body/send timeout (default 10s)
  FAIL_TIMEOUT     seconds nginx rests a replica after 3 failed attempts (default 5)
  MAX_CONNS        requests in flight to one replica at most; past it on every replica
                   nginx answers 503 + Retry-After itself (off by default; nginx/render.sh)
  AUTH             API key file (python -m topology keys): keys required on the API (off by default)
  INFERENCE_LOG    share of inferences each replica writes to its inference log, 0 to 1, in
                   $STATE/inference/replica-N (docs/inference-log.md; off by default)
  ACTUALS_TOKEN    file holding the bearer token of POST /v1/models/{name}/actuals (ground
                   truth, written to the inference log; off by default)
  TLS              1: HTTPS on TLS_PORT with a self-signed certificate made in $STATE/tls;
                   or set TLS_CERT and TLS_KEY to a real one's files (off by default)
  TLS_PORT         HTTPS port (default PORT + 1); plain HTTP then only redirects and answers health checks
  BENCH_LISTEN     (make bench) also let nginx answer by itself on this address:port
  READY_TIMEOUT    seconds a replica or nginx may take to become ready (default 90)
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """A setting that cannot be used, named with what is wrong with it."""


@dataclass(frozen=True)
class Settings:
    models: Path
    state: Path
    server: Path
    port: int = 8080
    replicas: int = 2
    base_port: int = 9001
    grpc_port: int = 0  # 0 = gRPC off
    grpc_offset: int = 100
    # Everything a replica's process is started with beyond its address:
    # the SKL2GO_* flags and GOMAXPROCS. A replica started with other values
    # is replaced.
    replica_env: dict[str, str] = field(default_factory=dict)
    fail_timeout: int = 5
    client_timeout: str = "10s"
    rate_limit: str = ""
    rate_burst: str = ""
    bench_listen: str = ""
    auth: str = ""  # the key file, absolute; "" = keys off
    tls_port: int = 0  # 0 = TLS off
    tls_cert: str = ""  # "" with TLS on: the self-signed one in $STATE/tls
    tls_key: str = ""
    ready_timeout: float = 90.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, cores: int | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        replicas = _positive("REPLICAS", env.get("REPLICAS", "2"))
        # Each replica gets its share of the cores: with Go's default (every
        # core in every replica) the replicas' threads spin and hand off
        # against each other and nginx (measured: BENCHMARKS.md, GOMAXPROCS).
        # A GOMAXPROCS set in the environment wins.
        cores = cores or os.cpu_count() or 1
        gomaxprocs = env.get("GOMAXPROCS") or str(max(1, cores // replicas))
        _positive("GOMAXPROCS", gomaxprocs)
        replica_env = {k: v for k, v in env.items() if k.startswith("SKL2GO_")}
        replica_env["GOMAXPROCS"] = gomaxprocs
        auth = ""
        if env.get("AUTH"):
            key_file = Path(env["AUTH"]).resolve()
            if not key_file.is_file():
                raise SettingsError(f"AUTH must be an API key file (python -m topology keys add FILE ID SCOPES), "
                                    f"got {env['AUTH']!r}: no such file")
            auth = str(key_file)
            # The replicas check the keys (GET /auth, nginx's auth_request).
            replica_env["SKL2GO_API_KEYS"] = auth
        if env.get("INFERENCE_LOG"):
            # Each replica then writes to its own $STATE/inference/replica-N (stack.spawn).
            replica_env["SKL2GO_INFERENCE_LOG_RATE"] = _rate("INFERENCE_LOG", env["INFERENCE_LOG"])
        if env.get("ACTUALS_TOKEN"):
            token_file = Path(env["ACTUALS_TOKEN"]).resolve()
            if not token_file.is_file():
                raise SettingsError(f"ACTUALS_TOKEN must be a file holding the actuals bearer token, "
                                    f"got {env['ACTUALS_TOKEN']!r}: no such file")
            replica_env["SKL2GO_ACTUALS_TOKEN_FILE"] = str(token_file)
        port = _port("PORT", env.get("PORT", "8080"))
        tls_cert, tls_key = env.get("TLS_CERT", ""), env.get("TLS_KEY", "")
        if bool(tls_cert) != bool(tls_key):
            raise SettingsError("TLS_CERT and TLS_KEY go together: set both or neither")
        for name, f in (("TLS_CERT", tls_cert), ("TLS_KEY", tls_key)):
            if f and not Path(f).is_file():
                raise SettingsError(f"{name} must be a file, got {f!r}")
        tls_on = env.get("TLS", "") not in ("", "0") or bool(tls_cert)
        if env.get("TLS", "") not in ("", "0", "1"):
            raise SettingsError(f"TLS must be 1 or 0, got {env['TLS']!r}")
        tls_port = _port("TLS_PORT", env.get("TLS_PORT") or str(port + 1)) if tls_on else 0
        client_timeout = env.get("CLIENT_TIMEOUT") or "10s"
        if not re.fullmatch(r"[0-9]+[smh]?", client_timeout):
            raise SettingsError(f"CLIENT_TIMEOUT must look like 10s, got {client_timeout!r}")
        rate_limit = env.get("RATE_LIMIT", "")
        if rate_limit and not re.fullmatch(r"[0-9]+r/s", rate_limit):
            raise SettingsError(f"RATE_LIMIT must look like 100r/s, got {rate_limit!r}")
        rate_burst = env.get("RATE_BURST", "")
        if rate_burst and not rate_burst.isdigit():
            raise SettingsError(f"RATE_BURST must be a number of requests, got {rate_burst!r}")
        grpc_port, grpc_offset = _grpc(env, port, tls_port, bool(auth))
        bench_listen = env.get("BENCH_LISTEN", "")
        if bench_listen and not re.fullmatch(r"[0-9.]+:[0-9]+", bench_listen):
            raise SettingsError(f"BENCH_LISTEN must look like 127.0.0.1:8081, got {bench_listen!r}")
        return cls(
            models=Path(env.get("MODELS") or "models").resolve(),
            state=Path(env.get("STATE") or "run").resolve(),
            server=Path(env.get("SERVER") or "serve-go/bin/skl2go-server").resolve(),
            port=port,
            replicas=replicas,
            base_port=_port("BASE_PORT", env.get("BASE_PORT", "9001")),
            grpc_port=grpc_port,
            grpc_offset=grpc_offset,
            replica_env=dict(sorted(replica_env.items())),
            fail_timeout=_positive("FAIL_TIMEOUT", env.get("FAIL_TIMEOUT") or "5"),
            client_timeout=client_timeout,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            bench_listen=bench_listen,
            auth=auth,
            tls_port=tls_port,
            tls_cert=str(Path(tls_cert).resolve()) if tls_cert else "",
            tls_key=str(Path(tls_key).resolve()) if tls_key else "",
            ready_timeout=float(env.get("READY_TIMEOUT") or 90),
        )

    def spec(self) -> dict:
        """What a replica must have been started with to be kept: with gRPC
        on, it also listens on its port + grpc_offset."""
        spec = {"server": str(self.server), "models": str(self.models), "env": self.replica_env}
        if self.grpc_port:
            spec["grpc_offset"] = self.grpc_offset
        return spec

    def as_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, saved: dict) -> Settings:
        return cls(**{**saved, "models": Path(saved["models"]), "state": Path(saved["state"]),
                      "server": Path(saved["server"])})


def _grpc(env: dict[str, str], port: int, tls_port: int, auth: bool) -> tuple[int, int]:
    """GRPC_PORT (0: off) and GRPC_OFFSET. API keys are checked on the REST
    API only, so AUTH leaves gRPC off unless asked for, and refuses it then."""
    offset_text = env.get("GRPC_OFFSET") or "100"
    if not re.fullmatch(r"-?[1-9][0-9]*", offset_text):
        raise SettingsError(f"GRPC_OFFSET must be a non-zero integer, got {offset_text!r}")
    given = env.get("GRPC_PORT", "")
    if given == "0" or (auth and not given):
        return 0, int(offset_text)
    if auth:
        raise SettingsError("GRPC_PORT with AUTH: API keys cover the REST API only; set GRPC_PORT=0 (docs/grpc.md)")
    grpc_port = _port("GRPC_PORT", given or "8081")
    if not given and grpc_port in (port, tls_port):
        grpc_port = max(port, tls_port) + 1  # the default moves out of the way of PORT and TLS_PORT
    if grpc_port in (port, tls_port):
        raise SettingsError(f"GRPC_PORT {grpc_port} is also PORT or TLS_PORT: give each its own")
    return grpc_port, int(offset_text)


def _positive(name: str, value: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", value or ""):
        raise SettingsError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _rate(name: str, value: str) -> str:
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= 1:
        raise SettingsError(f"{name} must be a sampling rate from 0 to 1 (1: every inference), got {value!r}")
    return value


def _port(name: str, value: str) -> int:
    port = _positive(name, value)
    if port > 65535:
        raise SettingsError(f"{name} must be a port (1-65535), got {value!r}")
    return port


@dataclass(frozen=True)
class Replica:
    """One replica as the state file records it: its slot (1-based, names its
    pid and log files), its port and what it was started with."""

    slot: int
    port: int
    spec: dict

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_addr(self) -> str:
        """Its gRPC address, or "" when it serves none."""
        offset = self.spec.get("grpc_offset")
        return f"127.0.0.1:{self.port + offset}" if offset else ""


@dataclass
class Plan:
    """What converging does, in order: start the replicas that died where
    they were (`restart`), replace those started with other settings and
    add the slots not there yet (`replace`: slot -> the old replica, or None
    for a new slot), and retire the slots beyond the count."""

    keep: list[Replica] = field(default_factory=list)
    restart: list[Replica] = field(default_factory=list)
    replace: list[tuple[int, Replica | None]] = field(default_factory=list)
    retire: list[Replica] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.restart or self.replace or self.retire)


def plan(want: Settings, current: list[Replica], alive: set[int]) -> Plan:
    """Compare the replicas recorded (`current`; `alive`: the slots whose
    process runs) with `want`. A replica is kept when it was started with the
    wanted spec; one that died is started again in its place."""
    by_slot = {r.slot: r for r in current}
    p = Plan()
    for slot in range(1, want.replicas + 1):
        old = by_slot.get(slot)
        if old is not None and old.spec == want.spec():
            (p.keep if slot in alive else p.restart).append(old)
        else:
            p.replace.append((slot, old))
    p.retire = [r for r in current if r.slot > want.replicas]
    return p


def next_ports(base: int, count: int, taken: set[int], free) -> list[int]:
    """`count` ports from `base` up, skipping those `taken` (by the stack's
    own replicas) and those free(port) says are in use."""
    ports, port = [], base
    while len(ports) < count:
        if port > 65535:
            raise SettingsError(f"no free port from {base} up")
        if port not in taken and free(port):
            ports.append(port)
        port += 1
    return ports
