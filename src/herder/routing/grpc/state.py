"""What the gRPC path knows per model: the tokenizer registry, context length, EOS ids, parser choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from herder.parsers.reasoning import detect_reasoning_parser
from herder.parsers.tools import detect_tool_parser
from herder.routing.grpc.output import TokenTexts
from herder.server import errors
from herder.server.errors import HttpError
from herder.tokenization import CacheConfig, TokenizerEntry, TokenizerRegistry

if TYPE_CHECKING:
    from herder.config import GatewayConfig


@dataclass(slots=True)
class ModelMeta:
    """GetModelInfo facts about one served model (from its first registered worker)."""

    name: str
    model_path: str = ""
    context_length: int = 0
    eos_token_ids: list[int] = field(default_factory=list)
    runtime: str = ""


class GrpcState:
    """Shared by the prober, the router and the tokenizer routes."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tokenizers = TokenizerRegistry(
            CacheConfig(
                enable_l0=config.tokenizer_cache_enable_l0,
                l0_max_entries=config.tokenizer_cache_l0_max_entries,
                l0_max_bytes=config.tokenizer_cache_l0_max_memory,
                enable_l1=config.tokenizer_cache_enable_l1,
                l1_max_bytes=config.tokenizer_cache_l1_max_memory,
            )
        )
        self.models: dict[str, ModelMeta] = {}
        self._texts: dict[str, TokenTexts] = {}
        self._parsers: dict[str, tuple[str | None, str | None]] = {}

    def meta(self, model: str | None) -> ModelMeta:
        if model is not None:
            found = self.models.get(model)
            if found is not None:
                return found
        if len(self.models) == 1:
            return next(iter(self.models.values()))
        return ModelMeta(model or "")

    def tokenizer(self, model: str | None) -> TokenizerEntry:
        """The model's tokenizer, or 503 while it is not registered yet."""
        entry = self.tokenizers.resolve(model)
        if entry is None:
            raise HttpError(
                503,
                errors.NO_AVAILABLE_WORKERS,
                f"No tokenizer is registered for model '{model}' yet"
                if model
                else "No tokenizer is registered yet",
            )
        return entry

    def token_texts(self, entry: TokenizerEntry) -> TokenTexts:
        texts = self._texts.get(entry.id)
        if texts is None:
            texts = self._texts[entry.id] = TokenTexts(entry.tokenizer)
        return texts

    def parsers(self, model: str | None) -> tuple[str | None, str | None]:
        """(reasoning parser, tool parser) for a model: the flags, else detected from the model id / path."""
        key = model or ""
        found = self._parsers.get(key)
        if found is None:
            meta = self.meta(model)
            names = [n for n in (model, meta.name, meta.model_path) if n]
            reasoning = self.config.reasoning_parser
            tool = self.config.tool_call_parser
            for name in names:
                reasoning = reasoning or detect_reasoning_parser(name)
                tool = tool or detect_tool_parser(name)
            found = self._parsers[key] = (
                None if reasoning == "passthrough" else reasoning,
                None if tool == "passthrough" else tool,
            )
        return found

    def forget_parsers(self) -> None:
        self._parsers.clear()
