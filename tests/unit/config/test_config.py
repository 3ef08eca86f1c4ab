"""Config: SMG flag names and defaults, YAML with the same keys, one-line errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from herder.cli import _launch_parser
from herder.config import ConfigError, GatewayConfig, build_config


def parse(argv: list[str], yaml_path: str | None = None) -> GatewayConfig:
    args = _launch_parser().parse_args(argv)
    return build_config(args, yaml_path or getattr(args, "config", None))


def test_defaults_match_smg() -> None:
    cfg = parse([])
    assert (cfg.host, cfg.port, cfg.policy) == ("0.0.0.0", 30000, "cache_aware")
    assert (cfg.cache_threshold, cfg.balance_abs_threshold, cfg.balance_rel_threshold) == (0.3, 64, 1.5)
    assert (cfg.eviction_interval_secs, cfg.max_tree_size) == (60, 67108864)
    assert (cfg.request_timeout_secs, cfg.max_payload_size) == (1800, 536870912)
    assert cfg.upstream_pool_idle_timeout_secs == 3
    assert cfg.request_id_headers == ["x-request-id", "x-correlation-id", "x-trace-id", "request-id"]
    assert (cfg.retry_max_retries, cfg.retry_initial_backoff_ms, cfg.retry_max_backoff_ms) == (5, 50, 30000)
    assert (cfg.cb_failure_threshold, cfg.cb_success_threshold, cfg.cb_timeout_duration_secs) == (10, 3, 60)
    assert (cfg.health_check_interval_secs, cfg.health_check_timeout_secs) == (60, 5)
    assert (cfg.queue_size, cfg.queue_timeout_secs, cfg.prometheus_port) == (100, 60, 29000)


def test_flags_and_aliases() -> None:
    cfg = parse(["--worker-urls", "http://a:1", "http://b:2", "--policy", "round_robin",
                 "--cache-match-threshold", "0.5", "--disable-retries"])
    assert cfg.worker_urls == ["http://a:1", "http://b:2"]
    assert cfg.policy == "round_robin" and cfg.cache_threshold == 0.5 and cfg.disable_retries


def test_yaml_same_keys_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("policy: power_of_two\nworker-urls: [http://x:1]\nport: 31000\nretry_max_retries: 2\n")
    cfg = parse(["--config", str(path), "--port", "32000"])
    assert cfg.policy == "power_of_two" and cfg.worker_urls == ["http://x:1"]
    assert cfg.port == 32000 and cfg.retry_max_retries == 2


@pytest.mark.parametrize(("text", "needle"), [
    ("polcy: random\n", "polcy"),
    ("port: eighty\n", "port"),
    ("policy: fastest\n", "policy"),
    ("cache_threshold: -1\n", "cache_threshold"),
    ("worker_urls: [ftp://x]\n", "worker_urls"),
    ("- a\n- b\n", "mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_yaml_fails_with_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        parse([], str(path))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_cli_rejects_unknown_flag_and_bad_value_in_one_line() -> None:
    for argv, needle in ((["--nope"], "--nope"), (["--policy", "x"], "--policy"), (["--port", "-3"], "--port")):
        proc = subprocess.run([sys.executable, "-m", "herder", "launch", *argv], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 2
        lines = [line for line in proc.stderr.splitlines() if "error" in line]
        assert len(lines) == 1 and needle in lines[0], proc.stderr
