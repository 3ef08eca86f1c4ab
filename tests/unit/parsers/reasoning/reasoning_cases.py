"""Realistic model outputs per reasoning family, with hand-written expected splits.

Each case: (family, label, output text, expected reasoning, expected normal, reasoning_started).
``reasoning_started`` means the gateway calls ``mark_reasoning_started()`` first (prefilled block).
The same outputs feed the chunk-split property tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from herder.parsers.reasoning import ReasoningDelta, ReasoningParser


@dataclass(frozen=True)
class Case:
    family: str
    label: str
    text: str
    reasoning: str
    normal: str
    started: bool = False

    @property
    def id(self) -> str:
        return f"{self.family}-{self.label}"


R1_REASONING = (
    "Okay, the user asks for 17 × 23.\n"
    "Let me compute: 17 × 20 = 340, 17 × 3 = 51.\n"
    "So 340 + 51 = 391. Check: 391 / 17 = 23 ✓."
)
R1_ANSWER = "17 × 23 = **391**.\n\nIf you need the steps:\n1. 17 × 20 = 340\n2. 17 × 3 = 51\n"

ZH_REASONING = "用户用中文打招呼：你好。\n我应该用中文回复，语气友好 🙂。"
ZH_ANSWER = "你好！有什么可以帮你的吗？"

CODE_REASONING = "The user wants a guard: if a < b and b > c, return early.\nUse `x<y>` generics carefully."
CODE_ANSWER = "```rust\nfn f<T: Ord>(a: T, b: T) -> bool { a < b }\n```"

# Families whose template opens <think> (the output starts inside reasoning).
_STARTS_INSIDE = ("deepseek_r1", "qwen3_thinking", "step3", "minimax", "kimi_thinking")
# Families where the model writes <think> itself.
_OPENS_ITSELF = ("deepseek_v31", "qwen3", "glm45", "kimi_k25", "nano_v3", "base")


def _think_cases() -> list[Case]:
    cases: list[Case] = []
    for fam in _STARTS_INSIDE:
        cases += [
            Case(fam, "closed", f"{R1_REASONING}\n</think>\n\n{R1_ANSWER}", R1_REASONING, R1_ANSWER),
            Case(
                fam,
                "redundant-open",
                f"<think>\n{ZH_REASONING}\n</think>\n\n{ZH_ANSWER}",
                ZH_REASONING,
                ZH_ANSWER,
            ),
            Case(
                fam,
                "truncated",
                f"{CODE_REASONING}\nNow the answer shou",
                CODE_REASONING + "\nNow the answer shou",
                "",
            ),
            Case(fam, "empty-reasoning", f"\n</think>\n\n{ZH_ANSWER}", "", ZH_ANSWER),
            Case(fam, "code-answer", f"{CODE_REASONING}</think>{CODE_ANSWER}", CODE_REASONING, CODE_ANSWER),
        ]
    for fam in _OPENS_ITSELF:
        cases += [
            Case(fam, "closed", f"<think>\n{R1_REASONING}\n</think>\n\n{R1_ANSWER}", R1_REASONING, R1_ANSWER),
            Case(fam, "unicode", f"<think>{ZH_REASONING}</think>{ZH_ANSWER}", ZH_REASONING, ZH_ANSWER),
            Case(fam, "text-only", CODE_ANSWER + "\n", "", CODE_ANSWER + "\n"),
            Case(fam, "truncated", f"<think>\n{CODE_REASONING}\n", CODE_REASONING, ""),
            Case(fam, "qwen-no-think", f"<think>\n\n</think>\n\n{R1_ANSWER}", "", R1_ANSWER),
            Case(
                fam,
                "prefilled",
                f"{R1_REASONING}\n</think>\n\n{R1_ANSWER}",
                R1_REASONING,
                R1_ANSWER,
                started=True,
            ),
            Case(
                fam,
                "literal-think-after-answer",
                "<think>ok</think>Use the <think> tag and </think> to close.",
                "ok",
                "Use the <think> tag and </think> to close.",
            ),
        ]
    return cases


KIMI_CASES = [
    Case(
        "kimi",
        "closed",
        f"◁think▷{R1_REASONING}\n◁/think▷\n{R1_ANSWER}",
        R1_REASONING,
        R1_ANSWER,
    ),
    Case("kimi", "text-only", ZH_ANSWER, "", ZH_ANSWER),
    Case("kimi", "ascii-tags-are-text", "<think>x</think>y", "", "<think>x</think>y"),
    Case("kimi", "truncated", f"◁think▷{ZH_REASONING}", ZH_REASONING, ""),
]

COHERE_CASES = [
    Case(
        "cohere_cmd",
        "cmd4",
        "<|START_THINKING|>\nLet me analyze this step by step.\n1. First, the question.\n<|END_THINKING|>\n"
        "<|START_RESPONSE|>The answer is 42.<|END_RESPONSE|>",
        "Let me analyze this step by step.\n1. First, the question.",
        "<|START_RESPONSE|>The answer is 42.<|END_RESPONSE|>",
    ),
    Case(
        "cohere_cmd",
        "unicode",
        "<|START_THINKING|>分析这个问题 🤔 x < 10<|END_THINKING|>答案是42。",
        "分析这个问题 🤔 x < 10",
        "答案是42。",
    ),
    Case("cohere_cmd", "text-only", "Plain answer, no thinking.", "", "Plain answer, no thinking."),
    Case(
        "cohere_cmd",
        "truncated",
        "<|START_THINKING|>Analyzing the problem...",
        "Analyzing the problem...",
        "",
    ),
    Case("cohere_cmd", "whitespace-only", "<|START_THINKING|>   \n\t  <|END_THINKING|>answer", "", "answer"),
]

OPEN, CLOSE, SEP = "<|open|>", "<|close|>", "<|sep|>"
K3_TOOLS = f'{OPEN}tools{SEP}{OPEN}call tool="get_weather" index="1"{SEP}{{"city": "Paris"}}{CLOSE}call{SEP}{CLOSE}tools{SEP}'
KIMI_K3_CASES = [
    Case(
        "kimi_k3",
        "think-response",
        f"{OPEN}think{SEP}Step 1: recall.\nStep 2: answer.{CLOSE}think{SEP}{OPEN}response{SEP}Paris is the capital.{CLOSE}response{SEP}{CLOSE}message{SEP}",
        "Step 1: recall.\nStep 2: answer.",
        "Paris is the capital.",
    ),
    Case(
        "kimi_k3",
        "message-wrapped",
        f"{OPEN}message{SEP}{OPEN}think{SEP}r{CLOSE}think{SEP}answer{CLOSE}message{SEP}",
        "r",
        "answer",
    ),
    Case(
        "kimi_k3",
        "tools-kept",
        f"{OPEN}think{SEP}need weather{CLOSE}think{SEP}{OPEN}response{SEP}Checking.{CLOSE}response{SEP}{K3_TOOLS}",
        "need weather",
        f"Checking.{K3_TOOLS}",
    ),
    Case(
        "kimi_k3",
        "prefilled-forced-tools",
        f"let me check{K3_TOOLS}{CLOSE}message{SEP}",
        "let me check",
        K3_TOOLS,
        started=True,
    ),
    Case(
        "kimi_k3",
        "prefilled-response-opener",
        f"thought{OPEN}response{SEP}answer 答{CLOSE}response{SEP}",
        "thought",
        "answer 答",
        started=True,
    ),
    Case("kimi_k3", "no-think", "just an answer < 3", "", "just an answer < 3"),
    Case("kimi_k3", "truncated", f"{OPEN}think{SEP}still thinking 🤔", "still thinking 🤔", ""),
    Case(
        "kimi_k3",
        "prefilled-truncated",
        "still thinking, no markers",
        "still thinking, no markers",
        "",
        started=True,
    ),
]

MM, TH, TX, TJ, EM = (
    "<|message_model|>",
    "<|content_thinking|>",
    "<|content_text|>",
    "<|content_invoke_tool_json|>",
    "<|end_message|>",
)
ES = "<|content_model_end_sampling|>"
INK_TOOL_JSON = '{"name":"search","args":{"q":"rust < go?"}}'
INKLING_CASES = [
    Case(
        "inkling",
        "typed",
        f"{MM}{TH}check sources\nthen answer{EM}{MM}{TX}Here is the answer: 42 ✓.{EM}"
        f"{MM}search{TJ}{INK_TOOL_JSON}{EM}{ES}",
        "check sources\nthen answer",
        f"Here is the answer: 42 ✓.{MM}search{TJ}{INK_TOOL_JSON}{EM}",
    ),
    Case("inkling", "text-only", f"{MM}{TX}你好，世界{EM}{ES}", "", "你好，世界"),
    Case("inkling", "two-thinking-blocks", f"{MM}{TH}a {EM}{MM}{TH}b{EM}{MM}{TX}c{EM}", "a b", "c"),
    Case("inkling", "text-tool-suppressed", f"<|content_invoke_tool_text|>search for rust{EM}{ES}", "", ""),
    Case("inkling", "truncated", f"{MM}{TH}thinking about <b> tags", "thinking about <b> tags", ""),
    Case("inkling", "unframed", 'bare payload {"a": 1}', "", 'bare payload {"a": 1}'),
    Case("inkling", "prefilled", f"reasoning{EM}{MM}{TX}answer{EM}", "reasoning", "answer", started=True),
    Case("inkling", "foreign-author-dropped", f"{MM}{TX}hi{EM}<|message_user|>{TX}fake user{EM}", "", "hi"),
]

PASSTHROUGH_CASES = [
    Case(
        "passthrough",
        "verbatim",
        f"  <think>x</think>\n{ZH_ANSWER}  \n",
        "",
        f"  <think>x</think>\n{ZH_ANSWER}  \n",
    ),
]

ALL_CASES: list[Case] = [
    *_think_cases(),
    *KIMI_CASES,
    *COHERE_CASES,
    *KIMI_K3_CASES,
    *INKLING_CASES,
    *PASSTHROUGH_CASES,
]

#: Marker fragments per family used by the fuzz property test (pieces that recombine into tags).
FRAGMENTS: dict[str, list[str]] = {
    "think": ["<think>", "</think>", "<", "</", "think", ">", "<thi", "nk>"],
    "kimi": ["◁think▷", "◁/think▷", "◁", "▷", "◁/", "think"],
    "cohere_cmd": ["<|START_THINKING|>", "<|END_THINKING|>", "<|", "|>", "START_", "END_", "THINKING"],
    "kimi_k3": [
        OPEN,
        CLOSE,
        SEP,
        "think",
        "response",
        "message",
        "tools",
        f"{OPEN}think{SEP}",
        f"{CLOSE}think{SEP}",
        "<|op",
    ],
    "inkling": [
        MM,
        TH,
        TX,
        TJ,
        EM,
        ES,
        "<|content_invoke_tool_text|>",
        "<|message_user|>",
        "<|",
        "|>",
        "search",
    ],
}
COMMON_FRAGMENTS = ["a", "b c", " ", "\n", "\t", "é", "你好", "🙂", "x < y", "<b>"]


def fragments_for(family: str) -> list[str]:
    if family in FRAGMENTS:
        return FRAGMENTS[family] + COMMON_FRAGMENTS
    return FRAGMENTS["think"] + COMMON_FRAGMENTS


def run_stream(parser: ReasoningParser, chunks: list[str]) -> tuple[list[ReasoningDelta], str, str]:
    """Feed ``chunks`` then finish; return the deltas and the concatenated reasoning/normal text."""
    deltas = [parser.feed(c) for c in chunks]
    deltas.append(parser.finish())
    return deltas, "".join(d.reasoning_text for d in deltas), "".join(d.normal_text for d in deltas)


def split_at(text: str, cuts: list[int]) -> list[str]:
    """Split ``text`` at the given (any order, possibly repeated) positions."""
    points = sorted({c for c in cuts if 0 < c < len(text)})
    out, prev = [], 0
    for p in points:
        out.append(text[prev:p])
        prev = p
    out.append(text[prev:])
    return out
