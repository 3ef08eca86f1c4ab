"""Typed gateway configuration, from CLI flags and an optional YAML file (same keys), with SMG's names and defaults.

Every option is declared once in `OPTIONS`; argparse flags, YAML validation and the `GatewayConfig` dataclass all
come from that table. YAML keys may use dashes or underscores. Unknown keys and invalid values fail at start with
one line naming the key.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from herder.policies import POLICY_NAMES


class ConfigError(ValueError):
    """One-line, key-naming configuration error."""


@dataclass(slots=True)
class Option:
    name: str  # flag without dashes, underscores (e.g. "worker_urls")
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    nargs: str | None = None  # "*" for lists
    flag: bool = False  # store_true
    minimum: float | None = None
    aliases: tuple[str, ...] = ()
    append: bool = False  # repeatable flag, each use a list of values (e.g. --prefill URL [PORT])


MIB = 1024 * 1024

OPTIONS: tuple[Option, ...] = (
    # server and workers
    Option("host", str, "0.0.0.0", "bind address"),
    Option("port", int, 30000, "bind port", minimum=0),
    Option("worker_urls", str, [], "worker URLs (http://host:port or grpc://host:port)", nargs="*"),
    Option("workers", int, 1, "gateway processes sharing the port (SO_REUSEPORT)", minimum=1),
    Option("cpu_affinity", str, "none", "with --workers N > 1: auto pins process i to the i-th usable CPU; "
           "none leaves placement to the scheduler", choices=("auto", "none")),
    Option("upstream_pool_idle_timeout_secs", float, 3.0, "close idle upstream connections after this", minimum=0),
    Option("worker_startup_timeout_secs", float, 1800.0, "how long to wait for startup workers", minimum=0),
    Option("worker_startup_check_interval", float, 1.0, "probe interval while a worker registers", minimum=0.01),
    # policy
    Option("policy", str, "cache_aware", "load-balancing policy", choices=POLICY_NAMES),
    Option("cache_threshold", float, 0.3, "cache_aware: minimum prefix match ratio", minimum=0,
           aliases=("cache_match_threshold",)),
    Option("balance_abs_threshold", int, 64, "cache_aware: absolute load imbalance trigger", minimum=0,
           aliases=("spill_abs_threshold",)),
    Option("balance_rel_threshold", float, 1.5, "cache_aware: relative load imbalance trigger", minimum=0,
           aliases=("spill_rel_threshold",)),
    Option("eviction_interval_secs", float, 60.0, "cache_aware: LRU eviction interval (0 = off)", minimum=0),
    Option("max_tree_size", int, 67_108_864, "cache_aware: max prefix units per worker", minimum=0),
    # request handling
    Option("request_timeout_secs", float, 1800.0, "total time for one upstream request", minimum=0),
    Option("stream_body_stall_timeout_secs", float, 300.0, "max silence between stream chunks", minimum=0),
    Option("max_payload_size", int, 512 * MIB, "max request body bytes (413 above)", minimum=0),
    Option("header_read_timeout_secs", float, 30.0, "time a client has to send a request", minimum=0),
    Option("idle_connection_timeout_secs", float, 90.0, "close idle client connections after this", minimum=0),
    Option("request_id_headers", str, ["x-request-id", "x-correlation-id", "x-trace-id", "request-id"],
           "headers to take the request id from, in order", nargs="*"),
    Option("busy_poll_us", int, 0, "after a request goes to a worker, poll the event loop this long instead of "
           "sleeping (lower latency to fast workers on VMs, for CPU; 0 = off)", minimum=0),
    Option("shutdown_grace_period_secs", float, 180.0, "SIGTERM: wait this long for in-flight requests",
           minimum=0),
    # retries / breaker / health
    Option("retry_max_retries", int, 5, "total attempts per request", minimum=1),
    Option("retry_initial_backoff_ms", int, 50, "first retry delay", minimum=0),
    Option("retry_max_backoff_ms", int, 30000, "retry delay cap", minimum=0),
    Option("retry_backoff_multiplier", float, 1.5, "retry delay growth", minimum=1),
    Option("retry_jitter_factor", float, 0.2, "retry delay jitter (+/-)", minimum=0),
    Option("disable_retries", bool, False, "one attempt per request", flag=True),
    Option("cb_failure_threshold", int, 10, "consecutive failures that open a breaker", minimum=1),
    Option("cb_success_threshold", int, 3, "consecutive half-open successes that close it", minimum=1),
    Option("cb_timeout_duration_secs", float, 60.0, "open -> half-open after this", minimum=0),
    Option("disable_circuit_breaker", bool, False, "never open breakers", flag=True),
    Option("health_check_interval_secs", float, 60.0, "health probe interval", minimum=0.01),
    Option("health_check_timeout_secs", float, 5.0, "health probe timeout", minimum=0.01),
    Option("health_failure_threshold", int, 3, "failures: Ready -> NotReady", minimum=1),
    Option("health_success_threshold", int, 2, "successes: -> Ready", minimum=1),
    Option("health_check_endpoint", str, "/health", "health probe path"),
    Option("disable_health_check", bool, False, "no periodic health probes", flag=True),
    Option("remove_unhealthy_workers", bool, False, "deregister Failed workers", flag=True),
    # admission
    Option("max_concurrent_requests", int, -1, "token-bucket capacity (<= 0: admission off)"),
    Option("rate_limit_tokens_per_second", float, None, "token refill rate (unset: capacity per second)",
           minimum=0),
    Option("queue_size", int, 100, "requests waiting for a token (full: 429)", minimum=0),
    Option("queue_timeout_secs", float, 60.0, "max wait for a token (408)", minimum=0),
    # auth
    Option("api_key", str, None, "Bearer key for the data plane (and admin, unless --admin-api-key)"),
    Option("admin_api_key", str, None, "Bearer key for admin routes"),
    # observability
    Option("log_level", str, "info", "log level", choices=("debug", "info", "warning", "warn", "error")),
    Option("log_json", bool, False, "one JSON object per log line", flag=True),
    Option("log_dir", str, None, "also write logs to files in this folder"),
    Option("access_log", bool, False, "one line per request (costs CPU)", flag=True),
    Option("prometheus_host", str, "0.0.0.0", "metrics listener address"),
    Option("prometheus_port", int, 29000, "metrics listener port (0 = off)", minimum=0),
    Option("disable_metrics", bool, False, "herder only: skip per-request metric updates (to measure their cost)",
           flag=True),
    Option("enable_trace", bool, False, "export OTLP spans", flag=True),
    Option("otlp_traces_endpoint", str, "localhost:4317", "OTLP collector"),
    # gRPC path: tokenizers, templates, parsers
    Option("backend", str, None, "runtime hint for grpc:// workers",
           choices=("sglang", "vllm", "trtllm", "mlx", "tokenspeed", "openai", "anthropic")),
    Option("model_path", str, None, "model folder (tokenizer and chat template) or HF-style id",
           aliases=("model",)),
    Option("tokenizer_path", str, None, "tokenizer folder or file, or a tiktoken encoding name"),
    Option("chat_template", str, None, "chat template file (overrides the tokenizer's)"),
    Option("disable_tokenizer_autoload", bool, False, "do not fetch tokenizers from workers", flag=True),
    Option("tokenizer_cache_enable_l0", bool, False, "exact-match tokenization cache", flag=True),
    Option("tokenizer_cache_l0_max_entries", int, 10000, "L0 cache entries", minimum=1),
    Option("tokenizer_cache_l0_max_memory", int, 268435456, "L0 cache bytes", minimum=1),
    Option("tokenizer_cache_enable_l1", bool, False, "prefix tokenization cache at special tokens", flag=True),
    Option("tokenizer_cache_l1_max_memory", int, 52428800, "L1 cache bytes", minimum=1),
    Option("reasoning_parser", str, None, "reasoning parser (default: detected from the model id)"),
    Option("tool_call_parser", str, None, "tool-call parser (default: detected from the model id)"),
    # PD disaggregation
    Option("pd_disaggregation", bool, False, "prefill/decode disaggregation", flag=True),
    Option("prefill", str, [], "prefill worker: URL [BOOTSTRAP_PORT|none] (repeatable)", nargs="+", append=True),
    Option("decode", str, [], "decode worker URL (repeatable)", nargs="+", append=True),
    Option("prefill_policy", str, None, "policy for prefill workers (default --policy)", choices=POLICY_NAMES),
    Option("decode_policy", str, None, "policy for decode workers (default --policy)", choices=POLICY_NAMES),
    Option("pd_backend", str, None, "PD flavour: sglang (bootstrap rooms) or vllm (kv_transfer_params)",
           choices=("sglang", "vllm")),
)

_BY_NAME: dict[str, Option] = {}
for _opt in OPTIONS:
    _BY_NAME[_opt.name] = _opt
    for _alias in _opt.aliases:
        _BY_NAME[_alias] = _opt


@dataclass(slots=True)
class GatewayConfig:
    host: str = "0.0.0.0"
    port: int = 30000
    worker_urls: list[str] = field(default_factory=list)
    workers: int = 1
    cpu_affinity: str = "none"
    upstream_pool_idle_timeout_secs: float = 3.0
    worker_startup_timeout_secs: float = 1800.0
    worker_startup_check_interval: float = 1.0
    policy: str = "cache_aware"
    cache_threshold: float = 0.3
    balance_abs_threshold: int = 64
    balance_rel_threshold: float = 1.5
    eviction_interval_secs: float = 60.0
    max_tree_size: int = 67_108_864
    request_timeout_secs: float = 1800.0
    stream_body_stall_timeout_secs: float = 300.0
    max_payload_size: int = 512 * MIB
    header_read_timeout_secs: float = 30.0
    idle_connection_timeout_secs: float = 90.0
    request_id_headers: list[str] = field(
        default_factory=lambda: ["x-request-id", "x-correlation-id", "x-trace-id", "request-id"])
    busy_poll_us: int = 0
    shutdown_grace_period_secs: float = 180.0
    retry_max_retries: int = 5
    retry_initial_backoff_ms: int = 50
    retry_max_backoff_ms: int = 30000
    retry_backoff_multiplier: float = 1.5
    retry_jitter_factor: float = 0.2
    disable_retries: bool = False
    cb_failure_threshold: int = 10
    cb_success_threshold: int = 3
    cb_timeout_duration_secs: float = 60.0
    disable_circuit_breaker: bool = False
    health_check_interval_secs: float = 60.0
    health_check_timeout_secs: float = 5.0
    health_failure_threshold: int = 3
    health_success_threshold: int = 2
    health_check_endpoint: str = "/health"
    disable_health_check: bool = False
    remove_unhealthy_workers: bool = False
    max_concurrent_requests: int = -1
    rate_limit_tokens_per_second: float | None = None
    queue_size: int = 100
    queue_timeout_secs: float = 60.0
    api_key: str | None = None
    admin_api_key: str | None = None
    log_level: str = "info"
    log_json: bool = False
    log_dir: str | None = None
    access_log: bool = False
    prometheus_host: str = "0.0.0.0"
    prometheus_port: int = 29000
    disable_metrics: bool = False
    enable_trace: bool = False
    otlp_traces_endpoint: str = "localhost:4317"
    backend: str | None = None
    model_path: str | None = None
    tokenizer_path: str | None = None
    chat_template: str | None = None
    disable_tokenizer_autoload: bool = False
    tokenizer_cache_enable_l0: bool = False
    tokenizer_cache_l0_max_entries: int = 10000
    tokenizer_cache_l0_max_memory: int = 268435456
    tokenizer_cache_enable_l1: bool = False
    tokenizer_cache_l1_max_memory: int = 52428800
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    pd_disaggregation: bool = False
    prefill: list[list[str]] = field(default_factory=list)
    decode: list[list[str]] = field(default_factory=list)
    prefill_policy: str | None = None
    decode_policy: str | None = None
    pd_backend: str | None = None


def _check_consistency() -> None:
    names = {f.name for f in fields(GatewayConfig)}
    declared = {o.name for o in OPTIONS}
    if names != declared:  # a programming error, caught by the tests
        raise RuntimeError(f"config table and dataclass differ: {sorted(names ^ declared)}")


_check_consistency()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option as a flag (SMG spelling: --worker-urls) plus `--config FILE`."""
    parser.add_argument("--config", metavar="FILE", help="YAML file with the same keys as the flags")
    for opt in OPTIONS:
        flags = ["--" + opt.name.replace("_", "-")] + ["--" + a.replace("_", "-") for a in opt.aliases]
        kwargs: dict[str, Any] = {"dest": opt.name, "default": argparse.SUPPRESS, "help": opt.help}
        if opt.flag:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = opt.type
            if opt.append:
                kwargs["action"] = "append"
            if opt.nargs:
                kwargs["nargs"] = opt.nargs
            if opt.choices:
                kwargs["choices"] = opt.choices
        parser.add_argument(*flags, **kwargs)


