"""Send N chat requests over C keep-alive connections, closed loop, and exit (for bench/instructions.sh).

    python bench/closed_loop_client.py PORT N C [--stream]

Non-streamed: 16-token chat completions; streamed: 64-token streams read to their end (chunked).
"""

from __future__ import annotations

import argparse
import asyncio
import json


def _request(stream: bool) -> bytes:
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
            "max_tokens": 64 if stream else 16}
    if stream:
        body["stream"] = True
    raw = json.dumps(body, separators=(",", ":")).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%b" % (len(raw), raw))


async def _connection(port: int, n: int, request: bytes, stream: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(n):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected response: {head[:80]!r}")
        if stream:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            lower = head.lower()
            at = lower.find(b"content-length:")
            await reader.readexactly(int(lower[at + 15 : lower.index(b"\r\n", at)]))
    writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("requests", type=int)
    ap.add_argument("connections", type=int)
    ap.add_argument("--stream", action="store_true")
    a = ap.parse_args()
    request = _request(a.stream)
    await asyncio.gather(*(_connection(a.port, a.requests // a.connections, request, a.stream)
                           for _ in range(a.connections)))


if __name__ == "__main__":
    asyncio.run(main())
