"""Inference routes: decode + validate the body once, build the RequestContext, hand it to the router."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import orjson

from herder.routing.context import RequestContext
from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import Request


@dataclass(frozen=True, slots=True)
class InferenceRoute:
    path: str
    endpoint: str  # SMG's endpoint label: chat, completions, generate, embeddings, rerank, responses, classify
    id_prefix: bytes  # request-id prefix when the client sends none

    @property
    def upstream_path(self) -> str:
        """The path workers are sent (SGLang's /rerank is /v1/rerank upstream)."""
        return self.path if self.path != "/rerank" else "/v1/rerank"


INFERENCE_ROUTES: dict[str, InferenceRoute] = {
    r.path: r
    for r in (
        InferenceRoute("/v1/chat/completions", "chat", b"chatcmpl-"),
        InferenceRoute("/v1/completions", "completions", b"cmpl-"),
        InferenceRoute("/generate", "generate", b"gnt-"),
        InferenceRoute("/v1/embeddings", "embeddings", b"req-"),
        InferenceRoute("/v1/rerank", "rerank", b"req-"),
        InferenceRoute("/rerank", "rerank", b"req-"),
        InferenceRoute("/v1/responses", "responses", b"resp-"),
        InferenceRoute("/v1/classify", "classify", b"req-"),
    )
}


def _bad(message: str, param: str | None = None, code: str = errors.INVALID_REQUEST) -> HttpError:
    return HttpError(400, code, message, param)


def _check_type(body: dict[str, Any], name: str, types: type | tuple[type, ...], label: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _bad(f"'{name}' must be {label}", name)
    if not isinstance(value, types):
        raise _bad(f"'{name}' must be {label}", name)


def _require(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None:
        raise _bad(f"Missing required field '{name}'", name, errors.MISSING_FIELD)
    return value


def _validate_messages(messages: Any) -> None:
    if type(messages) is list and messages:
        # The common shape, checked with exact-type tests; anything else takes the detailed pass below.
        for message in messages:
            if type(message) is not dict or type(message.get("role")) is not str:
                break
            content = message.get("content")
            if content is not None and type(content) is not str and type(content) is not list:
                break
        else:
            return
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"'messages[{i}]' must be an object", f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str):
            raise _bad(f"'messages[{i}].role' must be a string", f"messages[{i}].role")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _bad(f"'messages[{i}].content' must be a string or an array of parts", f"messages[{i}].content")


def _is_prompt(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, str):
            return all(isinstance(v, str) for v in value)
        if isinstance(first, int) and not isinstance(first, bool):
            return all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if isinstance(first, list):
            return all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value)
    return False


# Typed top-level fields: name -> (accepted types, what the error says). bool is an int subclass in Python, so
# numeric fields reject it explicitly.
_TYPED: dict[str, tuple[type | tuple[type, ...], str, bool]] = {
    "model": (str, "a string", True),
    "stream": (bool, "a boolean", True),
    "max_tokens": (int, "an integer", False),
    "max_completion_tokens": (int, "an integer", False),
    "n": (int, "an integer", False),
    "temperature": ((int, float), "a number", False),
    "top_p": ((int, float), "a number", False),
    "stop": ((str, list), "a string or an array of strings", True),
    "stream_options": (dict, "an object", True),
}


# The exact type each typed field usually has: a match needs no further check. Integer fields are not here:
# their bounds are checked every time.
_USUAL_TYPE: dict[str, type] = {"model": str, "stream": bool, "temperature": float, "top_p": float, "stop": list,
                                "stream_options": dict, "messages": list, "prompt": str, "input": str}


_INT_MIN: dict[str, int] = {"max_tokens": 0, "max_completion_tokens": 0, "n": 1}


def validate(endpoint: str, body: dict[str, Any]) -> None:
    """The checks a client mistake must fail (400) rather than reach a worker. One pass over the body's keys
    (a handful) rather than a lookup per known field; a field of its usual exact type costs one dict lookup."""
    typed = _TYPED
    usual = _USUAL_TYPE
    int_min = _INT_MIN
    value: Any
    for name, value in body.items():
        if type(value) is usual.get(name) or name not in typed:
            continue
        if type(value) is int and value >= int_min.get(name, value + 1):
            continue  # an integer field (never a bool: type() is exact) within bounds
        spec = typed.get(name)
        if spec is None or value is None:
            continue
        types, label, bool_ok = spec
        if not isinstance(value, types) or (not bool_ok and isinstance(value, bool)):
            raise _bad(f"'{name}' must be {label}", name)
        if name in ("max_tokens", "max_completion_tokens") and cast(int, value) < 0:
            raise _bad(f"'{name}' must be >= 0", name)
        if name == "n" and cast(int, value) < 1:
            raise _bad("'n' must be >= 1", "n")
    if endpoint == "chat":
        messages = body.get("messages")
        _validate_messages(messages if messages is not None else _require(body, "messages"))
    elif endpoint == "completions":
        if not _is_prompt(_require(body, "prompt")):
            raise _bad("'prompt' must be a string, an array of strings, or token ids", "prompt")
    elif endpoint == "generate":
        if body.get("text") is None and body.get("input_ids") is None:
            raise _bad("'text' or 'input_ids' is required", "text", errors.MISSING_FIELD)
        _check_type(body, "sampling_params", dict, "an object")
    elif endpoint == "embeddings":
        value = _require(body, "input")
        if not _is_prompt(value):
            raise _bad("'input' must be a string, an array of strings, or token ids", "input")
    elif endpoint == "rerank":
        _require(body, "query")
        docs = _require(body, "documents")
        if not isinstance(docs, list):
            raise _bad("'documents' must be an array", "documents")
    elif endpoint == "responses" or endpoint == "classify":
        _require(body, "input")


def decode_body(request: Request) -> dict[str, Any]:
    """Parse the JSON body once; anything that is not a JSON object is a 400."""
    body = request.body
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body:
            raise _bad("Request body is empty; expected a JSON object", None, errors.INVALID_JSON) from None
        raise _bad(f"Invalid JSON body: {exc}", None, errors.INVALID_JSON) from None
    if type(parsed) is not dict:
        raise _bad("Request body must be a JSON object", None, errors.INVALID_JSON)
    return parsed


def build_context(route: InferenceRoute, request: Request, request_id: bytes,
                  traceparent: bytes | None = None) -> RequestContext:
    parsed = decode_body(request)
    validate(route.endpoint, parsed)
    model = parsed.get("model")
    return RequestContext(route.upstream_path, route.endpoint, request.body, parsed, model if model else None,
                          parsed.get("stream") is True, request_id, request, time.monotonic(), traceparent)
