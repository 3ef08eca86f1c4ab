"""Pure cores of the parser HTTP endpoints (``POST /parse/reasoning`` and ``POST /parse/function_call``).

No HTTP here: the gateway's routes decode the JSON body, call these functions and send the returned
``(status, body)``. Bad input gives ``400`` with an OpenAI-style error envelope
``{"error": {"message", "type": "invalid_request_error", "code", "param"}}`` whose code is
``invalid_parser`` (unknown parser name; the message lists the valid ones) or ``invalid_request``.

Request fields (both endpoints): exactly one of ``text`` (a string, parsed one-shot) or ``chunks``
(a list of strings, replayed through the streaming parser: ``feed`` per chunk, then ``finish``).

* ``parse_reasoning_request``: ``reasoning_parser`` (alias ``parser``); optional ``stream_reasoning``
  (bool, default true) and ``reasoning_started`` (bool: call ``mark_reasoning_started()`` first, as
  the gateway does when the template prefilled the think tag). Extension: when no parser is named
  but ``model`` is, the parser is auto-detected from it (``passthrough`` when nothing matches).
  Answer: ``{"normal_text", "reasoning_text", "success": true}``.
* ``parse_tool_request``: ``tool_call_parser`` (alias ``parser``); optional ``tools`` (list of
  OpenAI tool objects, handed to the parser). Answer: ``{"normal_text", "remaining_text",
  "tool_calls": [{"name", "arguments", "parameters"}], "success": true}`` where ``arguments`` and
  ``parameters`` are the same JSON string (``parameters`` is SMG's name), as is ``remaining_text``.
"""

from __future__ import annotations

import json
from typing import Any

from herder.parsers.reasoning import (
    ReasoningBufferOverflow,
    detect_reasoning_parser,
    get_reasoning_parser,
    reasoning_parser_names,
)

Response = tuple[int, dict[str, Any]]


def error_response(message: str, *, code: str = "invalid_request", param: str | None = None) -> Response:
    """A 400 with the OpenAI error envelope."""
    return 400, {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": param}}


def _input_of(body: dict[str, Any]) -> str | list[str] | Response:
    """The ``text`` or ``chunks`` of a request, or an error response."""
    has_text = "text" in body and body["text"] is not None
    has_chunks = "chunks" in body and body["chunks"] is not None
    if has_text and has_chunks:
        return error_response("give either 'text' or 'chunks', not both", param="text")
    if has_text:
        text = body["text"]
        if not isinstance(text, str):
            return error_response("'text' must be a string", param="text")
        return text
    if has_chunks:
        chunks = body["chunks"]
        if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
            return error_response("'chunks' must be a list of strings", param="chunks")
        return chunks
    return error_response("missing 'text' (or 'chunks')", param="text")


def _parser_name(body: dict[str, Any], field: str) -> str | Response | None:
    """The parser named by ``field`` (or ``parser``); None if neither is present."""
    for key in (field, "parser"):
        if key in body and body[key] is not None:
            name = body[key]
            if not isinstance(name, str) or not name:
                return error_response(f"'{key}' must be a non-empty string", param=key)
            return name
    return None


def _optional_bool(body: dict[str, Any], key: str, default: bool) -> bool | Response:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        return error_response(f"'{key}' must be a boolean", param=key)
    return value


def parse_reasoning_request(body: Any) -> Response:
    """Handle a ``/parse/reasoning`` body; see the module docstring."""
    if not isinstance(body, dict):
        return error_response("request body must be a JSON object")
    payload = _input_of(body)
    if isinstance(payload, tuple):
        return payload
    name = _parser_name(body, "reasoning_parser")
    if isinstance(name, tuple):
        return name
    valid = ", ".join(reasoning_parser_names())
    if name is None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error_response(
                f"missing 'reasoning_parser'; valid parsers: {valid}",
                code="invalid_parser",
                param="reasoning_parser",
            )
        name = detect_reasoning_parser(model) or "passthrough"
    stream_reasoning = _optional_bool(body, "stream_reasoning", True)
    if isinstance(stream_reasoning, tuple):
        return stream_reasoning
    started = _optional_bool(body, "reasoning_started", False)
    if isinstance(started, tuple):
        return started
    if name not in reasoning_parser_names():
        return error_response(
            f"unknown reasoning parser {name!r}; valid parsers: {valid}",
            code="invalid_parser",
            param="reasoning_parser",
        )
    parser = get_reasoning_parser(name, stream_reasoning=stream_reasoning)
    if started:
        parser.mark_reasoning_started()
    try:
        if isinstance(payload, str):
            result = parser.parse(payload)
            reasoning, normal = result.reasoning_text, result.normal_text
        else:
            r: list[str] = []
            n: list[str] = []
            for chunk in payload:
                d = parser.feed(chunk)
                r.append(d.reasoning_text)
                n.append(d.normal_text)
            d = parser.finish()
            r.append(d.reasoning_text)
            n.append(d.normal_text)
            reasoning, normal = "".join(r), "".join(n)
    except ReasoningBufferOverflow as exc:
        return error_response(str(exc), param="text")
    return 200, {"normal_text": normal, "reasoning_text": reasoning, "success": True}


def _arguments_string(arguments: Any) -> str:
    """Tool-call arguments as a JSON string (parsers may hand back a string or a decoded value)."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


def parse_tool_request(body: Any) -> Response:
    """Handle a ``/parse/function_call`` body; see the module docstring."""
    if not isinstance(body, dict):
        return error_response("request body must be a JSON object")
    payload = _input_of(body)
    if isinstance(payload, tuple):
        return payload
    name = _parser_name(body, "tool_call_parser")
    if isinstance(name, tuple):
        return name
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        return error_response("'tools' must be a list of tool objects", param="tools")
    try:
        # Imported lazily: the tool parsers are a separate package that may not be importable
        # in every build (and the reasoning endpoint must not depend on them).
        from herder.parsers.tools.registry import get_tool_parser, tool_parser_names
    except ImportError as exc:
        return 503, {
            "error": {
                "message": f"tool-call parsers are unavailable: {exc}",
                "type": "server_error",
                "code": "tool_parsers_unavailable",
                "param": None,
            }
        }
    names = sorted(tool_parser_names())
    valid = ", ".join(names)
    if name is None:
        return error_response(
            f"missing 'tool_call_parser'; valid parsers: {valid}",
            code="invalid_parser",
            param="tool_call_parser",
        )
    if name not in names:
        return error_response(
            f"unknown tool call parser {name!r}; valid parsers: {valid}",
            code="invalid_parser",
            param="tool_call_parser",
        )
    try:
        parser = get_tool_parser(name, tools=tools)
    except ValueError as exc:  # registered, but its module failed to load: our problem, not the client's
        return 503, {
            "error": {
                "message": str(exc),
                "type": "server_error",
                "code": "tool_parsers_unavailable",
                "param": None,
            }
        }
    try:
        if isinstance(payload, str):
            result = parser.parse(payload)
            normal = result.normal_text
            calls = [(c.name, _arguments_string(c.arguments)) for c in result.calls]
        else:
            normal, calls = _replay_tool_stream(parser, payload)
    except (ValueError, TypeError) as exc:  # malformed input or buffer overflow
        return error_response(f"tool call parsing failed: {exc}", param="text")
    tool_calls = [{"name": n, "arguments": a, "parameters": a} for n, a in calls]
    return 200, {"normal_text": normal, "remaining_text": normal, "tool_calls": tool_calls, "success": True}


def _replay_tool_stream(parser: Any, chunks: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """Feed ``chunks`` through a streaming tool parser; assemble calls from the per-index deltas."""
    normal: list[str] = []
    names: dict[int, str] = {}
    args: dict[int, list[str]] = {}
    deltas = [parser.feed(c) for c in chunks]
    deltas.append(parser.finish())
    for d in deltas:
        normal.append(d.normal_text)
        for call in d.calls:
            if call.name:
                names.setdefault(call.index, call.name)
            if call.arguments_delta:
                args.setdefault(call.index, []).append(call.arguments_delta)
    calls = [(names[i], "".join(args.get(i, []))) for i in sorted(names)]
    return "".join(normal), calls
