"""Simulated PD (prefill/decode disaggregation) workers that check the gateway's pairing for real.

SGLang flavour: a request carries `bootstrap_host`, `bootstrap_port`, `bootstrap_room` (scalars, or arrays with
one entry per item: prompt-major, then choice). The **prefill** worker does the prompt's work (prefix cache,
`prefill_tps`), records each room with its prompt's hash, and serves them on its bootstrap port
(`GET /bootstrap/{room}`, which waits for a room that is announced or still being prefilled). The **decode**
worker fetches every room's "KV" from `bootstrap_host:bootstrap_port` over loopback, checks the prompt hash,
then generates with no prompt cost of its own (its time to first token is the wait for the prefill plus
`transfer_ms`). A missing field, a wrong host or port, an unknown room or another prompt's room fails the
request loudly (500 `pd_bootstrap_failed`) and is counted.

vLLM flavour: the prefill (`kv_transfer_params.do_remote_decode`) mints a transfer id and a nonce and returns
them in `kv_transfer_params` with its bootstrap address; the decode (`do_remote_prefill`) fetches
`GET /kv_transfer/{id}?nonce=...` from that address and checks the prompt hashes: parameters that did not come
from that prefill fail.

Logprobs (/generate `return_logprob`): the prefill reports `input_token_logprobs` for every prompt position but
the last, the decode for the last one only, so a correct merge (prefill's then decode's) equals what a regular
worker returns.

``GET /sim/stats`` adds a ``pd`` section with the counters. ``SimPdFleet(prefill=2, decode=2, flavor=...)``
(in ``pd.py``) starts a fleet in-process.

Split from ``pd.py``, which re-exports the public names of this module (``herder.sim.pd`` stays the entry
point).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson

from herder.server.http import HttpServer, Reply, Request
from herder.sim.engine import SimConfig, SimEngine, SimRequest
from herder.sim.http_shapes import (
    BadRequest,
    Choice,
    GenSpec,
    Prompt,
    StreamEvents,
    _lp,
    full_response,
    parse_generation,
)
from herder.sim.http_worker import (
    DieMode,
    SimHttpWorker,
    _cancel_on_close,
    _error,
    _json_body,
    _tokens_per_run,
)
from herder.sim.text import piece_id
from herder.workers.pool import UpstreamError, UpstreamPool, fetch

Role = Literal["prefill", "decode"]
Flavor = Literal["sglang", "vllm"]
MAX_ROOMS = 65536
BOOTSTRAP_FAILED = "pd_bootstrap_failed"


@dataclass(slots=True)
class PdStats:
    """PD counters (GET /sim/stats -> "pd"). Every *_errors / mismatch counter is zero in a correct run."""

    prefilled_rooms: int = 0
    served_rooms: int = 0
    transfers_ok: int = 0
    missing_params: int = 0
    bad_params: int = 0
    unreachable_bootstrap: int = 0
    unknown_room: int = 0
    prompt_mismatch: int = 0
    nonce_mismatch: int = 0

    @property
    def failures(self) -> int:
        return (
            self.missing_params
            + self.bad_params
            + self.unreachable_bootstrap
            + self.unknown_room
            + self.prompt_mismatch
            + self.nonce_mismatch
        )


class PdFailure(Exception):
    """The decode could not get its KV: the request fails loudly."""


@dataclass(slots=True)
class _Room:
    ready: asyncio.Event
    prompt_hash: int | None = None


class SimPdWorker(SimHttpWorker):
    """A simulated prefill or decode worker (``role``), SGLang or vLLM style (``flavor``)."""

    def __init__(
        self,
        role: Role,
        engine: SimEngine | None = None,
        *,
        flavor: Flavor = "sglang",
        host: str = "127.0.0.1",
        port: int = 0,
        bootstrap_port: int = 0,
        transfer_ms: float = 0.0,
        bootstrap_wait_s: float = 30.0,
        die_mode: DieMode = "close",
        config: SimConfig | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(engine, host=host, port=port, die_mode=die_mode, config=config, **fields)
        self.role: Role = role
        self.flavor: Flavor = flavor
        self.bootstrap_port = bootstrap_port
        self.transfer_s = transfer_ms / 1000.0
        self.bootstrap_wait_s = bootstrap_wait_s
        self.pd = PdStats()
        self.rooms_seen: deque[int] = deque(maxlen=4096)  # bootstrap rooms of recent requests, for tests
        self._rooms: OrderedDict[int, _Room] = OrderedDict()
        self._transfers: OrderedDict[str, tuple[str, list[int]]] = OrderedDict()
        self._pools: dict[tuple[str, int], UpstreamPool] = {}
        self.bootstrap: HttpServer | None = HttpServer(self._bootstrap) if role == "prefill" else None

    async def start(self) -> None:
        await super().start()
        if self.bootstrap is not None:
            await self.bootstrap.start(self.host, self.bootstrap_port)
            self.bootstrap_port = self.bootstrap.port

    async def stop(self, grace: float = 0.0) -> None:
        await super().stop(grace)
        if self.bootstrap is not None:
            await self.bootstrap.stop(grace)
        for pool in self._pools.values():
            pool.close()

    async def _sim_stats(self, req: Request, reply: Reply) -> None:
        snap = self.engine.snapshot()
        snap["pd"] = {
            **asdict(self.pd),
            "failures": self.pd.failures,
            "role": self.role,
            "flavor": self.flavor,
        }
        reply.send(200, orjson.dumps(snap))

    # -- bootstrap server (prefill side) ---------------------------------------------------------------------------
    def _room(self, room: int) -> _Room:
        entry = self._rooms.get(room)
        if entry is None:
            entry = self._rooms[room] = _Room(asyncio.Event())
            while len(self._rooms) > MAX_ROOMS:
                self._rooms.popitem(last=False)
        return entry

    async def _bootstrap(self, req: Request, reply: Reply) -> None:
        parts = req.path.strip("/").split("/")
        if req.method != b"GET" or len(parts) != 2:
            return _error(reply, 404, f"no route for {req.path}", "not_found")
        kind, key = parts
        if kind == "bootstrap":
            try:
                room = int(key)
            except ValueError:
                return _error(reply, 400, "room must be an integer", "invalid_request")
            entry = self._room(room)
            try:
                await asyncio.wait_for(entry.ready.wait(), self.bootstrap_wait_s)
            except TimeoutError:
                self._rooms.pop(room, None)
                return _error(reply, 404, f"room {room} was never prefilled here", "unknown_room")
            self.pd.served_rooms += 1
            reply.send(200, orjson.dumps({"room": room, "prompt_hash": entry.prompt_hash}))
            return None
        if kind == "kv_transfer":
            found = self._transfers.get(key)
            if found is None:
                return _error(reply, 404, f"transfer {key} unknown", "unknown_room")
            nonce = req.query.decode().removeprefix("nonce=")
            if not secrets.compare_digest(nonce, found[0]):
                return _error(reply, 403, "nonce mismatch", "nonce_mismatch")
            self.pd.served_rooms += 1
            reply.send(200, orjson.dumps({"prompt_hashes": found[1]}))
            return None
        return _error(reply, 404, f"no route for {req.path}", "not_found")

    # -- decode side: fetch the KV ---------------------------------------------------------------------------------
    async def _get(self, host: Any, port: Any, path: str) -> tuple[int, Any]:
        if not isinstance(host, str) or not host or isinstance(port, bool) or not isinstance(port, int):
            self.pd.bad_params += 1
            raise PdFailure(f"bad bootstrap address {host!r}:{port!r}")
        pool = self._pools.get((host, port))
        if pool is None:
            pool = self._pools[(host, port)] = UpstreamPool(host, port, connect_timeout=2.0)
        try:
            status, body = await fetch(
                pool, b"GET", path, f"{host}:{port}".encode(), timeout=self.bootstrap_wait_s + 5.0
            )
        except UpstreamError as exc:
            self.pd.unreachable_bootstrap += 1
            raise PdFailure(f"bootstrap server {host}:{port} unreachable: {exc}") from None
        return status, orjson.loads(body) if body else None

    async def _fetch_room(self, host: Any, port: Any, room: Any, prompt_hash: int) -> None:
        if isinstance(room, bool) or not isinstance(room, int) or not 0 <= room < (1 << 63):
            self.pd.bad_params += 1
            raise PdFailure(f"bad bootstrap_room {room!r}")
        status, data = await self._get(host, port, f"/bootstrap/{room}")
        if status != 200:
            self.pd.unknown_room += 1
            raise PdFailure(f"room {room} not found at {host}:{port} (status {status})")
        if data.get("prompt_hash") != prompt_hash:
            self.pd.prompt_mismatch += 1
            raise PdFailure(f"room {room} holds another prompt's KV")
        self.pd.transfers_ok += 1

    async def _fetch_transfer(self, params: Any, hashes: list[int]) -> None:
        if not isinstance(params, dict) or not params.get("do_remote_prefill"):
            self.pd.missing_params += 1
            raise PdFailure("decode request without kv_transfer_params.do_remote_prefill")
        rid, nonce = params.get("remote_request_id"), params.get("nonce")
        if not isinstance(rid, str) or not isinstance(nonce, str):
            self.pd.bad_params += 1
            raise PdFailure("kv_transfer_params without remote_request_id / nonce")
        status, data = await self._get(
            params.get("remote_host"), params.get("remote_port"), f"/kv_transfer/{rid}?nonce={nonce}"
        )
        if status == 403:
            self.pd.nonce_mismatch += 1
            raise PdFailure("kv_transfer_params were not minted by that prefill (nonce mismatch)")
        if status != 200:
            self.pd.unknown_room += 1
            raise PdFailure(f"transfer {rid} unknown at the prefill (status {status})")
        if data.get("prompt_hashes") != hashes:
            self.pd.prompt_mismatch += 1
            raise PdFailure(f"transfer {rid} holds another prompt's KV")
        self.pd.transfers_ok += 1

    # -- generation ------------------------------------------------------------------------------------------------
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
        items = [p.seed for p in spec.prompts for _ in range(spec.n)]
        if self.flavor == "sglang":
            self.rooms_seen.extend(_bootstrap_rooms(body, len(items)) or ())
        vllm_params = body.get("kv_transfer_params")
        if self.role == "prefill":
            if self.flavor == "sglang":
                rooms = _bootstrap_rooms(body, len(items))
                if rooms is None:
                    self.pd.missing_params += 1
                    return _error(reply, 400, "missing or malformed bootstrap_room", BOOTSTRAP_FAILED)
                for room, h in zip(rooms, items, strict=True):
                    self._room(room).prompt_hash = h  # announced: a decode asking now waits for it
            elif not (isinstance(vllm_params, dict) and vllm_params.get("do_remote_decode")):
                self.pd.missing_params += 1
                return _error(
                    reply,
                    400,
                    "prefill request without kv_transfer_params.do_remote_decode",
                    BOOTSTRAP_FAILED,
                )
        if not self._begin(req, reply, overrides):
            return
        task = _cancel_on_close(reply)
        runs: list[SimRequest] = []
        choices: list[Choice] = []
        sent: list[int] = []
        aborted = False
        try:
            if self.role == "decode":
                try:
                    if self.flavor == "sglang":
                        await self._fetch_rooms(body, items)
                    else:
                        await self._fetch_transfer(vllm_params, [p.seed for p in spec.prompts])
                except PdFailure as exc:
                    return _error(reply, 500, f"PD bootstrap failed: {exc}", BOOTSTRAP_FAILED)
                # The prompt was computed by the prefill: only the transfer costs time here.
                overrides = dataclasses.replace(overrides, ttft_s=self.transfer_s)
            rid = spec.rid or eng.new_id()
            runs = [eng.start(req.path, p.units, overrides, rid) for p in spec.prompts]
            max_tokens = 1 if self.role == "prefill" else spec.max_tokens
            for pi, p in enumerate(spec.prompts):
                for j in range(spec.n):
                    seed = p.seed if spec.same_seed else (p.seed + j * 0x9E3779B97F4A7C15) & (2**64 - 1)
                    out = eng.plan_output(seed, max_tokens, spec.scripted, spec.stop, spec.stop_token_ids)
                    choices.append(Choice(len(choices), pi, out))
            sent = [0] * len(choices)
            ttft = max(r.ttft_s for r in runs)
            if self.role == "prefill":
                if ttft > 0:
                    await asyncio.sleep(ttft)
                self._prefilled(spec, body, items)
            if spec.stream:
                await self._stream_pd(
                    reply, spec, runs, choices, sent, ttft if self.role == "decode" else 0.0
                )
            else:
                if self.role == "decode":
                    longest = max((len(c.out.token_ids) for c in choices), default=0)
                    delay = ttft + eng.total_decode_s(runs[0], longest)
                    if delay > 0:
                        await asyncio.sleep(delay)
                for c in choices:
                    sent[c.index] = len(c.out.token_ids)
                data = full_response(spec, runs, choices, time.monotonic() - runs[0].started)
                reply.send(200, orjson.dumps(self._decorate(spec, data, body, items)))
        except asyncio.CancelledError:
            aborted = True
            if task is not None:
                task.uncancel()
        finally:
            reply.on_close = None
            for r, n in zip(runs, _tokens_per_run(choices, sent, len(runs)), strict=True):
                eng.finish(r, n, aborted=aborted or reply.closed)

    async def _fetch_rooms(self, body: dict[str, Any], items: list[int]) -> None:
        rooms = _bootstrap_rooms(body, len(items))
        if rooms is None:
            self.pd.missing_params += 1
            raise PdFailure("missing or malformed bootstrap_room")
        hosts, ports = body.get("bootstrap_host"), body.get("bootstrap_port")
        if isinstance(body.get("bootstrap_room"), list):
            if not (
                isinstance(hosts, list) and isinstance(ports, list) and len(hosts) == len(ports) == len(rooms)
            ):
                self.pd.bad_params += 1
                raise PdFailure("bootstrap_host / bootstrap_port arrays do not match bootstrap_room")
        else:
            hosts, ports = [hosts], [ports]
        await asyncio.gather(
            *(self._fetch_room(h, p, r, x) for h, p, r, x in zip(hosts, ports, rooms, items, strict=True))
        )

    def _prefilled(self, spec: GenSpec, body: dict[str, Any], items: list[int]) -> None:
        """The prompt's KV is ready: wake the decodes waiting on these rooms / mint the vLLM transfer."""
        if self.flavor == "sglang":
            for room in _bootstrap_rooms(body, len(items)) or ():
                self._room(room).ready.set()
                self.pd.prefilled_rooms += 1
            return
        self.pd.prefilled_rooms += 1

    def _decorate(self, spec: GenSpec, data: Any, body: dict[str, Any], items: list[int]) -> Any:
        """Role-specific extras on a non-streamed body: logprob slices, the vLLM handoff."""
        if spec.kind == "gen" and spec.logprobs is not None:
            for item in data if isinstance(data, list) else [data]:
                _slice_input_lp(item["meta_info"], self.role)
        if self.role == "prefill" and self.flavor == "vllm" and isinstance(data, dict):
            tid = self.engine.new_id()
            nonce = secrets.token_hex(16)
            self._transfers[tid] = (nonce, [p.seed for p in spec.prompts])
            while len(self._transfers) > MAX_ROOMS:
                self._transfers.popitem(last=False)
            data["kv_transfer_params"] = {
                "do_remote_prefill": True,
                "do_remote_decode": False,
                "remote_engine_id": f"sim-{self.port}",
                "remote_block_ids": list(
                    range(sum(r for r in (len(p.units) for p in spec.prompts)) // 16 + 1)
                ),
                "remote_host": self.host,
                "remote_port": self.bootstrap_port,
                "remote_request_id": tid,
                "nonce": nonce,
            }
        return data

    async def _stream_pd(
        self,
        reply: Reply,
        spec: GenSpec,
        runs: list[SimRequest],
        choices: list[Choice],
        sent: list[int],
        ttft: float,
    ) -> None:
        eng = self.engine
        ev = StreamEvents(spec, runs, choices)
        reply.start_stream()
        if ttft > 0:
            await asyncio.sleep(ttft)
        lp_full = spec.kind == "gen" and spec.logprobs is not None
        head = ev.head()
        if head:
            await reply.write(head)
        longest = max((len(c.out.token_ids) for c in choices), default=0)
        stall = runs[0].stall_after
        for t in range(longest):
            if stall is not None and t >= stall:
                # As the regular worker: stop sending, keep the connection until the client closes it.
                eng.note_stall()
                await reply.wait_closed()
                raise asyncio.CancelledError
            buf = []
            for c in choices:
                if t < len(c.out.token_ids):
                    event = ev.token(c, t)
                    buf.append(self._stream_lp(spec, event, c) if lp_full else event)
                    sent[c.index] = t + 1
            await reply.write(b"".join(buf))
            itl = eng.itl_s(runs[0])
            if itl > 0 and t + 1 < longest:
                await asyncio.sleep(itl)
        reply.end_stream(ev.tail(time.monotonic() - runs[0].started))

    def _stream_lp(self, spec: GenSpec, event: bytes, c: Choice) -> bytes:
        """A /generate stream event with this role's share of `input_token_logprobs`."""
        obj = orjson.loads(event[6:])
        meta = obj["meta_info"]
        meta["input_token_logprobs"] = input_logprobs(spec.prompts[c.prompt])
        _slice_input_lp(meta, self.role)
        return b"data: " + orjson.dumps(obj) + b"\n\n"


def input_logprobs(prompt: Prompt) -> list[list[Any]]:
    """A prompt's `input_token_logprobs` as the regular simulated worker reports them."""
    ids = prompt.ids if prompt.ids is not None else [piece_id(u) for u in prompt.units]
    return [[None if k == 0 else _lp(t), t, None] for k, t in enumerate(ids)]


def _slice_input_lp(meta: dict[str, Any], role: Role) -> None:
    lp = meta.get("input_token_logprobs")
    if isinstance(lp, list):
        meta["input_token_logprobs"] = lp[:-1] if role == "prefill" else lp[-1:]


def _bootstrap_rooms(body: dict[str, Any], items: int) -> list[int] | None:
    room = body.get("bootstrap_room")
    rooms: list[Any] = room if isinstance(room, list) else [room]
    if len(rooms) != items or not all(isinstance(r, int) and not isinstance(r, bool) for r in rooms):
        return None
    return [int(r) for r in rooms]
