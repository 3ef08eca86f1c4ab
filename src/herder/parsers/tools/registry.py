"""Tool-parser registry: names -> lazily imported classes, and model-id -> parser auto-detection.

- ``get_tool_parser(name, tools=None) -> ToolParser``: a fresh instance; ValueError (listing the valid
  names) for an unknown name, or a clear ValueError when the family's module cannot be imported.
- ``tool_parser_names() -> list[str]``: every accepted name, aliases included (sorted).
- ``detect_tool_parser(model_id) -> str | None``: the parser for a model id (case-insensitive glob
  patterns, most specific first, tried on the whole id and on its last path component); None when no
  pattern matches (callers then use ``passthrough``).
"""

from __future__ import annotations

import importlib
from fnmatch import fnmatchcase

from herder.parsers.tools.base import ToolParser

__all__ = ["detect_tool_parser", "get_tool_parser", "tool_parser_names"]

_PKG = "herder.parsers.tools"

# name -> "module:Class" (module relative to herder.parsers.tools). Imported on first use only, so a
# family whose module is missing or broken does not break the others.
_PARSERS: dict[str, str] = {
    "json": "json_parser:JsonToolParser",
    "mistral": "mistral:MistralToolParser",
    "qwen": "qwen:QwenToolParser",
    "qwen_xml": "qwen_xml:QwenXmlToolParser",
    "pythonic": "pythonic:PythonicToolParser",
    "llama": "llama:LlamaToolParser",
    "cohere": "cohere:CohereToolParser",
    "sarashina": "sarashina:SarashinaToolParser",
    "inkling": "inkling:InklingToolParser",
    "passthrough": "passthrough:PassthroughToolParser",
    "deepseek": "deepseek:DeepSeekV3ToolParser",
    "deepseek31": "deepseek:DeepSeekV31ToolParser",
    "deepseek32": "deepseek_dsml:DeepSeekV32ToolParser",
    "deepseek_v4": "deepseek_dsml:DeepSeekV4ToolParser",
    "glm45_moe": "glm:Glm45MoeToolParser",
    "glm47_moe": "glm:Glm47MoeToolParser",
    "step3": "step3:Step3ToolParser",
    "kimik2": "kimi:KimiK2ToolParser",
    "kimi_k3": "kimi:KimiK3ToolParser",
    "minimax_m2": "minimax:MinimaxM2ToolParser",
}

_ALIASES: dict[str, str] = {"qwen_coder": "qwen_xml"}

# (glob pattern, parser) in priority order: the first match wins, so specific patterns come first.
_MODEL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("qwen3-coder*", "qwen_xml"),
    ("qwen3.5*", "qwen_xml"),
    ("qwen*", "qwen"),
    ("llama-3.2*", "llama"),
    ("meta-llama-3.2*", "llama"),
    ("llama-4*", "pythonic"),
    ("meta-llama-4*", "pythonic"),
    ("llama-*", "json"),
    ("meta-llama-*", "json"),
    ("deepseek-v3.2-exp*", "deepseek31"),
    ("deepseek-v3.1*", "deepseek31"),
    ("deepseek-v3.2*", "deepseek32"),
    ("deepseek-v4*", "deepseek_v4"),
    ("deepseek-v3*", "deepseek"),
    ("deepseek-*", "pythonic"),
    ("glm-4.5*", "glm45_moe"),
    ("glm-4.6*", "glm45_moe"),
    ("glm-4.7*", "glm47_moe"),
    ("glm-5*", "glm47_moe"),
    ("glm-*", "json"),
    ("step3*", "step3"),
    ("step-3*", "step3"),
    ("moonshot*/kimi-k2*", "kimik2"),
    ("kimi-k2*", "kimik2"),
    ("kimi-k3*", "kimi_k3"),
    ("kimi_k3*", "kimi_k3"),
    ("minimax*", "minimax_m2"),
    ("command-r*", "cohere"),
    ("command-a*", "cohere"),
    ("c4ai-command*", "cohere"),
    ("cohereforai*", "cohere"),
    ("cohere*", "cohere"),
    ("sarashina*", "sarashina"),
    ("inkling*", "inkling"),
    ("mistral-*", "mistral"),
    ("mixtral-*", "mistral"),
    ("gpt-4o*", "json"),
    ("gpt-4*", "json"),
    ("gpt-3.5*", "json"),
    ("claude-*", "json"),
    ("gemini-*", "json"),
    ("palm-*", "json"),
    ("gemma-*", "json"),
)


def tool_parser_names() -> list[str]:
    """All accepted parser names, aliases included."""
    return sorted([*_PARSERS, *_ALIASES])


def _load(name: str, target: str) -> type[ToolParser]:
    mod_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(f"{_PKG}.{mod_name}")
    except ImportError as exc:
        raise ValueError(
            f"tool parser {name!r} is registered but its module {_PKG}.{mod_name} is unavailable: {exc}"
        ) from exc
    cls = getattr(module, cls_name, None)
    if isinstance(cls, type) and issubclass(cls, ToolParser) and cls.name == name:
        return cls
    # Tolerate another class name: any ToolParser subclass of the module with the right ``name``.
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, ToolParser) and getattr(obj, "name", None) == name:
            return obj
    raise ValueError(f"tool parser {name!r}: no ToolParser class with name={name!r} in {_PKG}.{mod_name}")


def get_tool_parser(name: str, tools: list[dict] | None = None) -> ToolParser:
    """A new parser instance for ``name`` (aliases accepted)."""
    key = _ALIASES.get(name, name)
    target = _PARSERS.get(key)
    if target is None:
        raise ValueError(f"unknown tool parser {name!r}; valid names: {', '.join(tool_parser_names())}")
    return _load(key, target)(tools)


def detect_tool_parser(model_id: str) -> str | None:
    """Parser name for ``model_id`` (e.g. ``Qwen/Qwen3-Coder-30B`` -> ``qwen_xml``), or None."""
    full = model_id.strip().lower()
    if not full:
        return None
    base = full.rsplit("/", 1)[-1]
    for pattern, parser in _MODEL_PATTERNS:
        if fnmatchcase(full, pattern) or fnmatchcase(base, pattern):
            return parser
    return None
