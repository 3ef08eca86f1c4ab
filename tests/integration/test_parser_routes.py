"""The parser endpoints through the gateway, for every parser name, with `text` and with `chunks`."""

from __future__ import annotations

import httpx
import pytest

from herder.parsers.reasoning.registry import reasoning_parser_names
from herder.parsers.tools.registry import tool_parser_names
from tests.conftest import GatewayFactory

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture
async def client(make_gateway: GatewayFactory) -> httpx.AsyncClient:
    gw = await make_gateway(worker_urls=[])
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}")


async def test_reasoning_routes_every_parser(client: httpx.AsyncClient) -> None:
    text = "<think>Let me think about it.</think>The answer is 42."
    for path in ("/parser/reasoning", "/parse/reasoning"):
        for name in reasoning_parser_names():
            one = await client.post(path, json={"text": text, "reasoning_parser": name})
            assert one.status_code == 200, (name, one.text)
            body = one.json()
            assert body["success"] is True and set(body) >= {"normal_text", "reasoning_text"}
            chunks = [text[i:i + 3] for i in range(0, len(text), 3)]
            streamed = await client.post(path, json={"chunks": chunks, "parser": name})
            assert streamed.status_code == 200
            assert streamed.json()["normal_text"] == body["normal_text"]
            assert streamed.json()["reasoning_text"] == body["reasoning_text"]
    qwen = (await client.post("/parser/reasoning", json={"text": text, "reasoning_parser": "qwen3"})).json()
    assert qwen["reasoning_text"] == "Let me think about it." and qwen["normal_text"] == "The answer is 42."


async def test_tool_routes_every_parser(client: httpx.AsyncClient) -> None:
    text = 'Sure. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    for path in ("/parser/tool", "/parse/function_call"):
        for name in tool_parser_names():
            one = await client.post(path, json={"text": text, "tool_call_parser": name, "tools": TOOLS})
            assert one.status_code == 200, (name, one.text)
            body = one.json()
            assert body["success"] is True and isinstance(body["tool_calls"], list)
            chunks = [text[i:i + 5] for i in range(0, len(text), 5)]
            streamed = await client.post(path, json={"chunks": chunks, "parser": name, "tools": TOOLS})
            assert streamed.status_code == 200
            assert streamed.json()["tool_calls"] == body["tool_calls"]
            assert streamed.json()["normal_text"] == body["normal_text"]
    qwen = (await client.post("/parser/tool", json={"text": text, "parser": "qwen", "tools": TOOLS})).json()
    assert qwen["tool_calls"][0]["name"] == "get_weather"
    assert qwen["tool_calls"][0]["arguments"] == qwen["tool_calls"][0]["parameters"]
    assert qwen["normal_text"].strip() == "Sure."


async def test_unknown_parser_is_a_400_naming_valid_ones(client: httpx.AsyncClient) -> None:
    r = await client.post("/parser/tool", json={"text": "x", "parser": "nope"})
    assert r.status_code == 400 and "qwen" in r.json()["error"]["message"]
    r = await client.post("/parser/reasoning", json={"text": "x", "parser": "nope"})
    assert r.status_code == 400 and "deepseek_r1" in r.json()["error"]["message"]
    r = await client.post("/parser/reasoning", content=b"{bad")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
