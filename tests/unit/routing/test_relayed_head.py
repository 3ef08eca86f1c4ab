"""relayed_head: the worker's response head -> content type and the header lines relayed to the client."""

from __future__ import annotations

import random

import pytest

from herder.routing.proxy import DROPPED_RESPONSE_HEADERS, relayed_head

_NAMES = [b"Content-Type", b"content-length", b"Date", b"server", b"X-Request-Id", b"Transfer-Encoding",
          b"X-Custom", b"cache-control", b"Connection", b"set-cookie", b"Keep-Alive", b"CONTENT-TYPE", b"sErVeR"]


def _by_lines(raw: bytes) -> tuple[bytes, bytes]:
    """The rule, one line at a time: drop hop-by-hop/framing/own headers, relay the rest, note the content type."""
    content_type, kept = b"application/json", b""
    for line in raw.split(b"\r\n")[1:]:
        name = line.partition(b":")[0].lower()
        if name == b"content-type":
            content_type = line.partition(b":")[2].strip(b" \t")
        elif name not in DROPPED_RESPONSE_HEADERS:
            kept += line + b"\r\n"
    return content_type, kept


@pytest.mark.parametrize("seed", range(200))
def test_matches_the_line_rule(seed: int) -> None:
    rng = random.Random(seed)
    lines = [b"HTTP/1.1 200 OK"]
    names = rng.sample(_NAMES, rng.randint(0, len(_NAMES)))
    if b"content-length" in names and b"Transfer-Encoding" in names:
        names.remove(b"Transfer-Encoding")  # a parser refuses both
    for name in names:
        value = b"0" if name == b"content-length" else b"chunked" if name == b"Transfer-Encoding" else b"v%d" % (
            rng.randint(0, 9))
        lines.append(name + b":" + b" " * rng.randint(0, 2) + value + b" " * rng.randint(0, 1))
    raw = b"\r\n".join(lines)
    expected = _by_lines(raw)
    assert relayed_head(raw, raw.lower()) == expected
    lines.insert(rng.randint(1, len(lines)), b"line-without-colon")
    odd = b"\r\n".join(lines)
    assert relayed_head(odd, odd.lower()) == _by_lines(odd)


def test_usual_worker_head_relays_nothing() -> None:
    raw = b"HTTP/1.1 200 OK\r\ndate: x\r\nserver: uvicorn\r\ncontent-length: 0\r\ncontent-type: text/plain; a=b"
    assert relayed_head(raw, raw.lower()) == (b"text/plain; a=b", b"")
    bare = b"HTTP/1.1 200 OK"
    assert relayed_head(bare, bare.lower()) == (b"application/json", b"")
