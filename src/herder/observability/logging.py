"""Logging setup (`--log-level`, `--log-json`, `--log-dir`), the request-id context and the access log.

* `setup_logging` installs one handler on stderr (and one on `<log_dir>/herder.log` when given) on the root
  logger; with `json=True` every record is one JSON object on one line.
* The request id lives in a contextvar (`request_id_var`); a `RequestIdFilter` on the handlers copies it onto
  every record, so each request-scoped line carries it without callers passing it around. Set it where the
  request's task starts (`set_request_id`), reset it when it ends; a contextvar set inside a bare Protocol
  callback is not scoped to that request, so the server should set it inside the per-request task/context.
  Requests proxied without a task (`routing/proxy.py`) log nothing per request on success; their error lines
  pass `extra={"request_id": ...}` explicitly.
* `AccessLog.log` returns at once unless enabled, so a disabled access log costs one attribute test; hot code
  can also test `access_log.enabled` itself and skip building arguments.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

request_id_var: ContextVar[str | None] = ContextVar("herder_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted as a field.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}
_HANDLER_MARK = "_herder_handler"
_LEVEL_ALIASES = {"trace": logging.DEBUG, "warn": logging.WARNING}  # SMG (Rust tracing) level names


def set_request_id(request_id: str | None) -> Token[str | None]:
    """Make `request_id` the current request's id (for this task/context); returns the token to reset."""
    return request_id_var.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Copies the current request id onto every record as `record.request_id` (None outside a request; an
    explicit `extra={"request_id": ...}` wins when no request is current)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None or not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return (
        datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, request_id (when set), `extra=` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            out["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # orjson escapes newlines inside strings, so a record is always exactly one line.
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """`<ts> <LEVEL> <logger> [<request id>] <message>` (the bracket only inside a request)."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        rid = f" [{request_id}]" if request_id is not None else ""
        line = f"{_timestamp(record)} {record.levelname} {record.name}{rid} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def setup_logging(
    level: str | int = "info",
    json: bool = False,
    log_dir: str | None = None,
    *,
    access_log: bool = False,
) -> list[logging.Handler]:
    """Configure the root logger (idempotent: replaces the handlers a previous call installed).

    `level` is a name (`trace`/`debug`/`info`/`warn`/`warning`/`error`/`critical`, any case) or a number.
    Returns the handlers installed. `access_log` enables the module's `ACCESS_LOG`.
    """
    if isinstance(level, str):
        numeric = _LEVEL_ALIASES.get(level.lower()) or logging.getLevelName(level.upper())
    else:
        numeric = level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        # Several worker processes may append to the same file; O_APPEND keeps whole lines intact.
        handlers.append(logging.FileHandler(Path(log_dir) / "herder.log", encoding="utf-8"))
    formatter: logging.Formatter = JsonFormatter() if json else TextFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(numeric)
    ACCESS_LOG.enabled = access_log
    return handlers


class AccessLog:
    """One line per finished request on the `herder.access` logger, only when enabled."""

    __slots__ = ("_logger", "enabled")

    def __init__(self, enabled: bool = False, logger: str = "herder.access") -> None:
        self.enabled = enabled
        self._logger = logging.getLogger(logger)

    def log(
        self,
        method: str,
        path: str,
        status: int,
        duration_s: float,
        request_id: str | None = None,
        bytes_sent: int | None = None,
    ) -> None:
        if not self.enabled:
            return
        fields: dict[str, Any] = {"method": method, "path": path, "status": status}
        fields["duration_ms"] = round(duration_s * 1000.0, 3)
        if request_id is not None:
            fields["request_id"] = request_id
        if bytes_sent is not None:
            fields["bytes_sent"] = bytes_sent
        # Lazy %-formatting: nothing is formatted if the logger's level filters the record out.
        self._logger.info("%s %s %d %.3fms", method, path, status, duration_s * 1000.0, extra=fields)


ACCESS_LOG = AccessLog()
