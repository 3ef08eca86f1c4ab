"""The grpc:// prober: HealthCheck, runtime detection + GetModelInfo/GetServerInfo, tokenizer registration.

Tokenizer resolution (SMG, spec 7): `--tokenizer-path` > `--model-path` > the worker's `tokenizer_path` /
`model_path` (from GetModelInfo) when they exist on this host > the worker's `GetTokenizer` bundle (unless
`--disable-tokenizer-autoload`). One load per model, however many workers serve it; loading runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from herder.routing.grpc.client import GrpcCallError, GrpcWorkerClient
from herder.routing.grpc.state import GrpcState, ModelMeta
from herder.tokenization import Tokenizer, TokenizerExistsError, load_from_bundle, load_source
from herder.workers.worker import HealthConfig, Worker, WorkerStatus

log = logging.getLogger("herder.grpc")

# GetServerInfo fields that become worker labels when present (SMG: tp/dp size, kv connector, ...).
_SERVER_LABELS = (
    "tp_size",
    "dp_size",
    "data_parallel_size",
    "kv_connector",
    "kv_role",
    "kv_engine_id",
    "page_size",
    "block_size",
)


def client_of(worker: Worker, hint: str | None) -> GrpcWorkerClient:
    """The worker's gRPC client, created on first use (one multiplexed channel per worker)."""
    client = worker.client
    if client is None:
        rt = worker.runtime_type if worker.runtime_type not in ("", "unspecified") else hint
        client = worker.client = GrpcWorkerClient(worker.url, rt)
    assert isinstance(client, GrpcWorkerClient)
    return client


class GrpcProber:
    """`Prober` for grpc:// workers (registered as `manager.probers["grpc"]`)."""

    def __init__(self, state: GrpcState, health: HealthConfig) -> None:
        self.state = state
        self.health = health
        self._loading: dict[str, asyncio.Task[None]] = {}
        self.load_errors: dict[str, str] = {}

    async def probe(self, worker: Worker) -> bool:
        return await client_of(worker, self.state.config.backend).health(timeout=self.health.timeout_secs)

    async def discover(self, worker: Worker) -> None:
        client = client_of(worker, self.state.config.backend)
        try:
            info = await client.model_info(timeout=self.health.timeout_secs)
        except GrpcCallError as exc:
            log.warning("GetModelInfo failed on %s: %s", worker.url, exc)
            return
        labels: dict[str, str] = dict(worker.labels)
        labels.update({
            "runtime": info.runtime, "model_path": info.model_path, "served_model_name": info.served_model_name,
            "tokenizer_path": info.tokenizer_path, "vocab_size": str(info.vocab_size),
            "max_context_length": str(info.context_length),
        })  # fmt: skip
        try:
            server = await client.server_info(timeout=self.health.timeout_secs)
        except GrpcCallError:
            server = {}
        args = server.get("server_args") if isinstance(server.get("server_args"), dict) else {}
        for key in _SERVER_LABELS:
            value = server.get(key, args.get(key) if isinstance(args, dict) else None)
            if value not in (None, "", 0):
                # Struct numbers arrive as floats: 1.0 -> "1".
                labels[key] = (
                    str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
                )
        worker.labels = labels
        worker.runtime_type = info.runtime
        if not worker.spec.models:
            worker.models = [info.served_model_name or info.model_id or info.model_path]
        for model in worker.models:
            if model not in self.state.models:
                self.state.models[model] = ModelMeta(
                    model, info.model_path, info.context_length, list(info.eos_token_ids), info.runtime
                )
        self.state.forget_parsers()
        await asyncio.gather(*(self._ensure_tokenizer(model, worker, client) for model in worker.models))

    async def close(self, worker: Worker) -> None:
        client = worker.client
        if isinstance(client, GrpcWorkerClient):
            worker.client = None
            await client.close()

    # -- tokenizer ------------------------------------------------------------------------------------------
    async def _ensure_tokenizer(self, model: str, worker: Worker, client: GrpcWorkerClient) -> None:
        if self.state.tokenizers.get(model) is not None:
            return
        task = self._loading.get(model)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(model, worker, client))
            self._loading[model] = task
            task.add_done_callback(lambda _t: self._loading.pop(model, None))
        await asyncio.shield(task)

    async def _load(self, model: str, worker: Worker, client: GrpcWorkerClient) -> None:
        cfg = self.state.config
        sources = [s for s in (cfg.tokenizer_path, cfg.model_path) if s]
        sources += [
            p
            for p in (worker.labels.get("tokenizer_path"), worker.labels.get("model_path"))
            if p and os.path.exists(p)
        ]
        errors: list[str] = []
        tokenizer: Tokenizer | None = None
        source = ""
        for source in sources:
            try:
                tokenizer = await asyncio.to_thread(load_source, source, chat_template_path=cfg.chat_template)
                break
            except Exception as exc:  # a bad path must not stop the next candidate
                errors.append(f"{source}: {exc}")
        if tokenizer is None and not cfg.disable_tokenizer_autoload:
            try:
                data, digest = await client.fetch_tokenizer()
                tokenizer = await asyncio.to_thread(
                    load_from_bundle, data, digest, chat_template_path=cfg.chat_template
                )
                source = f"grpc-bundle:{worker.url}"
            except Exception as exc:
                errors.append(f"GetTokenizer from {worker.url}: {exc}")
        if tokenizer is None:
            message = "; ".join(errors) or "no tokenizer source (set --tokenizer-path or --model-path)"
            self.load_errors[model] = message
            log.error("no tokenizer for model %s: %s", model, message)
            return
        meta = self.state.models.get(model)
        if meta is not None and not tokenizer.eos_token_ids and meta.eos_token_ids:
            tokenizer.eos_token_ids = list(meta.eos_token_ids)
        try:
            self.state.tokenizers.register(model, tokenizer, source=source)
        except TokenizerExistsError:
            pass  # registered meanwhile through the admin API: that one wins
        self.load_errors.pop(model, None)
        log.info("tokenizer for %s registered from %s", model, source)


def tokenizers_ready(state: GrpcState, workers: Any) -> bool:
    """Every healthy gRPC worker's models have a tokenizer (SMG holds readiness until then)."""
    for worker in workers:
        if worker.connection_mode != "grpc" or worker.status is not WorkerStatus.READY:
            continue
        for model in worker.models:
            if state.tokenizers.get(model) is None:
                return False
    return True
