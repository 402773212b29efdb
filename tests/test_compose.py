"""docker-compose.yml describes the same topology as `make up`.

No Docker engine runs here, so the file is checked by `docker compose config`
where that command exists, and its structure is always checked below.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_trainer_replicas_and_nginx(compose):
    services = compose["services"]
    assert set(services) == {"trainer", "server", "nginx"}
    for name in ["trainer", "server"]:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    server = services["server"]
    assert server["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert "models:/models:ro" in server["volumes"]
    assert server["deploy"]["replicas"] == "${REPLICAS:-2}"
    assert "models:/models" in services["trainer"]["volumes"]
    nginx = services["nginx"]
    assert "./nginx:/etc/skl2go:ro" in nginx["volumes"]
    assert "render.sh 0.0.0.0:8080 /tmp/state server:9000" in nginx["command"][0]
    assert nginx["ports"] == ["${PORT:-8080}:8080"]


def test_server_image_is_non_root_and_uses_the_pinned_runtime():
    dockerfile = (ROOT / "serve-go" / "Dockerfile").read_text()
    assert "USER 65532:65532" in dockerfile
    assert "grep '^onnxruntime==' /tmp/requirements.txt" in dockerfile
    pins = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("onnxruntime==")]
    assert len(pins) == 1
    assert "SKL2GO_ADDR=0.0.0.0:9000" in dockerfile  # matches nginx's server:9000


def test_docker_compose_config_accepts_the_file():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True) \
        if shutil.which("docker") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("'docker compose' is not available on this machine")
    checked = subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
