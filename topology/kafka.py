"""A single-node Apache Kafka broker (KRaft: broker and controller in one JVM)
on 127.0.0.1, for the stream consumer, its tests and its benchmark.

The broker is the official Kafka release, fetched from Maven Central by its
coordinates (org.apache.kafka:kafka_2.13 and kafka-tools) with Maven into
build/kafka/<version>/libs, and run with the system JDK (both installed with
apt-get when missing). Its pid, configuration, data and log live under the
state directory (STATE, default run/): run/kafka/ and run/logs/kafka.log.

    python -m topology.kafka start [--port 9092]   # converges: a healthy broker is left alone
    python -m topology.kafka status
    python -m topology.kafka stop

The Go consumers that read from it are topology/stream.py's.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from topology import processes
from topology.probe import free_ports, port_free

ROOT = Path(__file__).resolve().parents[1]
VERSION = "4.4.0"
# The broker and the tools' StorageTool (formats the KRaft metadata log), plus
# the slf4j -> log4j2 bridge the release ships so that the broker logs at all.
ARTIFACTS = [
    ("org.apache.kafka", "kafka_2.13", VERSION),
    ("org.apache.kafka", "kafka-tools", VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.5"),
]
HEAP = os.environ.get("KAFKA_HEAP", "512m")
START_TIMEOUT = 120.0


def log(message: str) -> None:
    print(f"[kafka] {message}", flush=True)


@dataclass
class Broker:
    state: Path  # the state directory (run/)
    port: int = 9092

    @property
    def dir(self) -> Path:
        return self.state / "kafka"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.state / "logs" / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The broker's pid if it runs (a live process started from our jars)."""
        return processes.alive(self.pid_file, "kafka.Kafka")

    def healthy(self) -> bool:
        """The process runs and its listener answers a Kafka ApiVersions request."""
        return self.pid() is not None and api_versions(self.port)


def api_versions(port: int, timeout: float = 2.0) -> bool:
    """True if 127.0.0.1:port answers ApiVersions v0 without an error: a
    Kafka broker that accepts requests, not just an open port."""
    client = b"skl2go"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client  # api key 18, version 0, correlation id 1
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = recv_exactly(s, 10)  # size, correlation id, error code
    except OSError:
        return False
    _, correlation, error = struct.unpack(">iih", head)
    return correlation == 1 and error == 0


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def apt_install(*packages: str) -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def java() -> str:
    """The system JDK's java (JAVA_HOME first), installed when missing."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    if not shutil.which("java"):
        apt_install("default-jre-headless")
    return shutil.which("java") or sys.exit("[kafka] error: no java after installing default-jre-headless")


def jars(build: Path = ROOT / "build" / "kafka") -> Path:
    """build/kafka/<version>/libs with the broker's jars, fetched once by
    their Maven coordinates (and their dependencies)."""
    home = build / VERSION
    libs = home / "libs"
    if (home / ".done").is_file():
        return libs
    if not shutil.which("mvn"):
        apt_install("maven")
    home.mkdir(parents=True, exist_ok=True)
    deps = "\n".join(f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
                     for g, a, v in ARTIFACTS)
    (home / "pom.xml").write_text(f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>skl2go</groupId><artifactId>kafka-broker</artifactId><version>{VERSION}</version><packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
""")
    shutil.rmtree(libs, ignore_errors=True)
    log(f"fetching Kafka {VERSION} from Maven Central into {libs}")
    subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
                    f"-DoutputDirectory={libs}", "-DincludeScope=runtime"], check=True)
    (home / ".done").touch()
    return libs


def write_config(broker: Broker) -> Path:
    """server.properties: one KRaft node, loopback only, internal topics with
    one replica. The controller's port is chosen once and kept: the formatted
    metadata log records it."""
    config = broker.dir / "server.properties"
    controller = None
    if config.is_file():
        for line in config.read_text().splitlines():
            if line.startswith("controller.quorum.bootstrap.servers="):
                controller = int(line.rsplit(":", 1)[1])
    if controller is None or controller == broker.port:
        controller = free_ports(1, avoid=[broker.port])
    config.write_text(f"""# Written by topology/kafka.py
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker.port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={broker.dir / 'data'}
num.partitions=4
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
num.network.threads=2
num.io.threads=4
log.retention.hours=24
""")
    (broker.dir / "log4j2.properties").write_text("""rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
""")
    return config


