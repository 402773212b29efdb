"""The topology's settings and its plan, without starting anything: what
`make up` would keep, restart, replace or retire for a given state."""

from __future__ import annotations

import pytest

from topology import stack
from topology.settings import Replica, Settings, SettingsError, next_ports, plan


def settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"MODELS": str(tmp_path / "models"), "STATE": str(tmp_path / "run"), **env}, cores=2)


def recorded(s: Settings, n: int) -> list[Replica]:
    return [Replica(i, s.base_port + i - 1, s.spec()) for i in range(1, n + 1)]


def test_defaults_and_each_replicas_share_of_the_cores(tmp_path):
    s = settings(tmp_path)
    assert (s.port, s.replicas, s.base_port, s.fail_timeout, s.client_timeout) == (8080, 2, 9001, 5, "10s")
    assert s.replica_env == {"GOMAXPROCS": "1"}
    assert settings(tmp_path, REPLICAS="1").replica_env == {"GOMAXPROCS": "2"}
    assert settings(tmp_path, REPLICAS="3").replica_env == {"GOMAXPROCS": "1"}  # at least 1
    assert settings(tmp_path, GOMAXPROCS="4").replica_env == {"GOMAXPROCS": "4"}  # the environment wins
    flagged = settings(tmp_path, SKL2GO_POLL_INTERVAL="1s", OTHER="x")
    assert flagged.replica_env == {"GOMAXPROCS": "1", "SKL2GO_POLL_INTERVAL": "1s"}
    assert flagged.spec()["env"] == flagged.replica_env


@pytest.mark.parametrize("env, message", [
    ({"REPLICAS": "0"}, "REPLICAS must be a positive integer, got '0'"),
    ({"REPLICAS": "two"}, "REPLICAS must be a positive integer, got 'two'"),
    ({"PORT": "70000"}, "PORT must be a port"),
    ({"RATE_LIMIT": "100"}, "RATE_LIMIT must look like 100r/s"),
    ({"RATE_BURST": "x"}, "RATE_BURST must be a number"),
    ({"CLIENT_TIMEOUT": "10 s"}, "CLIENT_TIMEOUT must look like 10s"),
    ({"FAIL_TIMEOUT": "-1"}, "FAIL_TIMEOUT must be a positive integer"),
    ({"INFERENCE_LOG": "1.5"}, "INFERENCE_LOG must be a sampling rate from 0 to 1"),
    ({"INFERENCE_LOG": "all"}, "INFERENCE_LOG must be a sampling rate from 0 to 1"),
    ({"ACTUALS_TOKEN": "/nonexistent/token"}, "ACTUALS_TOKEN must be a file"),
])
def test_bad_settings_are_refused_naming_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        settings(tmp_path, **env)


def test_the_same_settings_change_nothing(tmp_path):
    s = settings(tmp_path)
    p = plan(s, recorded(s, 2), alive={1, 2})
    assert not p.changes and [r.slot for r in p.keep] == [1, 2]


def test_a_replica_that_died_is_started_again_where_it_was(tmp_path):
    s = settings(tmp_path)
    p = plan(s, recorded(s, 2), alive={1})
    assert [r.slot for r in p.keep] == [1] and p.restart == [recorded(s, 2)[1]]
    assert not p.replace and not p.retire


def test_other_flags_replace_every_replica(tmp_path):
    s = settings(tmp_path)
    p = plan(settings(tmp_path, SKL2GO_LOG_LEVEL="warn"), recorded(s, 2), alive={1, 2})
    assert p.replace == [(1, recorded(s, 2)[0]), (2, recorded(s, 2)[1])] and not p.keep


def test_the_inference_log_is_a_replica_setting_and_changing_it_rolls(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    s = settings(tmp_path, INFERENCE_LOG="0.5", ACTUALS_TOKEN=str(token))
    assert s.replica_env == {"GOMAXPROCS": "1", "SKL2GO_INFERENCE_LOG_RATE": "0.5",
                             "SKL2GO_ACTUALS_TOKEN_FILE": str(token.resolve())}
    assert stack.inference_log_dir(s.state, 2) == s.state / "inference" / "replica-2"
    p = plan(settings(tmp_path, INFERENCE_LOG="1", ACTUALS_TOKEN=str(token)), recorded(s, 2), alive={1, 2})
    assert [slot for slot, _ in p.replace] == [1, 2]
    assert not plan(settings(tmp_path, INFERENCE_LOG="0.5", ACTUALS_TOKEN=str(token)), recorded(s, 2), alive={1, 2}).changes


def test_another_model_repository_replaces_every_replica(tmp_path):
    s = settings(tmp_path)
    p = plan(settings(tmp_path, MODELS=str(tmp_path / "other")), recorded(s, 2), alive={1, 2})
    assert [slot for slot, _ in p.replace] == [1, 2]


def test_more_replicas_add_slots_and_fewer_retire_them(tmp_path):
    s3 = settings(tmp_path, REPLICAS="3")
    up = plan(s3, recorded(s3, 2), alive={1, 2})  # GOMAXPROCS stays 1 on 2 cores: 1 and 2 are kept
    assert [r.slot for r in up.keep] == [1, 2] and up.replace == [(3, None)] and not up.retire
    down = plan(settings(tmp_path, REPLICAS="2"), recorded(s3, 3), alive={1, 2, 3})
    assert [r.slot for r in down.keep] == [1, 2] and [r.slot for r in down.retire] == [3]


def test_new_ports_skip_the_stacks_own_and_those_in_use():
    assert next_ports(9001, 2, taken={9001, 9002}, free=lambda p: p != 9003) == [9004, 9005]
    with pytest.raises(SettingsError, match="no free port"):
        next_ports(65535, 2, taken=set(), free=lambda p: True)


def test_the_state_file_reads_back_what_was_saved(tmp_path):
    s = settings(tmp_path, SKL2GO_POLL_INTERVAL="1s", RATE_LIMIT="5r/s")
    s.state.mkdir(parents=True)
    stack.State(s, recorded(s, 2)).save()
    saved = stack.load(s.state)
    assert saved.settings == s and saved.replicas == recorded(s, 2)
    assert stack.load(tmp_path / "nowhere") is None
