"""POST /v1/embeddings over gRPC: tokenize each input, one `Embed` RPC per input (in parallel), each on a
worker chosen by the model's policy on its token ids, with the same retry/lease rules as Generate."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

import orjson

from herder.routing.context import RequestContext
from herder.routing.grpc.client import EmbedResult, GrpcCallError
from herder.routing.grpc.completions import prompts_of
from herder.routing.grpc.params import bad
from herder.routing.grpc.prober import client_of
from herder.routing.grpc.router import GrpcRouter, engine_request_id, http_error
from herder.routing.retry import RETRYABLE_STATUSES
from herder.server.errors import HttpError
from herder.server.http import Reply
from herder.workers.worker import Worker


async def embed_one(
    router: GrpcRouter, ctx: RequestContext, rid: str, ids: list[int], text: str, reply: Reply
) -> EmbedResult:
    """One Embed call with selection, lease and retries before an answer."""
    attempts = router.retry.attempts
    failed: Worker | None = None
    last: HttpError | None = None
    for attempt in range(attempts):
        worker = router.select(ctx, ids, failed)
        if worker is None:
            raise last or router._no_workers(ctx)
        worker.load += 1
        try:
            result = await client_of(worker, router.state.config.backend).embed(rid, ids, text)
        except GrpcCallError as exc:
            last = http_error(exc, worker)
            retryable = exc.http_status in RETRYABLE_STATUSES
            router.record(worker, not retryable)
            if retryable and attempt + 1 < attempts and not reply.closed:
                failed = worker
                await asyncio.sleep(router.retry.delay_secs(attempt, None))
                continue
            raise last from exc
        finally:
            worker.load -= 1
        router.outcome(ctx, worker, 200, None)
        return result
    raise last or router._no_workers(ctx)


def _encode(values: list[float], fmt: str, dims: int | None) -> Any:
    if dims is not None:
        values = values[:dims]
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return values


async def handle_embeddings(router: GrpcRouter, ctx: RequestContext, reply: Reply) -> None:
    body = ctx.parsed
    entry = router.state.tokenizer(ctx.model)
    inputs = await prompts_of(entry, body.get("input"), "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad("'encoding_format' must be float or base64", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise bad("'dimensions' must be a positive integer", "dimensions")
    results = await asyncio.gather(*(
        embed_one(router, ctx, engine_request_id(ctx, i), ids, text, reply) for i, (text, ids) in enumerate(inputs)
    ))  # fmt: skip
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(r.embedding, fmt, dims)}
        for i, r in enumerate(results)
    ]
    tokens = sum(r.prompt_tokens or len(ids) for r, (_, ids) in zip(results, inputs, strict=True))
    out = orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": ctx.model or router.state.meta(None).name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
    ctx.usage_tail = b'{"usage":{"prompt_tokens":%d,"completion_tokens":0}}' % tokens
    reply.send(200, out)
