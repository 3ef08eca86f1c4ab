"""Micro-benchmark of the reasoning parsers (a script, not a test).

For every parser family it builds a ~100 KB realistic output in that family's format (reasoning
with code-ish text and ``<`` characters, then an answer) and prints the best-of-N time of a
one-shot ``parse`` and of a stream fed in ~4-character chunks (``feed`` per chunk + ``finish``),
with ``stream_reasoning`` on and off. Times are process CPU time (``time.process_time``), best of N,
so that other load on a shared machine disturbs them less.

    python bench/parsers_reasoning_bench.py [--size 100000] [--chunk 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from herder.parsers.reasoning import get_reasoning_parser, reasoning_parser_names

_PARAGRAPH = (
    "Let me think about this step by step. If x < 10 and y > 5 then <b>bold</b> is not a tag; "
    "the sum is Σ = 42 — naïve café 🤔. Consider `a<b && c>d`.\n"
)
_ANSWER = "The answer is 42. Here is code: `if a < b: return <value>`\n"

# Output prefix/suffix per family (everything else is plain paragraphs).
_FRAMES: dict[str, tuple[str, str, str]] = {
    "deepseek_r1": ("", "</think>\n\n", ""),
    "qwen3_thinking": ("", "</think>\n\n", ""),
    "step3": ("", "</think>\n\n", ""),
    "minimax": ("", "</think>\n\n", ""),
    "kimi_thinking": ("", "</think>\n\n", ""),
    "kimi": ("\u25c1think\u25b7", "\u25c1/think\u25b7", ""),
    "cohere_cmd": ("<|START_THINKING|>", "<|END_THINKING|><|START_RESPONSE|>", "<|END_RESPONSE|>"),
    "kimi_k3": (
        "<|open|>think<|sep|>",
        "<|close|>think<|sep|><|open|>response<|sep|>",
        "<|close|>response<|sep|>",
    ),
    "inkling": (
        "<|message_model|><|content_thinking|>",
        "<|end_message|><|message_model|><|content_text|>",
        "<|end_message|><|content_model_end_sampling|>",
    ),
}
_DEFAULT_FRAME = ("<think>", "</think>\n\n", "")


def build_output(name: str, size: int) -> str:
    start, middle, end = _FRAMES.get(name, _DEFAULT_FRAME)
    half = size // 2
    reasoning = _PARAGRAPH * (half // len(_PARAGRAPH) + 1)
    answer = _ANSWER * (half // len(_ANSWER) + 1)
    return start + reasoning[:half] + middle + answer[:half] + end


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    """Best-of-``repeat`` CPU time of this process (less sensitive to other load than wall time)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1000.0


def stream(name: str, chunks: list[str], stream_reasoning: bool, marked: bool) -> object:
    """Feed ``chunks`` through a fresh parser and finish it."""
    p = get_reasoning_parser(name, stream_reasoning=stream_reasoning)
    if marked:
        p.mark_reasoning_started()
    for c in chunks:
        p.feed(c)
    return p.finish()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000, help="output size in characters")
    ap.add_argument("--chunk", type=int, default=4, help="streaming chunk size in characters")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (best is reported)")
    args = ap.parse_args()

    print(
        f"output ≈ {args.size} chars, streaming chunk = {args.chunk} chars, CPU time, best of {args.repeat}"
    )
    header = f"{'family':<16}{'one-shot ms':>13}{'stream ms':>12}{'stream(hold) ms':>17}{'chunks':>9}"
    print(header)
    print("-" * len(header))
    for name in reasoning_parser_names():
        text = build_output(name, args.size)
        chunks = [text[i : i + args.chunk] for i in range(0, len(text), args.chunk)]
        marked = name == "nano_v3"  # its template opens the block at runtime

        t_one = best_ms(lambda n=name, t=text: get_reasoning_parser(n).parse(t), args.repeat)
        t_stream = best_ms(lambda n=name, c=chunks, m=marked: stream(n, c, True, m), args.repeat)
        t_hold = best_ms(lambda n=name, c=chunks, m=marked: stream(n, c, False, m), args.repeat)
        print(f"{name:<16}{t_one:>13.2f}{t_stream:>12.2f}{t_hold:>17.2f}{len(chunks):>9}")


if __name__ == "__main__":
    main()
