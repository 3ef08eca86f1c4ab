"""Tool-parser benchmark (a script, not a test): one-shot and streaming (~4-char chunks) parse time of a
~100 KB model output per family. Target: under 50 ms per family for each mode.

Usage: python bench/parsers_tools_bench.py [--size 100000] [--chunk 4] [--repeat 3] [family ...]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from herder.parsers.tools.base import ToolParser, aggregate_deltas
from herder.parsers.tools.registry import get_tool_parser


def _args(i: int) -> dict:
    return {
        "query": f'search term {i} with "quotes" and unicode é✓ and a backslash \\ here',
        "limit": i % 50,
        "filters": {"tags": ["a", "b", str(i)], "exact": i % 2 == 0, "score": 0.5 + i},
        "body": ("lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 6).strip(),
    }


def _j(a: dict) -> str:
    return json.dumps(a, ensure_ascii=False)


def _py_kwargs(a: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in a.items())


def _xml_params(a: dict) -> str:
    parts = []
    for k, v in a.items():
        val = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        parts.append(f"<parameter={k}>\n{val}\n</parameter>\n")
    return "".join(parts)


# family -> (text of one "turn" holding a few calls, given a counter)
GENERATORS: dict[str, Callable[[int], str]] = {
    "json": lambda i: f"Calling tools now.\n{_j({'name': f'tool_{i}', 'arguments': _args(i)})}\n",
    "mistral": lambda i: (
        f"Let me check. [TOOL_CALLS] [{_j({'name': f'tool_{i}', 'arguments': _args(i)})}, "
        f"{_j({'name': 'other', 'arguments': _args(i + 1)})}]\n"
    ),
    "qwen": lambda i: (
        f"Thinking about it.\n<tool_call>\n{_j({'name': f'tool_{i}', 'arguments': _args(i)})}\n</tool_call>\n"
    ),
    "qwen_xml": lambda i: (
        f"Ok.\n<tool_call>\n<function=tool_{i}>\n{_xml_params(_args(i))}</function>\n</tool_call>\n"
    ),
    "pythonic": lambda i: f"Sure. [tool_{i}({_py_kwargs(_args(i))}), ping(n={i})]\n",
    "llama": lambda i: (
        f"<|python_tag|>{_j({'name': f'tool_{i}', 'parameters': _args(i)})}; "
        f"{_j({'name': 'b', 'parameters': {'x': i}})}\nthen\n"
    ),
    "cohere": lambda i: (
        f"<|START_RESPONSE|>Working on step {i}.<|END_RESPONSE|><|START_ACTION|>"
        f"[{_j({'tool_call_id': str(i), 'tool_name': f'tool_{i}', 'parameters': _args(i)})}]<|END_ACTION|>\n"
    ),
    "sarashina": lambda i: f"Step {i}: <|tool_calls|>[{ {'name': f'tool_{i}', 'arguments': _args(i)}!r}]\n",
    "inkling": lambda i: (
        f"Note {i}.<|message_model|>tool_{i}<|content_invoke_tool_json|>"
        f"{_j({'name': f'tool_{i}', 'args': _args(i)})}<|end_message|>\n"
    ),
    "passthrough": lambda i: f"Plain text answer number {i}, with {{braces}} and [brackets]. " * 4 + "\n",
}


def make_output(family: str, size: int) -> str:
    gen = GENERATORS[family]
    parts: list[str] = []
    total = 0
    i = 0
    while total < size:
        s = gen(i)
        parts.append(s)
        total += len(s)
        i += 1
    return "".join(parts)


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(family: str, size: int, chunk: int, repeat: int) -> tuple[int, int, float, float]:
    text = make_output(family, size)
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]

    def one_shot() -> object:
        return get_tool_parser(family).parse(text)

    def streaming() -> object:
        p: ToolParser = get_tool_parser(family)
        feed = p.feed
        out = [feed(c) for c in chunks]
        out.append(p.finish())
        return out

    calls = len(get_tool_parser(family).parse(text).calls)
    streamed = aggregate_deltas(streaming())  # type: ignore[arg-type]
    assert len(streamed.calls) == calls, family
    return len(text), calls, _best(one_shot, repeat), _best(streaming, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", default=list(GENERATORS))
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ns = ap.parse_args()
    print(f"{'family':<12} {'bytes':>8} {'calls':>6} {'one-shot ms':>12} {'stream ms':>10}  target < 50 ms")
    for fam in ns.families:
        n, calls, t1, t2 = bench(fam, ns.size, ns.chunk, ns.repeat)
        flag = "" if max(t1, t2) < 0.050 else "  SLOW"
        print(f"{fam:<12} {n:>8} {calls:>6} {t1 * 1e3:>12.2f} {t2 * 1e3:>10.2f}{flag}")


if __name__ == "__main__":
    main()
