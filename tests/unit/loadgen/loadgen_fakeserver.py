"""A tiny OpenAI-like HTTP/1.1 server on 127.0.0.1 (real sockets) for the loadgen tests.

It runs on its own event loop in a background thread, so both async tests and the synchronous CLI
(`main()` runs its own loop) can use it. Behaviour per request is chosen by request headers:

* `x-test-mode`: `""` (normal), `error` (503 JSON error), `eof` (JSON body delimited by connection close),
  `hang` (never answers), `drop` (answers, then closes the keep-alive connection without saying so),
  `json-for-stream` (answers a streamed request with one JSON body), `cut` (a stream that stops after one
  content event when the connection closes).
* `x-test-delay-ms`: pause before the first content event and between content events.
* `x-test-worker`: `off` to omit the `x-smg-worker` header (otherwise workers w0/w1 alternate).

Usage it reports: prompt_tokens = words in the prompt, completion_tokens = max_tokens, cached_tokens =
prompt_tokens // 2 when there is a system message, else 0. Every answer is recorded in `responses`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    worker: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    text: str


@dataclass
class FakeServer:
    port: int = 0
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    responses: list[Answer] = field(default_factory=list)
    n_chat: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                body = orjson.loads(raw) if raw else None
                self.requests.append(Seen(method, path, headers, body))
                keep = await self.respond(method, path, headers, body, reader, writer)
                if not keep:
                    writer.close()
                    return
        finally:
            writer.close()

    async def respond(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        mode = headers.get("x-test-mode", "")
        if method == "GET" and path == "/v1/models":
            return await self.send_json(writer, 200, {"object": "list", "data": [{"id": "fake-model"}]})
        if method == "GET" and path == "/workers":
            doc = {"workers": [{"url": "http://w0", "is_healthy": True}, {"url": "http://w1"}], "total": 2}
            return await self.send_json(writer, 200, doc)
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return await self.send_json(writer, 404, {"error": {"message": "no such path"}})
        if mode == "error":
            return await self.send_json(writer, 503, {"error": {"message": "overloaded", "code": "busy"}})
        if mode == "hang":
            await reader.read()  # until the client gives up and closes
            return False
        chat = path == "/v1/chat/completions"
        if chat:
            prompt = " ".join(m["content"] for m in body["messages"])
            has_system = any(m["role"] == "system" for m in body["messages"])
        else:
            prompt, has_system = body["prompt"], False
        n_out = int(body.get("max_tokens", 4))
        pt = len(prompt.split())
        cached = pt // 2 if has_system else 0
        usage: dict[str, Any] = {
            "prompt_tokens": pt,
            "completion_tokens": n_out,
            "total_tokens": pt + n_out,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        worker = None if headers.get("x-test-worker") == "off" else f"w{self.n_chat % 2}"
        self.n_chat += 1
        pieces = [f"tok{i} " for i in range(n_out)]
        self.responses.append(Answer(worker, pt, n_out, cached, "".join(pieces)))
        extra = f"x-smg-worker: {worker}\r\n" if worker else ""
        delay = int(headers.get("x-test-delay-ms", "0")) / 1000.0
        if mode == "eof":
            doc = self.completion_doc(chat, "".join(pieces), usage)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                + orjson.dumps(doc)
            )
            await writer.drain()
            return False
        if not body.get("stream") or mode == "json-for-stream":
            doc = self.completion_doc(chat, "".join(pieces), usage)
            ok = await self.send_json(writer, 200, doc, extra)
            return ok and mode != "drop"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            + extra.encode()
            + b"\r\n"
        )
        # A role-only first event carries no content: it must not count as the first token.
        self.chunk(writer, {"choices": [{"index": 0, "delta": {"role": "assistant"}}]} if chat else None)
        if mode == "cut":  # one content event, then the connection dies mid-stream
            self.chunk(writer, {"choices": [{"index": 0, "delta": {"content": pieces[0]}}]})
            await writer.drain()
            return False
        for piece in pieces:
            if delay:
                await writer.drain()
                await asyncio.sleep(delay)
            if chat:
                ev = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            else:
                ev = {"choices": [{"index": 0, "text": piece, "finish_reason": None}]}
            self.chunk(writer, ev)
        if (body.get("stream_options") or {}).get("include_usage"):
            self.chunk(writer, {"choices": [], "usage": usage})
        writer.write(self.frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return mode != "drop"

    @staticmethod
    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def chunk(self, writer: asyncio.StreamWriter, ev: dict[str, Any] | None) -> None:
        if ev is not None:
            writer.write(self.frame(b"data: " + orjson.dumps(ev) + b"\n\n"))

    @staticmethod
    def completion_doc(chat: bool, text: str, usage: dict[str, Any]) -> dict[str, Any]:
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice["finish_reason"] = "length"
        return {"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}

    @staticmethod
    async def send_json(writer: asyncio.StreamWriter, status: int, doc: Any, extra: str = "") -> bool:
        raw = orjson.dumps(doc)
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
            f"{extra}\r\n".encode()
            + raw
        )
        await writer.drain()
        return True
