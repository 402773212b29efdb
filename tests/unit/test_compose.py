"""docker-compose.yml describes the same topology as `make up`.

No Docker engine runs here, so the file is checked by `docker compose config`
where that command exists, and its structure is always checked below.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from topology import ROOT



@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_trainer_replicas_and_nginx(compose):
    services = compose["services"]
    assert {n for n, s in services.items() if "profiles" not in s} == {"trainer", "server", "nginx"}
    for name in ["trainer", "server"]:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    server = services["server"]
    assert server["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert "models:/models:ro" in server["volumes"]
    assert server["deploy"]["replicas"] == "${REPLICAS:-2}"
    assert "ports" not in server, "replicas must not be published on the host: nginx is the only way in"
    assert server["read_only"] is True
    # the inference log as make up INFERENCE_LOG= ACTUALS_TOKEN=: a directory per replica in a volume
    assert "inference:/inference" in server["volumes"] and "inference" in compose["volumes"]
    assert server["environment"]["SKL2GO_INFERENCE_LOG"] == "/inference/{hostname}"
    assert server["environment"]["SKL2GO_INFERENCE_LOG_RATE"] == "${INFERENCE_LOG:-0}"
    assert server["environment"]["SKL2GO_ACTUALS_TOKEN_FILE"] == "${ACTUALS_TOKEN:+/run/secrets/actuals_token}"
    assert "models:/models" in services["trainer"]["volumes"]
    nginx = services["nginx"]
    assert "./nginx:/etc/skl2go:ro" in nginx["volumes"]
    assert "render.sh 0.0.0.0:8080 /tmp/state server:9000" in nginx["command"][0]
    assert nginx["ports"] == ["${PORT:-8080}:8080"]


def test_stream_profile_kafka_on_loopback(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")  # the official image, KRaft
    assert kafka["profiles"] == ["stream"]  # `docker compose up` alone does not start it
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert all(port.startswith("127.0.0.1:") for port in kafka["ports"]), "the broker listens on loopback only"


def test_registry_profile_mlflow_on_postgres_and_minio(compose):
    services = compose["services"]
    registry = {n for n, s in services.items() if "registry" in s.get("profiles", [])}
    assert registry == {"postgres", "minio", "minio-bucket", "mlflow"}
    mlflow = services["mlflow"]
    command = mlflow["command"][0]
    assert "-r /requirements/mlflow-server.txt" in command  # the pinned server, as make mlflow
    assert "--backend-store-uri postgresql://" in command and "@postgres:5432/" in command
    assert "--serve-artifacts --artifacts-destination s3://mlflow/" in command
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
    pins = (ROOT / "requirements" / "mlflow-server.txt").read_text()
    assert "psycopg2-binary==" in pins and "boto3==" in pins


def test_monitoring_profile_database_and_prometheus_on_loopback(compose):
    services = compose["services"]
    for name in ["monitor-db", "prometheus"]:
        assert services[name]["profiles"] == ["monitoring"]
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])
    assert services["monitor-db"]["environment"]["POSTGRES_DB"] == "skl2go"
    config = services["prometheus"]["volumes"][0].split(":")[0]
    scrape = yaml.safe_load((ROOT / config).read_text())["scrape_configs"]
    assert [job["job_name"] for job in scrape] == ["skl2go", "skl2go-monitor"]
    assert scrape[0]["dns_sd_configs"][0]["names"] == ["server"]


def test_server_image_is_non_root_and_uses_the_pinned_runtime():
    dockerfile = (ROOT / "serve-go" / "Dockerfile").read_text()
    assert "USER 65532:65532" in dockerfile
    assert "grep '^onnxruntime==' /tmp/requirements.txt" in dockerfile
    assert "COPY requirements/train.txt /tmp/requirements.txt" in dockerfile
    pins = [line for path in (ROOT / "requirements").glob("*.txt") for line in path.read_text().splitlines()
            if line.startswith("onnxruntime==")]
    assert len(pins) == 1 and pins[0] in (ROOT / "requirements" / "train.txt").read_text()
    assert "SKL2GO_ADDR=0.0.0.0:9000" in dockerfile  # matches nginx's server:9000
    assert "SKL2GO_ALLOW_NON_LOOPBACK=true" in dockerfile  # the server refuses 0.0.0.0 otherwise


def compose_cli() -> list[str] | None:
    """`docker compose`, or the standalone CLI `make compose-cli` builds."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    standalone = ROOT / "build" / "tools" / "docker-compose"
    return [str(standalone)] if standalone.is_file() else None


@pytest.fixture(scope="module")
def cli() -> list[str]:
    found = compose_cli()
    if found is None:
        pytest.skip("no 'docker compose' here: run `make compose-cli` (make test does)")
    return found


def test_docker_compose_config_accepts_the_file(cli):
    checked = subprocess.run([*cli, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_docker_compose_config_rejects_a_broken_file(cli, tmp_path):
    broken = (ROOT / "docker-compose.yml").read_text().replace("replicas: ${REPLICAS:-2}", "replicas: two")
    (tmp_path / "docker-compose.yml").write_text(broken)
    (tmp_path / "nginx").mkdir()
    checked = subprocess.run([*cli, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode != 0
    assert "replicas" in checked.stderr
