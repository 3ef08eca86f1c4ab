"""Equivalence with transformers' apply_chat_template on the real Qwen3 template (e2e).

transformers is not a herder dependency and stays out of herder's environment: when it is not importable here,
the reference renderings come from the e2e venv that scripts/setup-e2e-grpc.sh builds (it has transformers for
the MLX servicer), through a small JSON-lines subprocess. Skipped only when neither is available.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.tokenization import ChatTemplate, Tokenizer

pytestmark = pytest.mark.e2e

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Météo d'une ville — 天气",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

CONVERSATIONS: list[tuple[list[dict[str, Any]], dict[str, Any]]] = [
    (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}],
        {"enable_thinking": False},
    ),
    ([{"role": "user", "content": "日本の首都は？ 🙂"}], {}),
    (
        [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "Use the tool.",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
            {"role": "tool", "content": '{"temp": 21}'},
        ],
        {"tools": True},
    ),
    (
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"},
            {"role": "user", "content": "Bye"},
        ],
        {"enable_thinking": True},
    ),
]


_E2E_PYTHON = Path(os.environ.get("HERDER_E2E_DIR", Path.home() / ".cache" / "herder-e2e")) / "mlx-venv/bin/python"

_SERVER = r"""
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "apply":
        out = tok.apply_chat_template(req["messages"], tokenize=False, **req["kwargs"])
    else:
        out = tok.encode(req["text"], add_special_tokens=False)
    print(json.dumps(out), flush=True)
"""


class _SubprocessTokenizer:
    """transformers' AutoTokenizer living in another Python (the e2e venv), driven over stdin/stdout."""

    def __init__(self, python: Path, folder: Path) -> None:
        self.proc = subprocess.Popen([str(python), "-c", _SERVER, str(folder)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def _call(self, req: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the transformers subprocess died"
        return json.loads(line)

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        kwargs.pop("tokenize", None)
        return str(self._call({"op": "apply", "messages": messages, "kwargs": kwargs}))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._call({"op": "encode", "text": text}))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def hf_tokenizer(qwen_dir: Path) -> Iterator[Any]:
    try:
        import transformers
    except ImportError:
        if not _E2E_PYTHON.exists():
            pytest.skip("transformers is not installed here and scripts/setup-e2e-grpc.sh has not been run")
        remote = _SubprocessTokenizer(_E2E_PYTHON, qwen_dir)
        yield remote
        remote.close()
        return
    yield transformers.AutoTokenizer.from_pretrained(str(qwen_dir))


@pytest.mark.parametrize(("messages", "opts"), CONVERSATIONS)
@pytest.mark.parametrize("gen", [True, False])
def test_render_and_tokens_match_transformers(
    hf_tokenizer: Any, qwen: Tokenizer, messages: list[dict[str, Any]], opts: dict[str, Any], gen: bool
) -> None:
    template = ChatTemplate.from_tokenizer(qwen)
    assert template is not None
    kwargs = {k: v for k, v in opts.items() if k != "tools"}
    tools = TOOLS if opts.get("tools") else None
    ours = template.render(messages, tools=tools, add_generation_prompt=gen, chat_template_kwargs=kwargs)
    theirs = hf_tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=gen, tokenize=False, **kwargs
    )
    assert ours == theirs
    assert qwen.encode(ours) == hf_tokenizer.encode(theirs, add_special_tokens=False)


def test_continue_final_message_matches_transformers(hf_tokenizer: Any, qwen: Tokenizer) -> None:
    template = ChatTemplate.from_tokenizer(qwen)
    assert template is not None
    for content in ("1, 2,", "1, 2, ", "  padded  "):
        messages = [{"role": "user", "content": "Count"}, {"role": "assistant", "content": content}]
        ours = template.render(messages, continue_final_message=True)
        theirs = hf_tokenizer.apply_chat_template(
            messages, continue_final_message=True, add_generation_prompt=False, tokenize=False
        )
        assert ours == theirs


_TEXT = st.lists(
    st.sampled_from([*"ab é日🙂\n<>/|_", "</think>", "<think>", "<tool_response>", "</tool_response>"]),
    max_size=12,
).map("".join)
_MSG = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool"]), "content": _TEXT})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    system=st.one_of(st.none(), _TEXT),
    messages=st.lists(_MSG, min_size=1, max_size=6),
    tools=st.booleans(),
    thinking=st.sampled_from([None, True, False]),
    gen=st.booleans(),
)
def test_random_conversations_match_transformers(
    hf_tokenizer: Any,
    qwen: Tokenizer,
    system: str | None,
    messages: list[dict[str, Any]],
    tools: bool,
    thinking: bool | None,
    gen: bool,
) -> None:
    template = ChatTemplate.from_tokenizer(qwen)
    assert template is not None
    msgs = ([{"role": "system", "content": system}] if system is not None else []) + messages
    kwargs = {} if thinking is None else {"enable_thinking": thinking}
    tool_list = TOOLS if tools else None
    ours = template.render(msgs, tools=tool_list, add_generation_prompt=gen, chat_template_kwargs=kwargs)
    theirs = hf_tokenizer.apply_chat_template(
        msgs, tools=tool_list, add_generation_prompt=gen, tokenize=False, **kwargs
    )
    assert ours == theirs
