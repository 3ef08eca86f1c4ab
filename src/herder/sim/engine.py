"""Transport-neutral simulated inference engine (sans-I/O): latency model, prefix cache, outputs, faults.

Used by the HTTP workers (``http_worker.py``) and the gRPC workers (``grpc_worker.py``). Nothing here touches
sockets or sleeps; the transport asks the engine *how long* to wait and *what* to send, then does it.
Not thread-safe: call it from one event loop.

Public API
----------
``SimConfig`` (dataclass)  all knobs: model, latency (ttft_ms, prefill_tps, itl_ms, itl_per_running_ms),
    cache (cache_blocks, block_size), output_tokens, faults (error_rate, error_status, retry_after_s,
    stall_after_tokens, die_after), seed, embedding_dim, vocab_size, healthy.
``Overrides`` per-request knobs; ``Overrides.from_headers(get)`` reads ``x-sim-ttft-ms``, ``x-sim-itl-ms``,
    ``x-sim-status``, ``x-sim-stall-after``, ``x-sim-output`` (``get(name) -> str | None``; works for HTTP
    headers and gRPC metadata alike).
``SimEngine(config=None, **fields)``
    ``begin(path, overrides) -> Fault | None``  once per inference request, before any work: counts it and
        decides fault injection (``Fault.kind`` "die" = the worker must die now, no response; "error" = answer
        ``Fault.status`` with an optional ``Retry-After``).
    ``start(path, prompt_units, overrides, rid=None) -> SimRequest``  admits the prompt into the prefix cache
        and takes a running slot. ``prompt_units`` are token ids (``list[int]``, gRPC / ``input_ids``) or
        word pieces (``text.prompt_pieces(text)``, HTTP text). ``req.ttft_s``, ``req.cached_tokens``.
    ``itl_s(req) -> float``  the delay before the next token (depends on the *current* running count).
    ``finish(req, completion_tokens, aborted=False)``  releases the slot (idempotent; exactly-once accounting).
    ``admit(prompt_units) -> Admission(cached_tokens, prompt_tokens, ttft_seconds)``  the cache + latency part
        of ``start`` alone (no running slot).
    ``plan_output(seed, max_tokens, scripted=None, stop=(), stop_token_ids=()) -> Output``  the full,
        deterministic output of a request: ``token_ids``, ``pieces`` (text per token), ``finish_reason``
        ("stop" | "length"), ``matched_stop``. Seed it with ``text.stable_hash(prompt)`` (or
        ``stable_hash_ids``) plus the choice index.
    ``generate_tokens(seed, max_tokens) -> list[str]``  shorthand: the word pieces of ``plan_output``.
    ``embed(seed, dims) -> list[float]`` (unit vector), ``relevance(query, doc) -> float`` in [0, 1],
    ``classify(seed) -> list[float]`` (probabilities over ``config.labels``).
    ``flush_cache()``, ``loads() -> dict`` (SGLang per-rank load fields), ``snapshot() -> dict`` (counters
    for GET /sim/stats), ``stats`` (``SimStats``; transports bump ``open_connections`` and
    ``requests_by_path``), ``update(**fields)`` (change config at run time).
``PrefixCache(capacity_blocks, block_size=16, listener=None)``  LRU over chained block hashes; ``listener``
    receives ``KvEvent(kind, block_hashes, parent_hash, token_ids)`` for KV-event streams. Both live in
    ``prefix_cache.py`` and are re-exported here.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from herder.sim.prefix_cache import BLOCK_SIZE as BLOCK_SIZE
from herder.sim.prefix_cache import KvEvent as KvEvent
from herder.sim.prefix_cache import PrefixCache as PrefixCache
from herder.sim.text import exact_pieces, generate_word_ids, piece_id, word_piece


@dataclass(slots=True)
class SimConfig:
    """Knobs of one simulated worker. Times in milliseconds, rates in tokens per second (0 = instant)."""

    model: str = "sim-model"
    ttft_ms: float = 0.0
    prefill_tps: float = 0.0
    itl_ms: float = 0.0
    itl_per_running_ms: float = 0.0
    cache_blocks: int = 8192
    block_size: int = BLOCK_SIZE
    output_tokens: int = 16
    """Tokens generated when a request names no max_tokens; such a request ends with finish_reason "stop"."""
    max_tokens_cap: int = 1 << 16
    error_rate: float = 0.0
    error_status: int = 503
    retry_after_s: float | None = None
    stall_after_tokens: int | None = None
    die_after: int | None = None
    """Serve this many inference requests; the next one kills the worker (no response)."""
    seed: int = 0
    embedding_dim: int = 256
    vocab_size: int = 32000
    max_running_requests: int = 256
    labels: tuple[str, ...] = ("negative", "positive")
    healthy: bool = True


@dataclass(slots=True)
class Overrides:
    """Per-request knobs (from headers or metadata); None = use the config."""

    ttft_s: float | None = None
    itl_s: float | None = None
    status: int | None = None
    stall_after: int | None = None
    output: str | None = None

    @classmethod
    def from_headers(cls, get: Callable[[str], str | None]) -> Overrides:
        """Read ``x-sim-*`` values via ``get(lowercase name)``; malformed values are ignored."""
        o = cls()
        o.ttft_s = _ms(get("x-sim-ttft-ms"))
        o.itl_s = _ms(get("x-sim-itl-ms"))
        o.status = _int(get("x-sim-status"))
        o.stall_after = _int(get("x-sim-stall-after"))
        o.output = get("x-sim-output")
        return o


def _ms(v: str | None) -> float | None:
    if v is None:
        return None
    try:
        x = float(v) / 1000.0
    except ValueError:
        return None
    return x if math.isfinite(x) and x >= 0 else None


def _int(v: str | None) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        return None


@dataclass(slots=True, frozen=True)
class Admission:
    """Result of admitting a prompt: how much of it was cached and how long prefill takes."""

    cached_tokens: int
    prompt_tokens: int
    ttft_seconds: float


@dataclass(slots=True, frozen=True)
class Fault:
    """A fault to inject: ``kind`` "die" (kill the worker, no response) or "error" (answer ``status``)."""

    kind: Literal["die", "error"]
    status: int = 500
    retry_after_s: float | None = None
    message: str = ""


@dataclass(slots=True)
class SimRequest:
    """One running request."""

    id: str
    path: str
    prompt_tokens: int
    cached_tokens: int
    ttft_s: float
    itl_override_s: float | None
    stall_after: int | None
    created: int
    started: float
    finished: bool = False


@dataclass(slots=True)
class Output:
    """The whole output of one choice: token ids, the text of each token, and why it ended."""

    token_ids: list[int]
    pieces: list[str]
    finish_reason: str
    matched_stop: str | int | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(slots=True)
class SimStats:
    """Counters exposed at GET /sim/stats."""

    requests_total: int = 0
    requests_by_path: dict[str, int] = field(default_factory=dict)
    inference_requests: int = 0
    running: int = 0
    completed: int = 0
    aborted: int = 0
    errors_injected: int = 0
    stalled: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    open_connections: int = 0
    total_connections: int = 0
    cache_flushes: int = 0


class SimEngine:
    """One simulated worker's engine state. See the module docstring for the API."""

    def __init__(self, config: SimConfig | None = None, **fields_: object) -> None:
        self.config = config if config is not None else SimConfig()
        if fields_:
            self.update(**fields_)
        self.cache = PrefixCache(self.config.cache_blocks, self.config.block_size)
        self.stats = SimStats()
        self._rng = random.Random(self.config.seed)
        self._served = 0
        self._next_id = 0
        self._id_prefix = f"{random.getrandbits(32):08x}"
        self._t0 = time.monotonic()

    # -- configuration -------------------------------------------------------------------------------------
    def update(self, **fields_: object) -> None:
        """Change config fields at run time; unknown names or values of the wrong type raise ``TypeError``."""
        types = {f.name: str(f.type) for f in fields(SimConfig)}
        for k, v in fields_.items():
            if k not in types:
                raise TypeError(f"unknown sim config field {k!r}")
            if k == "labels" and isinstance(v, list):
                v = tuple(v)
            if not _type_ok(types[k], v):
                raise TypeError(f"bad value for sim config field {k!r}: {v!r} (expected {types[k]})")
            setattr(self.config, k, v)
        cache = getattr(self, "cache", None)
        if cache is not None:
            cache.capacity = max(0, self.config.cache_blocks)
            if cache.block_size != max(1, self.config.block_size):
                cache.block_size = max(1, self.config.block_size)
                cache.clear()  # block keys depend on the block size

    # -- request lifecycle ---------------------------------------------------------------------------------
    def new_id(self) -> str:
        """A 24-character request id unique within this engine."""
        self._next_id += 1
        return f"{self._id_prefix}{self._next_id:016x}"

    def begin(self, path: str, overrides: Overrides | None = None) -> Fault | None:
        """Count one inference request and decide whether to inject a fault into it."""
        cfg = self.config
        if cfg.die_after is not None and self._served >= cfg.die_after:
            return Fault("die", message=f"die_after={cfg.die_after} reached")
        self._served += 1
        self.stats.inference_requests += 1
        status = overrides.status if overrides is not None else None
        if status is None and cfg.error_rate > 0 and self._rng.random() < cfg.error_rate:
            status = cfg.error_status
        if status is not None and status >= 400:
            self.stats.errors_injected += 1
            return Fault("error", status, cfg.retry_after_s, f"simulated error (status {status})")
        return None

    def admit(self, prompt_units: Sequence[Hashable]) -> Admission:
        """Look the prompt up in the prefix cache (and insert it); compute the time to first token."""
        n = len(prompt_units)
        cached = min(self.cache.admit(prompt_units), n)
        return Admission(cached, n, self.ttft_for(n - cached))

    def ttft_for(self, uncached_tokens: int) -> float:
        """ttft_base + uncached prompt tokens / prefill rate, in seconds."""
        cfg = self.config
        t = cfg.ttft_ms / 1000.0
        if cfg.prefill_tps > 0:
            t += uncached_tokens / cfg.prefill_tps
        return t

    def start(
        self,
        path: str,
        prompt_units: Sequence[Hashable],
        overrides: Overrides | None = None,
        rid: str | None = None,
    ) -> SimRequest:
        """Admit the prompt and take a running slot; pair with exactly one ``finish``."""
        adm = self.admit(prompt_units)
        o = overrides or Overrides()
        st = self.stats
        st.running += 1
        st.prompt_tokens += adm.prompt_tokens
        st.cached_tokens += adm.cached_tokens
        stall = o.stall_after if o.stall_after is not None else self.config.stall_after_tokens
        return SimRequest(
            id=rid or self.new_id(),
            path=path,
            prompt_tokens=adm.prompt_tokens,
            cached_tokens=adm.cached_tokens,
            ttft_s=o.ttft_s if o.ttft_s is not None else adm.ttft_seconds,
            itl_override_s=o.itl_s,
            stall_after=stall,
            created=int(time.time()),
            started=time.monotonic(),
        )

    def itl_s(self, req: SimRequest | None = None) -> float:
        """Delay before the next token: itl_base + itl_per_running x running requests (now)."""
        if req is not None and req.itl_override_s is not None:
            return req.itl_override_s
        cfg = self.config
        return (cfg.itl_ms + cfg.itl_per_running_ms * self.stats.running) / 1000.0

    def total_decode_s(self, req: SimRequest, n_tokens: int) -> float:
        """Time for ``n_tokens`` after the first at the current ITL (used for non-streamed responses)."""
        return self.itl_s(req) * max(0, n_tokens - 1)

    def finish(self, req: SimRequest, completion_tokens: int = 0, aborted: bool = False) -> None:
        """Release the request's running slot (idempotent) and record its outcome."""
        if req.finished:
            return
        req.finished = True
        st = self.stats
        st.running -= 1
        st.completion_tokens += completion_tokens
        if aborted:
            st.aborted += 1
        else:
            st.completed += 1

    def note_stall(self) -> None:
        self.stats.stalled += 1

    # -- outputs -------------------------------------------------------------------------------------------
    def max_tokens(self, requested: object) -> int | None:
        """Validate a request's max tokens (None = not given); raises ValueError on nonsense."""
        if requested is None:
            return None
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
            raise ValueError(f"max tokens must be a non-negative integer, got {requested!r}")
        return min(requested, self.config.max_tokens_cap)

    def plan_output(
        self,
        seed: int,
        max_tokens: int | None,
        scripted: str | None = None,
        stop: Sequence[str] = (),
        stop_token_ids: Sequence[int] = (),
    ) -> Output:
        """The deterministic output of one choice.

        No ``max_tokens``: ``config.output_tokens`` words ending "stop" (a natural EOS). With ``max_tokens``:
        exactly that many words ending "length" (like ``ignore_eos`` benchmarks). A scripted text ends "stop"
        unless ``max_tokens`` cuts it. Stop strings cut the text before the match ("stop", ``matched_stop``);
        the token holding the match still counts as generated, as on real engines.
        """
        if scripted is not None:
            pieces = exact_pieces(scripted)
            ids = [piece_id(p) for p in pieces]
            reason = "stop"
            if max_tokens is not None and max_tokens < len(pieces):
                pieces, ids, reason = pieces[:max_tokens], ids[:max_tokens], "length"
        else:
            n = self.config.output_tokens if max_tokens is None else max_tokens
            ids = generate_word_ids(seed, n)
            pieces = [word_piece(i) for i in ids]
            reason = "stop" if max_tokens is None else "length"
        out = Output(ids, pieces, reason)
        if stop_token_ids:
            stops = set(stop_token_ids)
            for k, tid in enumerate(ids):
                if tid in stops:
                    return Output(ids[: k + 1], [*pieces[:k], ""], "stop", tid)
        if stop:
            _apply_stop(out, stop)
        return out

    def generate_tokens(self, seed: int, max_tokens: int | None) -> list[str]:
        """The word pieces of ``plan_output(seed, max_tokens)``."""
        return self.plan_output(seed, max_tokens).pieces

    def embed(self, seed: int, dims: int | None = None) -> list[float]:
        """A deterministic unit vector for ``seed`` (hash of the input)."""
        d = dims if dims and dims > 0 else self.config.embedding_dim
        rng = random.Random(seed)
        v = [rng.gauss(0.0, 1.0) for _ in range(d)]
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    @staticmethod
    def relevance(query: str, doc: str) -> float:
        """Deterministic score in [0, 1]: the share of query words found in the document."""
        q = set(query.lower().split())
        if not q:
            return 0.0
        d = set(doc.lower().split())
        return round(len(q & d) / len(q), 6)

    def classify(self, seed: int) -> list[float]:
        """Deterministic probabilities over ``config.labels`` (softmax of hashed logits)."""
        rng = random.Random(seed)
        logits = [rng.uniform(-2.0, 2.0) for _ in self.config.labels]
        m = max(logits)
        e = [math.exp(x - m) for x in logits]
        s = sum(e)
        return [x / s for x in e]

    # -- admin ---------------------------------------------------------------------------------------------
    def flush_cache(self) -> None:
        self.cache.clear()
        self.stats.cache_flushes += 1

    def loads(self) -> dict[str, object]:
        """One DP rank's load, with SGLang's field names."""
        cfg, st = self.config, self.stats
        max_tokens = max(1, cfg.cache_blocks * cfg.block_size)
        used = min(max_tokens, len(self.cache) * cfg.block_size)
        up = max(1e-9, time.monotonic() - self._t0)
        return {
            "dp_rank": 0,
            "num_running_reqs": st.running,
            "num_waiting_reqs": 0,
            "num_waiting_uncached_tokens": 0,
            "num_total_reqs": st.running,
            "num_used_tokens": used,
            "max_total_num_tokens": max_tokens,
            "token_usage": round(used / max_tokens, 6),
            "gen_throughput": round(st.completion_tokens / up, 3),
            "cache_hit_rate": round(st.cached_tokens / st.prompt_tokens, 6) if st.prompt_tokens else 0.0,
            "utilization": round(min(1.0, st.running / max(1, cfg.max_running_requests)), 6),
            "max_running_requests": cfg.max_running_requests,
        }

    def snapshot(self) -> dict[str, object]:
        """All counters plus the cache size and config, for GET /sim/stats."""
        d = asdict(self.stats)
        d["cache_blocks_used"] = len(self.cache)
        d["config"] = asdict(self.config)
        return d


def _type_ok(annotation: str, v: object) -> bool:
    """Whether ``v`` fits a ``SimConfig`` field annotation (as a string: the module uses postponed annotations)."""
    if v is None:
        return "None" in annotation
    if annotation.startswith("bool"):
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    if annotation.startswith("float"):
        return isinstance(v, int | float) and math.isfinite(v)
    if annotation.startswith("int"):
        return isinstance(v, int)
    if annotation.startswith("str"):
        return isinstance(v, str)
    if annotation.startswith("tuple"):
        return isinstance(v, tuple) and bool(v) and all(isinstance(x, str) for x in v)
    return True


def _apply_stop(out: Output, stop: Sequence[str]) -> None:
    """Cut ``out`` at the earliest stop string (in place)."""
    text = out.text
    best = -1
    which: str | None = None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best < 0 or i < best):
            best, which = i, s
    if which is None:
        return
    pos = 0
    for k, p in enumerate(out.pieces):
        end = pos + len(p)
        if end > best:  # this token holds the start of the match
            out.pieces = [*out.pieces[:k], p[: best - pos]]
            out.token_ids = out.token_ids[: k + 1]
            break
        pos = end
    out.finish_reason = "stop"
    out.matched_stop = which