def _coerce(opt: Option, key: str, value: Any) -> Any:
    if value is None and opt.default is None:
        return None
    if opt.append:
        if not isinstance(value, list) or not all(
                isinstance(item, list) and item and all(isinstance(v, str | int) for v in item) for item in value):
            raise ConfigError(f"config key '{key}': expected a list of [value, ...] lists")
        return [[str(v) for v in item] for item in value]
    if opt.nargs:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key '{key}': expected a list of strings")
        return list(value)
    if opt.type is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if opt.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    elif opt.type is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        value = float(value)
    elif opt.type is str and not isinstance(value, str):
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    return value


def _validate(opt: Option, key: str, value: Any) -> None:
    if value is None:
        return
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"'{key}': {value!r} is not one of {', '.join(opt.choices)}")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if opt.minimum is not None and numeric and value < opt.minimum:
        raise ConfigError(f"'{key}': must be >= {opt.minimum:g}, got {value}")


def load_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping of option keys")
    return data


def build_config(args: argparse.Namespace | dict[str, Any], yaml_path: str | None = None) -> GatewayConfig:
    """Defaults, then the YAML file, then CLI flags (flags win)."""
    values: dict[str, Any] = {}
    if yaml_path:
        for raw_key, value in load_yaml(yaml_path).items():
            key = str(raw_key).replace("-", "_")
            opt = _BY_NAME.get(key)
            if opt is None:
                raise ConfigError(f"unknown config key '{raw_key}' in {yaml_path}")
            coerced = _coerce(opt, str(raw_key), value)
            _validate(opt, str(raw_key), coerced)
            values[opt.name] = coerced
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    for key, value in given.items():
        opt = _BY_NAME.get(key)
        if opt is None:
            continue
        _validate(opt, "--" + key.replace("_", "-"), value)
        values[opt.name] = value
    cfg = GatewayConfig(**values)
    for url in cfg.worker_urls:
        if not url.startswith(("http://", "grpc://")):
            raise ConfigError(f"'worker_urls': {url!r} must start with http:// or grpc://")
    if cfg.log_level == "warn":
        cfg.log_level = "warning"
    if cfg.api_key is None and os.environ.get("HERDER_API_KEY"):
        cfg.api_key = os.environ["HERDER_API_KEY"]
    return cfg
