"""setup_logging: JSON lines, request id from the contextvar, log files, the access log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from herder.observability.logging import (
    ACCESS_LOG,
    AccessLog,
    reset_request_id,
    set_request_id,
    setup_logging,
)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, access = list(root.handlers), root.level, ACCESS_LOG.enabled
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    ACCESS_LOG.enabled = access


def _lines(path: Path) -> list[dict[str, object]]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def test_json_lines_with_request_id_extras_and_exceptions(tmp_path: Path) -> None:
    setup_logging("info", json=True, log_dir=str(tmp_path))
    log = logging.getLogger("herder.test")
    log.info("outside %s", "a\nrequest")
    token = set_request_id("chatcmpl-abc")
    log.warning("inside", extra={"worker": "http://w1:8000"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    reset_request_id(token)
    log.debug("filtered out by level")
    log.error("after")
    text = (tmp_path / "herder.log").read_text()
    assert len(text.splitlines()) == 4  # one line per record, the newline in a message escaped
    outside, inside, failed, after = _lines(tmp_path / "herder.log")
    assert outside["msg"] == "outside a\nrequest"
    assert outside["level"] == "INFO"
    assert outside["logger"] == "herder.test"
    assert "request_id" not in outside
    assert inside["request_id"] == "chatcmpl-abc"
    assert inside["worker"] == "http://w1:8000"
    assert failed["request_id"] == "chatcmpl-abc"
    assert "ValueError: boom" in str(failed["exc"])
    assert "request_id" not in after
    assert str(outside["ts"]).endswith("Z")


async def test_request_ids_follow_their_tasks(tmp_path: Path) -> None:
    setup_logging("info", json=True, log_dir=str(tmp_path))
    log = logging.getLogger("herder.test")

    async def request(rid: str) -> None:
        token = set_request_id(rid)
        try:
            for i in range(5):
                log.info("step %d", i, extra={"expect": rid})
                await asyncio.sleep(0)
        finally:
            reset_request_id(token)

    await asyncio.gather(*(request(f"req-{n}") for n in range(4)))
    lines = _lines(tmp_path / "herder.log")
    assert len(lines) == 20
    assert all(line["request_id"] == line["expect"] for line in lines)
    assert len({line["request_id"] for line in lines}) == 4


def test_text_format_and_idempotent_setup(tmp_path: Path) -> None:
    setup_logging("info", json=False, log_dir=str(tmp_path))
    setup_logging("INFO", json=False, log_dir=str(tmp_path))  # replaces, does not duplicate
    token = set_request_id("req-1")
    logging.getLogger("herder.test").info("hello")
    reset_request_id(token)
    logging.getLogger("herder.test").info("bye")
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = (tmp_path / "herder.log").read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" INFO herder.test [req-1] hello")
    assert lines[1].endswith(" INFO herder.test bye")


def test_levels_by_name_and_alias() -> None:
    cases: list[tuple[str | int, int]] = [
        ("trace", logging.DEBUG),
        ("WARN", logging.WARNING),
        ("error", logging.ERROR),
        (15, 15),
    ]
    for name, expected in cases:
        setup_logging(name)
        assert logging.getLogger().level == expected
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("loud")


def test_access_log_enabled(tmp_path: Path) -> None:
    setup_logging("info", json=True, log_dir=str(tmp_path), access_log=True)
    token = set_request_id("req-9")
    ACCESS_LOG.log("POST", "/v1/chat/completions", 200, 0.0125, bytes_sent=321)
    reset_request_id(token)
    ACCESS_LOG.log("GET", "/health", 503, 0.001, request_id="req-explicit")
    first, second = _lines(tmp_path / "herder.log")
    assert first["logger"] == "herder.access"
    assert first["request_id"] == "req-9"
    assert (first["method"], first["path"], first["status"], first["bytes_sent"]) == (
        "POST",
        "/v1/chat/completions",
        200,
        321,
    )
    assert first["duration_ms"] == 12.5
    assert second["request_id"] == "req-explicit"
    assert second["status"] == 503


class _Loud(str):
    """A str that records every attempt to format it."""

    formatted = 0

    def __str__(self) -> str:
        _Loud.formatted += 1
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        _Loud.formatted += 1
        return str.__format__(self, spec)


def test_access_log_disabled_writes_and_formats_nothing(tmp_path: Path) -> None:
    setup_logging("info", json=True, log_dir=str(tmp_path), access_log=False)
    _Loud.formatted = 0
    ACCESS_LOG.log(_Loud("POST"), _Loud("/v1/chat/completions"), 200, 0.01)
    # Enabled, but the level filters the record: still nothing formatted.
    quiet = AccessLog(enabled=True, logger="herder.access.quiet")
    logging.getLogger("herder.access.quiet").setLevel(logging.WARNING)
    quiet.log(_Loud("POST"), _Loud("/x"), 200, 0.01)
    assert _Loud.formatted == 0
    assert (tmp_path / "herder.log").read_text() == ""
