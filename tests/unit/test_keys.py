"""API key files (topology/keys.py), the AUTH and TLS settings, and the
nginx configuration they render, without starting anything."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from topology import keys, nginx
from topology.settings import Settings, SettingsError


def settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"MODELS": str(tmp_path / "models"), "STATE": str(tmp_path / "run"), **env}, cores=2)


def test_add_stores_only_the_hash_and_revoke_removes_the_client(tmp_path):
    path = tmp_path / "keys"
    alice = keys.add(path, "alice", "predict,read")
    bob = keys.add(path, "bob", "write")
    text = path.read_text()
    assert alice not in text and bob not in text
    assert keys.read(path) == [("alice", "predict,read", hashlib.sha256(alice.encode()).hexdigest()),
                               ("bob", "write", hashlib.sha256(bob.encode()).hexdigest())]
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
    keys.revoke(path, "alice")
    assert [c for c, _, _ in keys.read(path)] == ["bob"]
    assert len(alice) >= 40 and alice != bob


@pytest.mark.parametrize("client, scopes, message", [
    ("al ice", "predict", "client id"), ("alice", "admin", "scopes"), ("alice", "", "scopes"),
    ("bob", "read", "already has a key"),
])
def test_bad_entries_are_refused(tmp_path, client, scopes, message):
    path = tmp_path / "keys"
    keys.add(path, "bob", "read")
    with pytest.raises(keys.KeyFileError, match=message):
        keys.add(path, client, scopes)
    with pytest.raises(keys.KeyFileError, match="no client"):
        keys.revoke(path, "nobody")


def test_auth_passes_the_key_file_to_the_replicas(tmp_path):
    path = tmp_path / "keys"
    keys.add(path, "alice", "predict")
    s = settings(tmp_path, AUTH=str(path))
    assert s.auth == str(path) and s.replica_env["SKL2GO_API_KEYS"] == str(path)
    assert settings(tmp_path).auth == "" and "SKL2GO_API_KEYS" not in settings(tmp_path).replica_env
    with pytest.raises(SettingsError, match="AUTH"):
        settings(tmp_path, AUTH=str(tmp_path / "missing"))


@pytest.mark.parametrize("env, message", [
    ({"TLS": "yes"}, "TLS must be"), ({"TLS_CERT": "/nonexistent"}, "TLS_CERT and TLS_KEY"),
    ({"TLS": "1", "TLS_PORT": "0"}, "TLS_PORT"),
])
def test_bad_tls_settings_are_refused(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        settings(tmp_path, **env)


@pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("openssl"), reason="needs nginx and openssl")
def test_rendered_config_with_keys_and_tls_is_accepted_and_stable(tmp_path):
    path = tmp_path / "keys"
    keys.add(path, "alice", "predict")
    s = settings(tmp_path, AUTH=str(path), TLS="1", PORT="8190", RATE_LIMIT="10r/s")
    assert s.tls_port == 8191
    first = nginx.render(s, ["127.0.0.1:9190"])
    assert "listen 127.0.0.1:8191 ssl http2;" in first and "ssl_protocols TLSv1.2 TLSv1.3;" in first
    assert "return 308 https://$host:8191$request_uri;" in first
    assert "auth_request /_auth;" in first and "limit_req_zone $http_authorization" in first
    # The key stops at nginx, except on the ground truth endpoint, whose replica checks it again.
    assert "proxy_set_header Authorization $skl2go_key_for_replica;" in first
    assert "~^/v1/models/[^/]+(/versions/[0-9]+)?/actuals$ $http_authorization;" in first
    assert nginx.render(s, ["127.0.0.1:9190"]) == first  # the certificate is made once: `up` twice converges
    nginx.write(s, first)  # nginx -t accepts it
    plain = nginx.render(settings(tmp_path), ["127.0.0.1:9190"])
    assert "auth_request" not in plain and "ssl" not in plain and "limit_req_zone" not in plain
