"""Sans-I/O pieces of PD disaggregation: bootstrap injection, vLLM leg bodies, and the logprob merge.

SGLang PD (smg-spec 5.1): both legs get the same JSON with `bootstrap_host`, `bootstrap_port` (int or null) and
`bootstrap_room` (uniform 63-bit); for a batch (array `text` / `input_ids` list of lists / array `prompt`) or
parallel sampling (n > 1) each becomes an array with one entry per item, items ordered prompt-major
(prompt 0 choice 0, prompt 0 choice 1, ...), a fresh room each. When logprobs are requested the client's
`meta_info.input_token_logprobs` is the prefill's array followed by the decode's (the prefill computed the
prompt; the decode only the positions it ran). `LogprobStreamMerger` does that to a decode SSE stream, as a
`feed(chunk) -> bytes` / `finish() -> bytes` state machine whose output does not depend on chunk boundaries.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

MAX_ROOM = (1 << 63) - 1
_rng = random.SystemRandom()

# What the vLLM prefill leg asks for (the NIXL convention): "keep my KV for a remote decode".
VLLM_PREFILL_KV_PARAMS: dict[str, Any] = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


def new_room() -> int:
    """A bootstrap room: uniform in [0, 2^63 - 1]."""
    return _rng.getrandbits(63)


def _n(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def item_count(endpoint: str, body: dict[str, Any]) -> int | None:
    """How many items a request carries (batch size x n), or None for a single item (scalar bootstrap)."""
    batch: int | None = None
    if endpoint == "generate":
        text, ids = body.get("text"), body.get("input_ids")
        if isinstance(text, list):
            batch = len(text)
        elif isinstance(ids, list) and ids and isinstance(ids[0], list):
            batch = len(ids)
        sp = body.get("sampling_params")
        n = _n(sp.get("n")) if isinstance(sp, dict) else 1
    else:
        if endpoint == "completions":
            prompt = body.get("prompt")
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
                batch = len(prompt)
        n = _n(body.get("n"))
    if batch is None and n == 1:
        return None
    return (batch if batch is not None else 1) * n


def wants_logprobs(endpoint: str, body: dict[str, Any]) -> bool:
    """Whether the client asked for logprobs (`return_logprob` on /generate, `logprobs` elsewhere)."""
    if endpoint == "generate":
        return bool(body.get("return_logprob"))
    value = body.get("logprobs")
    return value is not None and value is not False


def inject_bootstrap(
    endpoint: str, body: dict[str, Any], host: str, port: int | None
) -> tuple[bytes, list[int]]:
    """The SGLang PD body (serialized once, sent to both legs) and the rooms it carries, in item order."""
    count = item_count(endpoint, body)
    out = dict(body)
    if count is None:
        room = new_room()
        out["bootstrap_host"], out["bootstrap_port"], out["bootstrap_room"] = host, port, room
        return orjson.dumps(out), [room]
    rooms = [new_room() for _ in range(count)]
    out["bootstrap_host"] = [host] * count
    out["bootstrap_port"] = [port] * count
    out["bootstrap_room"] = rooms
    return orjson.dumps(out), rooms


def vllm_prefill_body(endpoint: str, body: dict[str, Any]) -> bytes:
    """The vLLM prefill leg: one token, one choice, not streamed, KV kept for a remote decode."""
    out = dict(body)
    out["stream"] = False
    out.pop("stream_options", None)
    if endpoint == "generate":
        sp = dict(out.get("sampling_params") or {})
        sp["max_new_tokens"] = 1
        sp["n"] = 1
        out["sampling_params"] = sp
    else:
        out["max_tokens"] = 1
        if "max_completion_tokens" in out:
            out["max_completion_tokens"] = 1
        out["n"] = 1
    out["kv_transfer_params"] = dict(VLLM_PREFILL_KV_PARAMS)
    return orjson.dumps(out)


def vllm_kv_params(prefill_body: bytes) -> dict[str, Any] | None:
    """The `kv_transfer_params` a vLLM prefill returned (top level, or in the first choice), if any."""
    try:
        data = orjson.loads(prefill_body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    params = data.get("kv_transfer_params")
    if params is None:
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            params = choices[0].get("kv_transfer_params")
    return params if isinstance(params, dict) else None


def vllm_decode_body(body: dict[str, Any], kv_params: dict[str, Any] | None) -> bytes:
    """The vLLM decode leg: the client's request plus the KV location the prefill handed over."""
    out = dict(body)
    if kv_params is not None:
        out["kv_transfer_params"] = kv_params
    return orjson.dumps(out)


