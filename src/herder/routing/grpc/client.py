"""``GrpcWorkerClient``: one multiplexed grpc.aio channel per tokens-in/tokens-out worker.

The client detects the worker's runtime (SGLang, vLLM, TRT-LLM, TokenSpeed, MLX) by asking each service in
turn for its model info, then speaks that runtime's proto through the adapters in ``runtimes.py``. Every
gRPC failure surfaces as ``GrpcCallError`` carrying the HTTP status the gateway should answer with.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message
from smg_grpc_proto.generated import common_pb2

from herder.routing.grpc.runtimes import (
    RUNTIME_ORDER,
    RUNTIMES,
    GenerateAssembler,
    GenerateEvent,
    ModelInfo,
    RuntimeSpec,
    message_to_dict,
)
from herder.routing.grpc.sampling import GenerateParams

log = logging.getLogger(__name__)

# gRPC status -> HTTP status the gateway answers with. Anything not listed is a 500.
GRPC_TO_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.CANCELLED: 499,
}
DEFAULT_HTTP_STATUS = 500

# Keep-alive: ping every 30 s, give up after 10 s, also while idle, so a dead worker is noticed between
# requests. Reconnection with backoff is grpc's own. Messages can be large (tokenizer chunks, embeddings).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)
DETECT_TIMEOUT_S = 2.0
RPC_TIMEOUT_S = 10.0
TOKENIZER_TIMEOUT_S = 60.0
ABORT_TIMEOUT_S = 5.0


def http_status_for(code: grpc.StatusCode | None) -> int:
    """The HTTP status for a gRPC status code (the one mapping table)."""
    return GRPC_TO_HTTP_STATUS.get(code, DEFAULT_HTTP_STATUS) if code is not None else DEFAULT_HTTP_STATUS


class GrpcCallError(Exception):
    """A failed call to a worker: the gRPC code name, the worker's message and the mapped HTTP status."""

    def __init__(self, grpc_code: str, message: str, http_status: int) -> None:
        super().__init__(f"{grpc_code}: {message}")
        self.grpc_code = grpc_code
        self.message = message
        self.http_status = http_status

    @classmethod
    def from_rpc_error(cls, err: grpc.aio.AioRpcError) -> GrpcCallError:
        code = err.code()
        return cls(code.name if code is not None else "UNKNOWN", err.details() or "", http_status_for(code))

    @classmethod
    def of(cls, code: grpc.StatusCode, message: str) -> GrpcCallError:
        return cls(code.name, message, http_status_for(code))


@dataclass(slots=True)
class EmbedResult:
    """An Embed answer."""

    embedding: list[float]
    prompt_tokens: int
    dim: int


def grpc_target(url: str) -> str:
    """``grpc://host:port`` (or a bare ``host:port``) -> the channel target ``host:port``."""
    target = url.split("://", 1)[1] if "://" in url else url
    target = target.rstrip("/")
    if not target:
        raise ValueError(f"invalid gRPC worker url: {url!r}")
    return target


_HINT_ALIASES = {
    "trt-llm": "trtllm",
    "tensorrt-llm": "trtllm",
    "tensorrt_llm": "trtllm",
    "token-speed": "tokenspeed",
}


def normalize_runtime_hint(hint: str | None) -> str | None:
    """A ``--backend`` value as a gRPC runtime name; None for hints that name no gRPC runtime (``openai``,
    ``anthropic``...), which then leave detection to the default order."""
    if not hint:
        return None
    name = _HINT_ALIASES.get(hint.lower(), hint.lower())
    return name if name in RUNTIMES else None


class GrpcWorkerClient:
    """Client for one gRPC worker. Safe to share across concurrent requests (one multiplexed channel)."""

    def __init__(
        self,
        url: str,
        runtime_hint: str | None = None,
        *,
        detect_timeout: float = DETECT_TIMEOUT_S,
        channel_options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
    ) -> None:
        self.url = url
        self.target = grpc_target(url)
        self.runtime_hint = normalize_runtime_hint(runtime_hint)
        self.runtime: str | None = None
        self._detect_timeout = detect_timeout
        self._options = list(channel_options)
        self._chan: grpc.aio.Channel | None = None
        self._stubs: dict[str, Any] = {}
        self._model_info: ModelInfo | None = None
        self._detect_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------ plumbing

    def _channel(self) -> grpc.aio.Channel:
        # Created lazily so it binds to the running event loop.
        if self._chan is None:
            self._chan = grpc.aio.insecure_channel(self.target, options=self._options)
        return self._chan

    def _stub(self, runtime: str) -> Any:
        stub = self._stubs.get(runtime)
        if stub is None:
            stub = self._stubs[runtime] = RUNTIMES[runtime].stub_cls(self._channel())
        return stub

    async def _spec(self) -> RuntimeSpec:
        return RUNTIMES[await self.detect()]

    async def _unary(self, method: Any, request: Message, timeout: float | None) -> Any:
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise GrpcCallError.from_rpc_error(err) from err

    async def detect(self) -> str:
        """The worker's runtime: the hint first, then RUNTIME_ORDER; the first service whose GetModelInfo
        is implemented wins. Cached after the first success."""
        if self.runtime is not None:
            return self.runtime
        async with self._detect_lock:
            if self.runtime is not None:
                return self.runtime
            order = list(RUNTIME_ORDER)
            if self.runtime_hint is not None:
                order.remove(self.runtime_hint)
                order.insert(0, self.runtime_hint)
            for name in order:
                spec = RUNTIMES[name]
                try:
                    resp = await self._stub(name).GetModelInfo(
                        spec.pb2.GetModelInfoRequest(), timeout=self._detect_timeout
                    )
                except grpc.aio.AioRpcError as err:
                    if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                        continue
                    raise GrpcCallError.from_rpc_error(err) from err
                self.runtime = name
                self._model_info = spec.model_info(name, resp)
                return name
            raise GrpcCallError.of(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{self.url}: no known gRPC runtime service ({', '.join(order)})",
            )

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Wait for pending aborts, then close the channel."""
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._chan is not None:
            await self._chan.close()
            self._chan = None
            self._stubs.clear()

    async def __aenter__(self) -> GrpcWorkerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------------------------- management

    async def health(self, timeout: float = RPC_TIMEOUT_S) -> bool:
        """True when the worker answers HealthCheck as healthy; False on any failure."""
        try:
            spec = await self._spec()
            resp = await self._unary(
                self._stub(spec.name).HealthCheck, spec.pb2.HealthCheckRequest(), timeout
            )
        except GrpcCallError:
            return False
        return spec.healthy(resp)

    async def model_info(self, *, refresh: bool = False, timeout: float = RPC_TIMEOUT_S) -> ModelInfo:
        """The worker's model info (fetched during detection; ``refresh`` asks again)."""
        spec = await self._spec()
        if self._model_info is None or refresh:
            resp = await self._unary(
                self._stub(spec.name).GetModelInfo, spec.pb2.GetModelInfoRequest(), timeout
            )
            self._model_info = spec.model_info(spec.name, resp)
        return self._model_info

    async def server_info(self, timeout: float = RPC_TIMEOUT_S) -> dict[str, Any]:
        """GetServerInfo as a dict (proto field names; Struct fields become nested dicts)."""
        spec = await self._spec()
        resp = await self._unary(
            self._stub(spec.name).GetServerInfo, spec.pb2.GetServerInfoRequest(), timeout
        )
        return message_to_dict(resp)

    async def loads(self, include: Sequence[str] = (), timeout: float = RPC_TIMEOUT_S) -> dict[str, Any]:
        """GetLoads as a dict. Raises GrpcCallError(UNIMPLEMENTED) for runtimes without it."""
        spec = await self._spec()
        if not spec.has_loads:
            raise GrpcCallError.of(grpc.StatusCode.UNIMPLEMENTED, f"{spec.name} workers have no GetLoads")
        req = spec.pb2.GetLoadsRequest(include=list(include))
        return message_to_dict(await self._unary(self._stub(spec.name).GetLoads, req, timeout))

    async def flush_cache(self, timeout_s: float = 0.0, timeout: float = RPC_TIMEOUT_S) -> bool:
        """FlushCache; True when the worker reports success."""
        spec = await self._spec()
        if not spec.has_flush:
            raise GrpcCallError.of(grpc.StatusCode.UNIMPLEMENTED, f"{spec.name} workers have no FlushCache")
        req = common_pb2.FlushCacheRequest(timeout_s=timeout_s)
        resp = await self._unary(self._stub(spec.name).FlushCache, req, timeout)
        return bool(resp.success)

    async def fetch_tokenizer(self, timeout: float = TOKENIZER_TIMEOUT_S) -> tuple[bytes, str]:
        """The worker's tokenizer bundle: (zip bytes, sha256 hex). The sha256 sent on the last chunk is
        verified; a mismatch raises GrpcCallError(DATA_LOSS)."""
        spec = await self._spec()
        parts: list[bytes] = []
        announced = ""
        try:
            async for chunk in self._stub(spec.name).GetTokenizer(
                common_pb2.GetTokenizerRequest(), timeout=timeout
            ):
                parts.append(chunk.data)
                if chunk.sha256:
                    announced = chunk.sha256
        except grpc.aio.AioRpcError as err:
            raise GrpcCallError.from_rpc_error(err) from err
        data = b"".join(parts)
        digest = hashlib.sha256(data).hexdigest()
        if announced and announced.lower() != digest:
            raise GrpcCallError.of(
                grpc.StatusCode.DATA_LOSS,
                f"tokenizer bundle sha256 mismatch: worker {announced}, got {digest}",
            )
        return data, digest

    async def abort(
        self, request_ids: Sequence[str], reason: str = "", timeout: float = ABORT_TIMEOUT_S
    ) -> None:
        """Abort requests on the worker (one call for list-taking runtimes, one per id otherwise)."""
        if not request_ids:
            return
        spec = await self._spec()
        stub = self._stub(spec.name)
        if spec.abort_takes_list:
            await self._unary(stub.Abort, spec.pb2.AbortRequest(request_ids=list(request_ids)), timeout)
            return
        kwargs: dict[str, str] = {"reason": reason} if spec.name in ("sglang", "tokenspeed") else {}
        await asyncio.gather(
            *(
                self._unary(stub.Abort, spec.pb2.AbortRequest(request_id=rid, **kwargs), timeout)
                for rid in request_ids
            )
        )

    async def embed(
        self,
        request_id: str,
        input_ids: Sequence[int],
        original_text: str = "",
        timeout: float = RPC_TIMEOUT_S,
    ) -> EmbedResult:
        """Embed a tokenized input."""
        spec = await self._spec()
        if not spec.has_embed:
            raise GrpcCallError.of(grpc.StatusCode.UNIMPLEMENTED, f"{spec.name} workers have no Embed")
        pb2 = spec.pb2
        if spec.name == "trtllm":
            tok = pb2.TokenizedInput(original_text=original_text, input_token_ids=list(input_ids))
        else:
            tok = pb2.TokenizedInput(original_text=original_text, input_ids=list(input_ids))
        resp = await self._unary(
            self._stub(spec.name).Embed, pb2.EmbedRequest(request_id=request_id, tokenized=tok), timeout
        )
        emb = list(resp.embedding)
        dim = int(getattr(resp, "embedding_dim", 0)) or len(emb)
        return EmbedResult(embedding=emb, prompt_tokens=int(resp.prompt_tokens), dim=dim)

    # ---------------------------------------------------------------------------------- generation

    async def build_request(self, params: GenerateParams) -> Message:
        """The runtime-specific proto GenerateRequest for ``params`` (detects the runtime if needed)."""
        return (await self._spec()).build_request(params)

    async def generate(
        self,
        params: GenerateParams,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> AsyncIterator[GenerateEvent]:
        """Run Generate and yield neutral events (``Chunk`` / ``Complete``), multiplexed by ``index``.

        In streaming mode the chunks of an index carry each output id exactly once; ``Complete.output_ids``
        is always the full output of its index. If the consumer stops early (break, cancellation,
        aclose) before every index completed, the call is cancelled and ``Abort`` is sent to the worker.
        ``metadata`` goes out as gRPC metadata (trace context; the simulator's ``x-sim-*`` knobs).
        """
        spec = await self._spec()
        request = spec.build_request(params)
        call = self._stub(spec.name).Generate(
            request, timeout=timeout, metadata=tuple(metadata) if metadata else None
        )
        assembler = GenerateAssembler(spec.parse, params.stream)
        ended = False
        try:
            async for resp in call:
                for event in assembler.feed(resp):
                    yield event
            ended = True
        except grpc.aio.AioRpcError as err:
            ended = True  # the worker (or the deadline) ended the call; nothing to abort
            raise GrpcCallError.from_rpc_error(err) from err
        finally:
            if not ended and len(assembler.finished_indices) < max(params.n, 1):
                call.cancel()
                self._spawn(self._abort_quietly(params.request_id))

    async def _abort_quietly(self, request_id: str) -> None:
        try:
            await self.abort([request_id], reason="client disconnected")
        except (GrpcCallError, asyncio.CancelledError) as err:
            # Best effort: the worker may already be gone; the cancelled call frees it anyway.
            log.debug("abort of %s on %s failed: %s", request_id, self.url, err)