def start(broker: Broker) -> None:
    """Start the broker unless a healthy one runs; wait until it answers."""
    if broker.healthy():
        log(f"already running on {broker.bootstrap} (pid {broker.pid()})")
        return
    if (pid := broker.pid()) is not None:  # alive but not answering: still starting, or stuck
        try:
            wait_healthy(broker, pid, START_TIMEOUT)
            log(f"ready on {broker.bootstrap} (pid {pid})")
            return
        except TimeoutError:
            log(f"pid {pid} does not answer on {broker.bootstrap}: stopping it")
            stop(broker)
    if api_versions(broker.port) or not port_free(broker.port):
        sys.exit(f"[kafka] error: 127.0.0.1:{broker.port} is taken by another process (not {broker.pid_file}); "
                 "stop it or pick another KAFKA port")
    java_bin, libs = java(), jars()
    broker.dir.mkdir(parents=True, exist_ok=True)
    broker.log_file.parent.mkdir(parents=True, exist_ok=True)
    config = write_config(broker)
    classpath = f"{libs}/*"
    began = time.monotonic()
    if not (broker.dir / "data" / "meta.properties").is_file():
        cluster = "-"
        while cluster.startswith("-"):  # as Kafka's own random-uuid: an id "-…" would read as an option
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run([java_bin, "-Xmx256m", "-cp", classpath, f"-Dlog4j2.configurationFile={broker.dir / 'log4j2.properties'}",
                        "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster, "-c", str(config)],
                       check=True, stdout=subprocess.DEVNULL)
        log(f"formatted {broker.dir / 'data'} (cluster {cluster})")
    with open(broker.log_file, "ab") as out:
        process = subprocess.Popen(
            [java_bin, f"-Xms{HEAP}", f"-Xmx{HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={broker.dir / 'log4j2.properties'}", f"-Dkafka.logs.dir={broker.log_file.parent}",
             "-cp", classpath, "kafka.Kafka", str(config)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    broker.pid_file.write_text(str(process.pid))
    try:
        wait_healthy(broker, process.pid, START_TIMEOUT, alive=lambda: process.poll() is None)
    except (TimeoutError, RuntimeError) as err:
        if process.poll() is None:
            process.kill()
        broker.pid_file.unlink(missing_ok=True)
        sys.exit(f"[kafka] error: {err}; see {broker.log_file}")
    log(f"ready on {broker.bootstrap} (pid {process.pid}) in {time.monotonic() - began:.1f}s; log {broker.log_file}")


def wait_healthy(broker: Broker, pid: int, timeout: float, alive=None) -> None:
    """Wait until the broker answers; alive() says whether pid still runs
    (default: its /proc entry, for a broker another command started)."""
    alive = alive or (lambda: processes.running(pid))
    deadline = time.monotonic() + timeout
    while not api_versions(broker.port, timeout=1):
        if not alive():
            raise RuntimeError(f"the broker (pid {pid}) exited while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker did not answer on {broker.bootstrap} within {timeout:g}s")
        time.sleep(0.2)


def stop(broker: Broker, timeout: float = 30) -> None:
    """SIGTERM (a clean shutdown), SIGKILL after timeout seconds."""
    pid = broker.pid()
    if pid is None:
        broker.pid_file.unlink(missing_ok=True)
        log("not running")
        return
    processes.stop(pid, signal.SIGTERM, timeout, say=log)
    broker.pid_file.unlink(missing_ok=True)
    log(f"stopped (pid {pid})")


def status(broker: Broker) -> int:
    pid = broker.pid()
    if pid is None:
        print(f"kafka: not running (state {broker.dir})")
        return 1
    answers = api_versions(broker.port)
    print(f"kafka: pid {pid}, {broker.bootstrap} {'answers' if answers else 'does not answer'}")
    return 0 if answers else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology.kafka", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("STATE", "run")))
    args = parser.parse_args(argv)
    broker = Broker(args.state.resolve(), args.port)
    if args.command == "start":
        start(broker)
    elif args.command == "stop":
        stop(broker)
    else:
        return status(broker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