# -- logprob merge ----------------------------------------------------------------------------------------------
Logprobs = dict[int, list[Any]]


def _input_lp(item: Any) -> list[Any] | None:
    if isinstance(item, dict):
        meta = item.get("meta_info")
        if isinstance(meta, dict):
            lp = meta.get("input_token_logprobs")
            if isinstance(lp, list):
                return lp
    return None


def _events(body: bytes) -> list[bytes]:
    """The `data:` payloads of a complete SSE body."""
    out = []
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                out.append(line[5:].strip())
    return out


def prefill_logprobs(body: bytes, streamed: bool) -> Logprobs:
    """The prefill's `input_token_logprobs` by item index, from its JSON body (object or batch list) or from
    its SSE events (`index` field, default 0; the last event that carries the array wins)."""
    found: Logprobs = {}
    if not streamed:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return found
        items = data if isinstance(data, list) else [data]
        for i, item in enumerate(items):
            lp = _input_lp(item)
            if lp is not None:
                found[i] = lp
        return found
    for payload in _events(body):
        if payload == b"[DONE]" or b'"input_token_logprobs"' not in payload:
            continue
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        lp = _input_lp(event)
        if lp is not None:
            index = event.get("index", 0)
            found[index if isinstance(index, int) else 0] = lp
    return found


def _prepend(item: Any, prefill: list[Any]) -> None:
    lp = _input_lp(item)
    if lp is not None:
        item["meta_info"]["input_token_logprobs"] = prefill + lp


def merge_json(decode_body: bytes, prefill: Logprobs) -> bytes:
    """A non-streamed decode body with each item's prefill input logprobs prepended (unchanged if none)."""
    if not prefill or b'"input_token_logprobs"' not in decode_body:
        return decode_body
    try:
        data = orjson.loads(decode_body)
    except orjson.JSONDecodeError:
        return decode_body
    items = data if isinstance(data, list) else [data]
    for i, item in enumerate(items):
        lp = prefill.get(i)
        if lp is not None:
            _prepend(item, lp)
    return orjson.dumps(data)


class LogprobStreamMerger:
    """Rewrites a decode SSE stream: every `data:` event (not `[DONE]`) with `meta_info.input_token_logprobs`
    gets the prefill's array for its `index` prepended. Other bytes pass through unchanged. Only whole events
    are emitted, so the output is the same for any split of the input."""

    __slots__ = ("_buf", "prefill")

    def __init__(self, prefill: Logprobs) -> None:
        self.prefill = prefill
        self._buf = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buf + chunk if self._buf else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buf = data
            return b""
        self._buf = data[end + 2 :]
        whole = data[: end + 2]
        if b'"input_token_logprobs"' not in whole:
            return whole
        return b"".join(self._event(e) for e in whole[:-2].split(b"\n\n")) if whole else b""

    def _event(self, event: bytes) -> bytes:
        if event.startswith(b"data:") and b'"input_token_logprobs"' in event and b"\n" not in event:
            try:
                obj = orjson.loads(event[5:])
            except orjson.JSONDecodeError:
                return event + b"\n\n"
            if isinstance(obj, dict):
                index = obj.get("index", 0)
                lp = self.prefill.get(index if isinstance(index, int) else 0)
                if lp is not None and _input_lp(obj) is not None:
                    _prepend(obj, lp)
                    return b"data: " + orjson.dumps(obj) + b"\n\n"
        return event + b"\n\n"

    def finish(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest
