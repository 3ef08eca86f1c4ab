"""TokenizerRegistry: registration, lookups, async load jobs and the admin API bodies."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from herder.tokenization import (
    CacheConfig,
    Tokenizer,
    TokenizerExistsError,
    TokenizerNotFoundError,
    TokenizerRegistry,
    load_tokenizer,
)
from tests.waiting import wait_for


def test_register_and_lookup(qwen: Tokenizer) -> None:
    reg = TokenizerRegistry(CacheConfig(enable_l0=True, enable_l1=True))
    entry = reg.register("qwen3", qwen, aliases=["Qwen/Qwen3-0.6B"])
    uuid.UUID(entry.id)
    assert reg.get("qwen3") is entry and reg.get("Qwen/Qwen3-0.6B") is entry
    assert reg.get("other") is None
    assert reg.resolve("other") is entry  # the only tokenizer
    assert entry.chat_template is not None and entry.chat_template.thinking_key == "enable_thinking"
    assert entry.cached.l0 is not None and entry.cached.l1 is not None
    assert entry.cached.encode("a<|im_end|>b") == qwen.encode("a<|im_end|>b")
    with pytest.raises(TokenizerExistsError):
        reg.register("qwen3", qwen)
    reg.register("second", qwen)
    assert reg.resolve("other") is None  # ambiguous now
    assert {t["name"] for t in reg.list_json()["tokenizers"]} == {"qwen3", "second"}


def test_caches_off_by_default(qwen: Tokenizer) -> None:
    entry = TokenizerRegistry().register("m", qwen)
    assert entry.cached.l0 is None and entry.cached.l1 is None
    assert entry.cached.encode("x<|im_end|>") == qwen.encode("x<|im_end|>")


async def test_async_load_job_lifecycle(qwen_dir: Path) -> None:
    gate = threading.Event()

    def slow_loader(source: str, template: str | None) -> Tokenizer:
        gate.wait(10)
        return load_tokenizer(source, chat_template_path=template)

    reg = TokenizerRegistry(loader=slow_loader)
    body = reg.submit("qwen3", str(qwen_dir))
    assert body["status"] == "pending" and body["message"]
    job_id = body["id"]
    uuid.UUID(job_id)
    with pytest.raises(TokenizerExistsError):
        reg.submit("qwen3", str(qwen_dir))  # 409 while loading
    await wait_for(lambda: reg.status_json(job_id)["status"] != "pending", message="the load job never started")
    assert reg.status_json(job_id)["status"] == "processing"
    assert reg.get("qwen3") is None
    gate.set()
    status = await reg.wait(job_id)
    assert status == {"id": job_id, "status": "completed", "message": status["message"], "vocab_size": 151669}
    entry = reg.get("qwen3")
    assert entry is not None and entry.id == job_id
    info = reg.info_json(job_id)
    assert (info["name"], info["vocab_size"], info["source"]) == ("qwen3", 151669, str(qwen_dir))
    assert reg.list_json() == {
        "tokenizers": [{"id": job_id, "name": "qwen3", "source": str(qwen_dir), "vocab_size": 151669}]
    }
    assert reg.remove(job_id)["success"] is True
    assert reg.get("qwen3") is None and len(reg) == 0
    with pytest.raises(TokenizerNotFoundError):
        reg.status_json(job_id)
    with pytest.raises(TokenizerNotFoundError):
        reg.remove(job_id)


async def test_failed_load_reports_message(tmp_path: Path) -> None:
    reg = TokenizerRegistry()
    body = reg.submit("broken", str(tmp_path / "nowhere"))
    status = await reg.wait(body["id"])
    assert status["status"] == "failed"
    assert str(tmp_path / "nowhere") in status["message"]
    assert "vocab_size" not in status
    assert reg.get("broken") is None
    # The name is free again after a failure.
    reg.submit("broken", str(tmp_path / "nowhere"))


async def test_custom_load_callable(qwen: Tokenizer) -> None:
    reg = TokenizerRegistry()
    body = reg.submit("from-worker", "grpc://w1", load=lambda: qwen)
    assert (await reg.wait(body["id"]))["status"] == "completed"
    entry = reg.get("from-worker")
    assert entry is not None and entry.tokenizer is qwen and entry.source == "grpc://w1"


async def test_delete_while_loading_cancels(qwen: Tokenizer) -> None:
    gate = threading.Event()
    started = threading.Event()
    returned = threading.Event()

    def load() -> Tokenizer:
        started.set()
        gate.wait(10)
        returned.set()
        return qwen

    reg = TokenizerRegistry()
    body = reg.submit("m", "src", load=load)
    job_task = reg._jobs[body["id"]].task
    assert job_task is not None
    await wait_for(started.is_set, message="the load never started")  # the job is processing, in its thread
    assert reg.remove(body["id"])["success"] is True
    gate.set()
    # the background load has finished: the loader returned its tokenizer and the job's task is over
    await wait_for(returned.is_set, message="the loader did not return")
    await asyncio.gather(job_task, return_exceptions=True)
    assert reg.get("m") is None
    with pytest.raises(TokenizerNotFoundError):
        reg.info_json(body["id"])
