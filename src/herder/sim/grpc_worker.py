"""Simulated tokens-in/tokens-out gRPC engines: the smg-grpc-proto ``SglangScheduler`` and ``VllmEngine``
services on grpc.aio, with a real HF tokenizer and the shared ``SimEngine`` latency model and prefix cache.

Outputs are deterministic. By default a choice's text is a run of words seeded by the prompt's token ids and
the choice index, re-tokenized with the real tokenizer so the ids are real. A test can script the exact text:

* ``worker.script("text")`` (or a list of texts, one per choice index) queues the output of the next Generate;
* a prompt containing ``<<sim_output:BASE64>>`` (see :func:`sim_output_marker`) returns the decoded text;
* gRPC metadata ``x-sim-output`` (and the other ``x-sim-*`` knobs of ``engine.Overrides``) also apply.

A scripted text is emitted token by token, then the EOS token, so Qwen3 ``<think>``/``<tool_call>`` blocks,
non-ASCII text, or a stop string spanning token boundaries all come out exactly as written.

This module holds the runtime-neutral ``SimCore`` and the worker lifecycle; the two proto servicers (and
``GenSpec``) are in ``grpc_servicers`` and the tokenizer (``SimTokenizer``, ``load_tokenizer``,
``tokenizer_bundle``, ``default_tokenizer_dir``) in ``grpc_tokenizer``; both are re-exported from here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import grpc
import grpc.aio
from google.protobuf.message import Message
from smg_grpc_proto.generated import sglang_scheduler_pb2_grpc, vllm_engine_pb2_grpc

from herder.routing.grpc.client import GRPC_TO_HTTP_STATUS
from herder.sim.engine import Overrides, SimConfig, SimEngine
from herder.sim.grpc_servicers import BUNDLE_CHUNK_BYTES as BUNDLE_CHUNK_BYTES
from herder.sim.grpc_servicers import GenSpec, SglangServicer, VllmServicer, _Choice
from herder.sim.grpc_tokenizer import BUNDLE_FILES as BUNDLE_FILES
from herder.sim.grpc_tokenizer import DEFAULT_CONTEXT_LENGTH as DEFAULT_CONTEXT_LENGTH
from herder.sim.grpc_tokenizer import SimTokenizer, default_tokenizer_dir, load_tokenizer, tokenizer_bundle
from herder.sim.text import generate_word_ids, stable_hash_ids, word_piece

Runtime = Literal["sglang", "vllm"]
MARKER_RE = re.compile(r"<<sim_output:([A-Za-z0-9+/=_-]*)>>")
FILLER_BLOCK_WORDS = 256
# HTTP status of an injected engine fault -> gRPC status (the inverse of the gateway's one mapping table).
_STATUS_TO_GRPC = {http: code for code, http in GRPC_TO_HTTP_STATUS.items()}
# Let the gateway's idle keep-alive pings (every 30 s) through instead of answering them with GOAWAY.
SERVER_OPTIONS = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
)


def sim_output_marker(text: str) -> str:
    """The prompt marker that makes the worker return exactly ``text``."""
    return "<<sim_output:" + base64.b64encode(text.encode("utf-8")).decode("ascii") + ">>"


@dataclass(slots=True)
class _Running:
    """A Generate in flight (for Abort)."""

    spec: GenSpec
    abort: asyncio.Event = field(default_factory=asyncio.Event)


def fake_logprob(token_id: int, position: int) -> float:
    """Deterministic pseudo logprob in (-5, 0)."""
    return -(((token_id * 2654435761 + position * 40503) % 10007) / 2002.0) - 0.0001


class SimCore:
    """Runtime-neutral behaviour shared by the two servicers."""

    def __init__(self, runtime: Runtime, tokenizer: SimTokenizer, engine: SimEngine, **info: Any) -> None:
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.engine = engine
        self.model_path: str = info.get("model_path") or engine.config.model
        self.served_model_name: str = info.get("served_model_name") or engine.config.model
        self.context_length: int = int(info.get("max_context_length") or tokenizer.context_length)
        self.kv_connector: str = info.get("kv_connector") or ""
        self.kv_engine_id = f"sim-{os.getpid()}-{id(self):x}"
        self.requests = 0
        self.aborted_ids: list[str] = []
        self.cancelled_ids: list[str] = []
        self.received: deque[Message] = deque(maxlen=64)
        self.running: dict[str, _Running] = {}
        self.scripted: deque[list[str]] = deque()
        self.fail_next: deque[tuple[grpc.StatusCode, str]] = deque()
        self.started = time.time()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def tokenizer_bundle(self) -> tuple[bytes, str]:
        """(zip of the tokenizer folder, sha256 hex) for GetTokenizer. Resolved through this module's
        ``tokenizer_bundle`` at call time, so patching ``grpc_worker.tokenizer_bundle`` still takes effect."""
        return tokenizer_bundle(self.tokenizer.dir)

    def changed(self) -> None:
        """Wake the ``wait_until`` callers whose predicate now holds (synchronous: safe in ``finally``)."""
        for predicate, fut in self._waiters:
            if not fut.done() and predicate():
                fut.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (re-checked on every abort, cancel and finish)."""
        if predicate():
            return
        entry = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        finally:
            self._waiters.remove(entry)

    # ------------------------------------------------------------------------------------------ outputs

    def _scripted_text(self, spec: GenSpec, overrides: Overrides) -> list[str] | None:
        prompt = spec.original_text + "\n" + self.tokenizer.decode(spec.input_ids, skip_special_tokens=False)
        m = MARKER_RE.search(prompt)
        if m is not None:
            raw = m.group(1)
            try:
                data = base64.b64decode(
                    raw + "=" * (-len(raw) % 4), altchars=b"-_" if "-" in raw or "_" in raw else None
                )
                return [data.decode("utf-8")]
            except (binascii.Error, UnicodeDecodeError):
                pass
        if self.scripted:
            return self.scripted.popleft()
        if overrides.output is not None:
            return [overrides.output]
        return None

    def _filler(self, seed: int) -> Iterator[int]:
        # Unbounded deterministic stream of real token ids: word blocks, re-tokenized block by block.
        block = 0
        while True:
            words = generate_word_ids(
                (seed + block * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF, FILLER_BLOCK_WORDS
            )
            yield from self.tokenizer.encode("".join(word_piece(w) for w in words))
            block += 1

    def _source(self, spec: GenSpec, index: int, scripted: list[str] | None) -> Iterator[int]:
        seed = stable_hash_ids(spec.input_ids) + index * 0x632BE59BD9B4E019
        eos = self.tokenizer.eos_token_ids[0]
        if scripted is not None:
            head: list[int] = self.tokenizer.encode(scripted[index % len(scripted)])
        elif spec.max_new_tokens is None:
            head = self.tokenizer.encode(
                "".join(word_piece(w) for w in generate_word_ids(seed, self.engine.config.output_tokens))
            )[: self.engine.config.output_tokens]
        else:
            # Like the HTTP simulator: an explicit limit is filled up to the limit ("length").
            yield from self._filler(seed)
            return
        yield from head
        yield eos
        yield from self._filler(seed ^ 0x5DEECE66D)

    def _step(self, spec: GenSpec, ch: _Choice, limit: int) -> None:
        """Produce the next token of ``ch`` and decide whether it finished."""
        eos = self.tokenizer.eos_token_ids
        tok = next(ch.source)
        while tok in eos and (spec.ignore_eos or len(ch.ids) < spec.min_new_tokens):
            tok = next(ch.source)
        ch.ids.append(tok)
        ch.new.append(tok)
        count = len(ch.ids)
        if count >= spec.min_new_tokens:
            if tok in spec.stop_token_ids:
                ch.finish_reason, ch.matched = "stop", tok
                return
            if tok in eos:
                # SGLang reports the EOS id as the matched token; vLLM reports no matched_stop for EOS.
                ch.finish_reason, ch.matched = "stop", (tok if self.runtime == "sglang" else None)
                return
            if spec.stop:
                longest = max(len(s) for s in spec.stop)
                tail = self.tokenizer.decode(ch.ids[-(4 * longest + 4) :], spec.skip_special_tokens)
                for s in spec.stop:
                    if s and s in tail:
                        ch.finish_reason, ch.matched = "stop", s
                        return
        if count >= limit:
            ch.finish_reason = "length"

    def logprobs_for(self, spec: GenSpec, ids: Sequence[int], start: int) -> dict[str, Any]:
        """Fake OutputLogProbs fields for ``ids`` at output positions ``start``..."""
        vocab = self.tokenizer.vocab_size
        values = [fake_logprob(t, start + i) for i, t in enumerate(ids)]
        top: list[dict[str, list[Any]]] = []
        for t, v in zip(ids, values, strict=True):
            alt = [t] + [(t + k * 7919) % vocab for k in range(1, max(spec.top_logprobs, 0))]
            top.append({"token_ids": alt, "values": [v - 0.5 * k for k in range(len(alt))]})
        return {
            "token_logprobs": values,
            "token_ids": list(ids),
            "top_logprobs": top if spec.top_logprobs else [],
        }

    # ---------------------------------------------------------------------------------------- generation

    async def generate(
        self, spec: GenSpec, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[tuple[str, _Choice, int, int, int], None]:
        """Run one request; yields ("chunk" | "complete", choice, prompt, completion, cached) events."""
        self.requests += 1
        meta = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        overrides = Overrides.from_headers(meta.get)
        if self.fail_next:
            code, msg = self.fail_next.popleft()
            await context.abort(code, msg)
        fault = self.engine.begin("generate", overrides)
        if fault is not None:
            if fault.kind == "die":
                await context.abort(grpc.StatusCode.UNAVAILABLE, fault.message)
            await context.abort(_STATUS_TO_GRPC.get(fault.status, grpc.StatusCode.INTERNAL), fault.message)
        if not spec.input_ids:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input_ids must not be empty")
        if len(spec.input_ids) >= self.context_length:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"prompt has {len(spec.input_ids)} tokens; the context length is {self.context_length}",
            )
        if spec.request_id in self.running:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"duplicate request_id {spec.request_id}")
        scripted = self._scripted_text(spec, overrides)
        limit = self.context_length - len(spec.input_ids)
        if spec.max_new_tokens is not None:
            limit = min(limit, spec.max_new_tokens)
        choices = [_Choice(i, self._source(spec, i, scripted)) for i in range(max(spec.n, 1))]
        req = self.engine.start("generate", spec.input_ids, overrides, rid=spec.request_id)
        run = self.running[spec.request_id] = _Running(spec)
        total = 0
        try:
            prompt, cached = req.prompt_tokens, req.cached_tokens
            if await self._sleep(run, req.ttft_s) or limit <= 0:
                for ch in choices:
                    ch.finish_reason = "abort" if run.abort.is_set() else "length"
                    yield "complete", ch, prompt, 0, cached
                return
            live = choices
            stall = req.stall_after
            while live:
                for ch in live:
                    self._step(spec, ch, limit)
                total = sum(len(ch.ids) for ch in choices)
                for ch in live:
                    if spec.stream and ch.new:
                        yield "chunk", ch, prompt, len(ch.ids), cached
                    if ch.finish_reason:
                        yield "complete", ch, prompt, len(ch.ids), cached
                    ch.new = []
                live = [ch for ch in live if not ch.finish_reason]
                if stall is not None and live and total >= stall:
                    self.engine.note_stall()
                    await run.abort.wait()  # hang until aborted or cancelled
                if live and await self._sleep(run, self.engine.itl_s(req)):
                    for ch in live:
                        ch.finish_reason = "abort"
                        yield "complete", ch, prompt, len(ch.ids), cached
                    live = []
        except (asyncio.CancelledError, GeneratorExit):
            # The client dropped the stream (grpc cancels the handler or closes this generator).
            self.cancelled_ids.append(spec.request_id)
            self.engine.finish(req, total, aborted=True)
            raise
        finally:
            self.running.pop(spec.request_id, None)
            self.engine.finish(req, total, aborted=run.abort.is_set())
            self.changed()

    @staticmethod
    async def _sleep(run: _Running, seconds: float) -> bool:
        """Sleep ``seconds`` unless aborted first; True when the request was aborted."""
        if run.abort.is_set():
            return True
        if seconds <= 0:
            await asyncio.sleep(0)  # let other streams and Abort calls run
            return run.abort.is_set()
        try:
            await asyncio.wait_for(run.abort.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def abort(self, request_ids: Sequence[str]) -> None:
        for rid in request_ids:
            self.aborted_ids.append(rid)
            run = self.running.get(rid)
            if run is not None:
                run.abort.set()
        self.changed()


# ----------------------------------------------------------------------------------------------- worker


@dataclass(slots=True)
class SimGrpcWorker:
    """A running simulated gRPC worker. ``core`` holds the counters tests look at."""

    runtime: Runtime
    host: str
    port: int
    server: grpc.aio.Server
    core: SimCore

    @property
    def url(self) -> str:
        return f"grpc://{self.host}:{self.port}"

    @property
    def engine(self) -> SimEngine:
        return self.core.engine

    @property
    def requests(self) -> int:
        """Generate calls received."""
        return self.core.requests

    @property
    def aborted_ids(self) -> list[str]:
        """Request ids named by Abort calls, in arrival order."""
        return self.core.aborted_ids

    @property
    def cancelled_ids(self) -> list[str]:
        """Request ids whose Generate call the client cancelled (stream dropped)."""
        return self.core.cancelled_ids

    @property
    def running(self) -> int:
        """Generate calls in flight."""
        return len(self.core.running)

    @property
    def received(self) -> list[Message]:
        """The most recent GenerateRequest protos received (up to 64), oldest first."""
        return list(self.core.received)

    def script(self, output: str | Sequence[str]) -> None:
        """Queue the exact output of the next Generate (a list gives choice ``i`` the text ``output[i % len]``)."""
        self.core.scripted.append([output] if isinstance(output, str) else list(output))

    def fail_next(self, code: grpc.StatusCode, message: str = "simulated failure") -> None:
        """Make the next Generate fail with gRPC status ``code``."""
        self.core.fail_next.append((code, message))

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked whenever a request finishes, is cancelled or aborted."""
        await self.core.wait_until(predicate)

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)


_ENGINE_FIELDS = frozenset(f.name for f in fields(SimConfig))


async def start_grpc_worker(
    runtime: Runtime,
    tokenizer_dir: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **engine_opts: Any,
) -> SimGrpcWorker:
    """Start one simulated worker. ``engine_opts`` are ``SimConfig`` fields (latency, cache, faults, model...)
    plus ``served_model_name``, ``model_path`` and ``max_context_length`` for GetModelInfo, and
    ``kv_connector`` (vLLM GetServerInfo, e.g. "NixlConnector")."""
    if runtime not in ("sglang", "vllm"):
        raise ValueError(f"unsupported simulated runtime {runtime!r} (sglang or vllm)")
    tok_dir = tokenizer_dir or default_tokenizer_dir()
    tokenizer = await asyncio.to_thread(load_tokenizer, os.path.abspath(tok_dir))
    info = {k: engine_opts.pop(k) for k in list(engine_opts) if k not in _ENGINE_FIELDS}
    unknown = set(info) - {"served_model_name", "model_path", "max_context_length", "kv_connector"}
    if unknown:
        raise TypeError(f"unknown gRPC worker options: {sorted(unknown)}")
    engine = SimEngine(**engine_opts)
    core = SimCore(runtime, tokenizer, engine, **info)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    if runtime == "sglang":
        sglang_scheduler_pb2_grpc.add_SglangSchedulerServicer_to_server(SglangServicer(core), server)
    else:
        vllm_engine_pb2_grpc.add_VllmEngineServicer_to_server(VllmServicer(core), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC worker to {host}:{port}")
    await server.start()
    return SimGrpcWorker(runtime, host, bound, server, core)


async def start_grpc_workers(
    count: int,
    base_port: int,
    tokenizer_dir: str | None,
    runtime: Runtime,
    host: str = "127.0.0.1",
    **opts: Any,
) -> list[SimGrpcWorker]:
    """Start ``count`` workers on ``base_port``, ``base_port + 1``... (``base_port`` 0 = ephemeral ports)."""
    workers: list[SimGrpcWorker] = []
    try:
        for i in range(count):
            port = base_port + i if base_port else 0
            workers.append(await start_grpc_worker(runtime, tokenizer_dir, host, port, **dict(opts)))
    except BaseException:
        for w in workers:
            await w.stop(0)
        raise
    return workers


async def run_grpc_workers(
    count: int,
    base_port: int,
    tokenizer_dir: str | None,
    runtime: Runtime,
    host: str = "127.0.0.1",
    **opts: Any,
) -> None:
    """Serve ``count`` simulated gRPC workers until cancelled (for ``herder sim``); prints their URLs."""
    workers = await start_grpc_workers(count, base_port, tokenizer_dir, runtime, host, **opts)
    for w in workers:
        print(f"sim {runtime} gRPC worker listening on {w.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for w in workers:
            await w.stop(1.0)
