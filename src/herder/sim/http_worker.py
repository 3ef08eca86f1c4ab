"""A simulated engine worker speaking real HTTP: OpenAI (chat, completions, embeddings, rerank, classify, models)
and SGLang native (/generate, load and info endpoints), on herder's own HTTP server.

``SimHttpWorker(engine=None, host="127.0.0.1", port=0, die_mode="close", **config_fields)``;
``await w.start()``, ``w.url``, ``await w.stop()``. The engine (``engine.py``) decides timing, outputs and
faults; ``http_shapes.py`` parses bodies and builds the JSON / SSE shapes; this module serves them: routing,
fault injection, pacing of writes, disconnects.

Test hooks: body field ``"sim_output"`` or header ``x-sim-output`` = exact text to return; headers
``x-sim-ttft-ms``, ``x-sim-itl-ms``, ``x-sim-status``, ``x-sim-stall-after``; ``GET /sim/stats`` (counters);
``POST /sim/config`` (change ``SimConfig`` fields at run time, e.g. ``{"healthy": false}``).

Disconnects: ``Reply.on_close`` cancels the handler task, so a client that leaves mid-prefill, mid-stream or
during a stall stops the generation at once; the request is counted as aborted and its running slot released.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson

from herder.server.errors import error_body
from herder.server.http import HttpServer, Reply, Request
from herder.sim.engine import Fault, Overrides, SimConfig, SimEngine, SimRequest
from herder.sim.http_shapes import (
    BadRequest,
    Choice,
    GenSpec,
    StreamEvents,
    embedding_inputs,
    full_response,
    model_info,
    model_name,
    models,
    parse_generation,
    prometheus,
    rerank_inputs,
    server_info,
    worker_loads,
)
from herder.sim.text import prompt_pieces

DieMode = Literal["exit", "close"]


class SimHttpWorker:
    """One simulated worker on one port."""

    def __init__(
        self,
        engine: SimEngine | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        die_mode: DieMode = "close",
        config: SimConfig | None = None,
        **fields: Any,
    ) -> None:
        self.engine = engine if engine is not None else SimEngine(config, **fields)
        self.host = host
        self.port = port
        self.die_mode: DieMode = die_mode
        self.dead = asyncio.Event()
        self.server = HttpServer(self.handle, on_connection_change=self._on_conn)
        self._tasks: set[asyncio.Task[None]] = set()
        self._routes: dict[tuple[bytes, str], Callable[[Request, Reply], Any]] = {
            (b"POST", "/v1/chat/completions"): self._chat,
            (b"POST", "/v1/completions"): self._completions,
            (b"POST", "/generate"): self._generate,
            (b"POST", "/v1/embeddings"): self._embeddings,
            (b"POST", "/v1/rerank"): self._rerank,
            (b"POST", "/rerank"): self._rerank,
            (b"POST", "/v1/classify"): self._classify,
            (b"POST", "/flush_cache"): self._flush,
            (b"POST", "/abort_request"): self._ok_json,
            (b"POST", "/sim/config"): self._sim_config,
            (b"GET", "/sim/stats"): self._sim_stats,
            (b"GET", "/health"): self._health,
            (b"GET", "/health_generate"): self._health,
            (b"GET", "/v1/models"): self._static(lambda: models(self.engine)),
            (b"GET", "/get_model_info"): self._static(lambda: model_info(self.engine)),
            (b"GET", "/model_info"): self._static(lambda: model_info(self.engine)),
            (b"GET", "/get_server_info"): self._static(lambda: server_info(self.engine)),
            (b"GET", "/server_info"): self._static(lambda: server_info(self.engine)),
            (b"GET", "/get_load"): self._static(lambda: [self.engine.loads()]),
            (b"GET", "/v1/loads"): self._static(lambda: worker_loads(self.engine)),
            (b"GET", "/metrics"): self._metrics,
        }
        self._paths = {p for _, p in self._routes}

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await self.server.start(self.host, self.port)
        self.port = self.server.port
        self.dead.clear()

    async def stop(self, grace: float = 0.0) -> None:
        await self.server.stop(grace)

    def _on_conn(self, delta: int) -> None:
        st = self.engine.stats
        st.open_connections += delta
        if delta > 0:
            st.total_connections += 1

    def _die(self, reply: Reply) -> None:
        """``die_after`` reached: exit the process hard, or (in-process) drop the listener and all connections."""
        if self.die_mode == "exit":
            sys.stderr.write(f"[herder sim] worker {self.url} dying (die_after)\n")
            sys.stderr.flush()
            os._exit(1)
        reply.abort()
        self.dead.set()
        task = asyncio.ensure_future(self.server.stop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- dispatch ------------------------------------------------------------------------------------------
    async def handle(self, req: Request, reply: Reply) -> None:
        st = self.engine.stats
        st.requests_total += 1
        key = req.path if req.path in self._paths else "(other)"  # bounded: no entry per unknown path
        st.requests_by_path[key] = st.requests_by_path.get(key, 0) + 1
        if req.method == b"HEAD":  # a HEAD response must carry no body; the server writes whatever we give
            return reply.send(405, b"", content_type=None)
        fn = self._routes.get((req.method, req.path))
        if fn is None:
            if req.path in self._paths:
                return _error(reply, 405, f"method {req.method.decode()} not allowed", "method_not_allowed")
            return _error(reply, 404, f"no route for {req.path}", "not_found")
        await fn(req, reply)

    def _overrides(self, req: Request) -> Overrides:
        if not any(k.startswith(b"x-sim-") for k, _ in req.headers):
            return Overrides()

        def get(name: str) -> str | None:
            v = req.header(name.encode())
            return None if v is None else v.decode("utf-8", "replace")

        return Overrides.from_headers(get)

    def _begin(self, req: Request, reply: Reply, overrides: Overrides) -> bool:
        """Fault injection for an inference request; False when the request was answered (or the worker died)."""
        fault: Fault | None = self.engine.begin(req.path, overrides)
        if fault is None:
            return True
        if fault.kind == "die":
            self._die(reply)
            return False
        headers = [(b"x-smg-error-code", b"simulated_error")]
        if fault.retry_after_s is not None:
            headers.append((b"retry-after", b"%d" % max(0, round(fault.retry_after_s))))
        reply.send(fault.status, error_body(fault.message, "simulated_error", fault.status), headers)
        return False

    # -- generation ----------------------------------------------------------------------------------------
    async def _chat(self, req: Request, reply: Reply) -> None:
        await self._generation(req, reply, "chat")

    async def _completions(self, req: Request, reply: Reply) -> None:
        await self._generation(req, reply, "cmpl")

    async def _generate(self, req: Request, reply: Reply) -> None:
        await self._generation(req, reply, "gen")

    async def _generation(self, req: Request, reply: Reply, kind: Literal["chat", "cmpl", "gen"]) -> None:
        body = _json_body(req, reply, allow_list=False)
        if body is None:
            return
        eng = self.engine
        try:
            spec = parse_generation(kind, body, eng)
        except BadRequest as e:
            return _error(reply, 400, str(e), "invalid_request")
        overrides = self._overrides(req)
        if spec.scripted is None:
            spec.scripted = overrides.output
        if not self._begin(req, reply, overrides):
            return
        rid = spec.rid or eng.new_id()
        runs = [eng.start(req.path, p.units, overrides, rid) for p in spec.prompts]
        choices: list[Choice] = []
        for pi, p in enumerate(spec.prompts):
            for j in range(spec.n):
                seed = p.seed if spec.same_seed else (p.seed + j * 0x9E3779B97F4A7C15) & (2**64 - 1)
                out = eng.plan_output(seed, spec.max_tokens, spec.scripted, spec.stop, spec.stop_token_ids)
                choices.append(Choice(len(choices), pi, out))
        task = _cancel_on_close(reply)
        sent = [0] * len(choices)
        aborted = False
        try:
            if spec.stream:
                await self._stream(reply, spec, runs, choices, sent)
            else:
                await self._respond(reply, spec, runs, choices, sent)
        except asyncio.CancelledError:
            aborted = True
            if task is not None:
                task.uncancel()
        finally:
            reply.on_close = None
            per_run = _tokens_per_run(choices, sent, len(runs))
            for r, n in zip(runs, per_run, strict=True):
                eng.finish(r, n, aborted=aborted or reply.closed)

    async def _respond(
        self, reply: Reply, spec: GenSpec, runs: list[SimRequest], choices: list[Choice], sent: list[int]
    ) -> None:
        eng = self.engine
        longest = max((len(c.out.token_ids) for c in choices), default=0)
        stall = runs[0].stall_after
        if stall is not None and stall < longest:
            # The engine stops after `stall` tokens: the response never comes; wait for the client to give up.
            eng.note_stall()
            await reply.wait_closed()
            raise asyncio.CancelledError
        delay = max(r.ttft_s for r in runs) + eng.total_decode_s(runs[0], longest)
        if delay > 0:
            await asyncio.sleep(delay)
        for c in choices:
            sent[c.index] = len(c.out.token_ids)
        e2e = time.monotonic() - runs[0].started
        reply.send(200, orjson.dumps(full_response(spec, runs, choices, e2e)))

    async def _stream(
        self, reply: Reply, spec: GenSpec, runs: list[SimRequest], choices: list[Choice], sent: list[int]
    ) -> None:
        eng = self.engine
        ev = StreamEvents(spec, runs, choices)
        reply.start_stream()
        ttft = max(r.ttft_s for r in runs)
        if ttft > 0:
            await asyncio.sleep(ttft)
        stall = runs[0].stall_after
        longest = max((len(c.out.token_ids) for c in choices), default=0)
        buf: list[bytes] = [ev.head()]
        for t in range(longest):
            if stall is not None and t >= stall:
                # Stop sending but keep the connection: wait for the client (or a shutdown) to close it.
                if buf:
                    await reply.write(b"".join(buf))
                eng.note_stall()
                await reply.wait_closed()
                raise asyncio.CancelledError
            for c in choices:
                if t < len(c.out.token_ids):
                    buf.append(ev.token(c, t))
                    sent[c.index] = t + 1
            itl = eng.itl_s(runs[0])
            if itl > 0:
                await reply.write(b"".join(buf))
                buf.clear()
                if t + 1 < longest:
                    await asyncio.sleep(itl)
            elif len(buf) >= 512:  # itl 0: few large writes (one syscall each), yield now and then
                await reply.write(b"".join(buf))
                buf.clear()
                await asyncio.sleep(0)
        e2e = time.monotonic() - runs[0].started
        buf.append(ev.tail(e2e))
        reply.end_stream(b"".join(buf))  # last events and the chunked terminator in one write

    # -- other inference endpoints -------------------------------------------------------------------------
    async def _pooled(self, req: Request, reply: Reply, texts: list[str], build: Callable[[], Any]) -> None:
        """Embeddings / rerank / classify: faults, running slot, prefill delay, then one JSON body."""
        eng = self.engine
        overrides = self._overrides(req)
        if not self._begin(req, reply, overrides):
            return
        runs = [eng.start(req.path, prompt_pieces(t), overrides) for t in texts]
        task = _cancel_on_close(reply)
        aborted = False
        try:
            delay = max((r.ttft_s for r in runs), default=0.0)
            if delay > 0:
                await asyncio.sleep(delay)
            reply.send(200, orjson.dumps(build()))
        except asyncio.CancelledError:
            aborted = True
            if task is not None:
                task.uncancel()
        finally:
            reply.on_close = None
            for r in runs:
                eng.finish(r, 0, aborted=aborted)

    async def _embeddings(self, req: Request, reply: Reply) -> None:
        body = _json_body(req, reply, allow_list=False)
        if body is None:
            return
        try:
            texts, seeds, counts = embedding_inputs(body.get("input"))
            dims = body.get("dimensions")
            if dims is not None and (
                not isinstance(dims, int) or isinstance(dims, bool) or not 0 < dims <= 65536
            ):
                raise BadRequest("dimensions must be a positive integer")
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise BadRequest("encoding_format must be 'float' or 'base64'")
        except BadRequest as e:
            return _error(reply, 400, str(e), "invalid_request")
        eng = self.engine

        def build() -> dict[str, Any]:
            data = []
            for i, s in enumerate(seeds):
                vec = eng.embed(s, dims)
                emb: Any = (
                    base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if fmt == "base64" else vec
                )
                data.append({"object": "embedding", "index": i, "embedding": emb})
            pt = sum(counts)
            model = model_name(body, eng)
            return {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": pt, "total_tokens": pt},
            }

        await self._pooled(req, reply, texts, build)

    async def _rerank(self, req: Request, reply: Reply) -> None:
        body = _json_body(req, reply, allow_list=False)
        if body is None:
            return
        try:
            query, docs, top_n, return_docs = rerank_inputs(body)
        except BadRequest as e:
            return _error(reply, 400, str(e), "invalid_request")
        eng = self.engine

        def build() -> dict[str, Any]:
            scored = sorted(
                ((i, eng.relevance(query, d)) for i, d in enumerate(docs)), key=lambda x: (-x[1], x[0])
            )
            results = [
                {"index": i, "relevance_score": s, **({"document": {"text": docs[i]}} if return_docs else {})}
                for i, s in scored[:top_n]
            ]
            pt = sum(len(prompt_pieces(query + " " + d)) for d in docs)
            return {
                "id": "rerank-" + eng.new_id(),
                "model": model_name(body, eng),
                "results": results,
                "usage": {"prompt_tokens": pt, "total_tokens": pt},
            }

        await self._pooled(req, reply, [query + " " + d for d in docs], build)

    async def _classify(self, req: Request, reply: Reply) -> None:
        body = _json_body(req, reply, allow_list=False)
        if body is None:
            return
        try:
            texts, seeds, counts = embedding_inputs(body.get("input", body.get("text")))
        except BadRequest as e:
            return _error(reply, 400, str(e), "invalid_request")
        eng = self.engine

        def build() -> dict[str, Any]:
            labels = eng.config.labels
            data = []
            for i, s in enumerate(seeds):
                probs = eng.classify(s)
                best = max(range(len(probs)), key=probs.__getitem__)
                data.append({"index": i, "label": labels[best], "probs": probs, "num_classes": len(labels)})
            pt = sum(counts)
            return {
                "id": "classify-" + eng.new_id(),
                "object": "list",
                "created": int(time.time()),
                "model": model_name(body, eng),
                "data": data,
                "usage": {"prompt_tokens": pt, "completion_tokens": 0, "total_tokens": pt},
            }

        await self._pooled(req, reply, texts, build)

    # -- admin / info --------------------------------------------------------------------------------------
    def _static(self, make: Callable[[], Any]) -> Callable[[Request, Reply], Any]:
        async def handler(req: Request, reply: Reply) -> None:
            reply.send(200, orjson.dumps(make()))

        return handler

    async def _health(self, req: Request, reply: Reply) -> None:
        if self.engine.config.healthy:
            reply.send(200, b"", content_type=b"text/plain")
        else:
            _error(reply, 503, "simulated unhealthy worker", "unhealthy")

    async def _flush(self, req: Request, reply: Reply) -> None:
        self.engine.flush_cache()
        reply.send(200, b"Cache flushed.\n", content_type=b"text/plain")

    async def _ok_json(self, req: Request, reply: Reply) -> None:
        reply.send(200, b"{}")

    async def _sim_stats(self, req: Request, reply: Reply) -> None:
        reply.send(200, orjson.dumps(self.engine.snapshot()))

    async def _sim_config(self, req: Request, reply: Reply) -> None:
        body = _json_body(req, reply, allow_list=False)
        if body is None:
            return
        try:
            self.engine.update(**body)
        except TypeError as e:
            return _error(reply, 400, str(e), "invalid_request")
        reply.send(200, orjson.dumps(self.engine.snapshot()["config"]))

    async def _metrics(self, req: Request, reply: Reply) -> None:
        reply.send(200, prometheus(self.engine), content_type=b"text/plain; version=0.0.4")


# -- helpers -------------------------------------------------------------------------------------------------
def _error(reply: Reply, status: int, message: str, code: str) -> None:
    reply.send(status, error_body(message, code, status), [(b"x-smg-error-code", code.encode())])


def _json_body(req: Request, reply: Reply, *, allow_list: bool) -> dict[str, Any] | None:
    """Parse the body as a JSON object, or answer 400 and return None."""
    try:
        body = orjson.loads(req.body) if req.body else None
    except orjson.JSONDecodeError as e:
        _error(reply, 400, f"Invalid JSON body: {e}", "invalid_json")
        return None
    if not isinstance(body, dict):
        _error(reply, 400, "The request body must be a JSON object", "invalid_json")
        return None
    return body


def _cancel_on_close(reply: Reply) -> asyncio.Task[Any] | None:
    """Cancel the running handler task when the client disconnects (stops sleeps and stalls at once)."""
    task = asyncio.current_task()
    if task is not None:

        def cancel() -> None:
            task.cancel()

        reply.on_close = cancel
    return task


def _tokens_per_run(choices: list[Choice], sent: list[int], n_runs: int) -> list[int]:
    per = [0] * n_runs
    for c in choices:
        per[c.prompt] += sent[c.index]
    return per
