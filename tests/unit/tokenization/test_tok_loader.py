"""Loading: folders, single files, config metadata, template precedence, GetTokenizer bundles."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from herder.tokenization import (
    ChatTemplate,
    Tokenizer,
    TokenizerLoadError,
    load_from_bundle,
    load_source,
    load_tokenizer,
    tiktoken_encoding_for_model,
)
from herder.tokenization import loader as loader_mod


def _tiny_tokenizer_json() -> str:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    vocab = {"<unk>": 0, "hello": 1, "world": 2, "!": 3}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.add_special_tokens(["<s>", "</s>", "<eot>"])
    return str(hf.to_str())


def _folder(tmp_path: Path, **files: str | dict[str, object]) -> Path:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "tokenizer.json").write_text(_tiny_tokenizer_json())
    for name, content in files.items():
        fname = name.replace("__", ".")
        (d / fname).write_text(content if isinstance(content, str) else json.dumps(content))
    return d


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_qwen_folder_metadata(qwen: Tokenizer, llama3: Tokenizer) -> None:
    assert qwen.vocab_size == 151669
    assert qwen.eos_token == "<|im_end|>" and qwen.eos_token_ids == [151645]
    assert qwen.bos_token is None
    assert qwen.special_tokens["<|im_start|>"] == 151644
    assert "<think>" not in qwen.special_tokens  # an added token, but not marked special
    assert qwen.token_to_id("<think>") == 151667 and qwen.id_to_token(151667) == "<think>"
    assert qwen.chat_template is not None and "<|im_start|>" in qwen.chat_template
    assert qwen.encode("a<|im_end|>b") == [*qwen.encode("a"), 151645, *qwen.encode("b")]
    assert qwen.decode(qwen.encode("héllo 🙂")) == "héllo 🙂"
    assert qwen.fingerprint == qwen.fingerprint and qwen.fingerprint != llama3.fingerprint
    assert qwen.fingerprint.startswith("151669-")


def test_single_file_and_renamed_file(qwen_dir: Path, tmp_path: Path) -> None:
    direct = load_tokenizer(qwen_dir / "tokenizer.json")
    assert direct.eos_token_ids == [151645] and direct.chat_template is not None
    renamed = tmp_path / "qwen.json"
    renamed.write_bytes((qwen_dir / "tokenizer.json").read_bytes())
    alone = load_tokenizer(renamed)
    assert alone.chat_template is None and alone.eos_token_ids == []
    assert alone.encode("hi there") == direct.encode("hi there")


def test_eos_from_config_and_generation_config(tmp_path: Path) -> None:
    d = _folder(
        tmp_path,
        tokenizer_config__json={"eos_token": {"content": "</s>"}, "bos_token": "<s>"},
        generation_config__json={"eos_token_id": [5, 6]},
    )
    tok = load_tokenizer(d)
    eos = tok.token_to_id("</s>")
    assert tok.eos_token_ids == [eos, 6] and eos == 5
    assert tok.bos_token == "<s>"
    assert tok.template_special_tokens()["bos_token"] == "<s>"


def test_template_precedence(tmp_path: Path) -> None:
    d = _folder(tmp_path, tokenizer_config__json={"chat_template": "from-config"})
    assert load_tokenizer(d).chat_template == "from-config"
    (d / "chat_template.jinja").write_text("from-jinja")
    assert load_tokenizer(d).chat_template == "from-jinja"
    explicit = tmp_path / "explicit.jinja"
    explicit.write_text("from-explicit")
    assert load_tokenizer(d, chat_template_path=str(explicit)).chat_template == "from-explicit"
    with pytest.raises(TokenizerLoadError, match=r"nope\.jinja"):
        load_tokenizer(d, chat_template_path=str(tmp_path / "nope.jinja"))


def test_named_templates_in_config(tmp_path: Path) -> None:
    named = [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]
    tok = load_tokenizer(_folder(tmp_path, tokenizer_config__json={"chat_template": named}))
    assert tok.chat_template == "D" and tok.chat_templates == {"default": "D", "tool_use": "T"}
    template = ChatTemplate.from_tokenizer(tok)
    assert template is not None
    msgs = [{"role": "user", "content": "x"}]
    assert template.render(msgs) == "D"
    assert template.render(msgs, tools=[{"type": "function", "function": {"name": "f"}}]) == "T"


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(TokenizerLoadError, match=str(missing)):
        load_tokenizer(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerLoadError, match=r"no tokenizer\.json"):
        load_tokenizer(empty)
    (empty / "tokenizer.model").write_bytes(b"\x00")
    with pytest.raises(TokenizerLoadError, match="SentencePiece"):
        load_tokenizer(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerLoadError, match=r"tokenizer\.json"):
        load_tokenizer(bad)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(TokenizerLoadError, match="unsupported"):
        load_tokenizer(gguf)
    d = _folder(tmp_path)
    (d / "tokenizer_config.json").write_text("[broken")
    with pytest.raises(TokenizerLoadError, match=r"tokenizer_config\.json"):
        load_tokenizer(d)


def test_bundle_roundtrip_with_nested_folder(qwen_dir: Path) -> None:
    entries = {
        f"Qwen3/{name}": (qwen_dir / name).read_bytes()
        for name in ("tokenizer.json", "tokenizer_config.json")
    }
    data = _zip(entries)
    sha = hashlib.sha256(data).hexdigest()
    tok = load_from_bundle(data, sha.upper())
    assert tok.vocab_size == 151669 and tok.eos_token_ids == [151645] and tok.chat_template
    assert tok.source == f"bundle:{sha.upper()}"
    assert load_from_bundle(data, None).encode("hi<|im_end|>") == tok.encode("hi<|im_end|>")


def test_bundle_bad_sha256_fails() -> None:
    data = _zip({"tokenizer.json": _tiny_tokenizer_json().encode()})
    with pytest.raises(TokenizerLoadError, match="sha256 mismatch"):
        load_from_bundle(data, hashlib.sha256(b"something else").hexdigest())


@pytest.mark.parametrize(
    "name", ["../evil.json", "a/../../evil.json", "/etc/evil.json", "..\\evil.json", "C:/evil"]
)
def test_bundle_path_traversal_rejected(name: str) -> None:
    data = _zip({"tokenizer.json": _tiny_tokenizer_json().encode(), name: b"x"})
    with pytest.raises(TokenizerLoadError, match=r"path traversal|absolute"):
        load_from_bundle(data, hashlib.sha256(data).hexdigest())


def test_bundle_symlink_rejected() -> None:
    data = _zip({"tokenizer.json": _tiny_tokenizer_json().encode()}, symlink="link.json")
    with pytest.raises(TokenizerLoadError, match="symlink"):
        load_from_bundle(data, None)


def test_bundle_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = _tiny_tokenizer_json().encode()
    monkeypatch.setattr(loader_mod, "MAX_BUNDLE_FILES", 3)
    with pytest.raises(TokenizerLoadError, match="too many entries"):
        load_from_bundle(_zip({"tokenizer.json": tiny, **{f"f{i}": b"" for i in range(5)}}), None)
    monkeypatch.setattr(loader_mod, "MAX_BUNDLE_FILE_BYTES", 1000)
    # Highly compressible: small in the zip, large once extracted (counted on the real bytes).
    with pytest.raises(TokenizerLoadError, match="too large"):
        load_from_bundle(_zip({"tokenizer.json": tiny, "big.bin": b"\0" * 100_000}), None)


def test_bundle_garbage_and_missing_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_mod.tempfile, "tempdir", str(tmp_path))
    with pytest.raises(TokenizerLoadError, match="not a valid zip"):
        load_from_bundle(b"definitely not a zip", None)
    with pytest.raises(TokenizerLoadError, match=r"no tokenizer\.json"):
        load_from_bundle(_zip({"README": b"hi"}), None)
    load_from_bundle(_zip({"tokenizer.json": _tiny_tokenizer_json().encode()}), None)
    assert list(tmp_path.iterdir()) == []  # extraction dirs are removed


def test_tiktoken_model_names() -> None:
    assert tiktoken_encoding_for_model("gpt-4o-mini") == "o200k_base"
    assert tiktoken_encoding_for_model("openai/gpt-4-turbo") == "cl100k_base"
    assert tiktoken_encoding_for_model("gpt-3.5-turbo") == "cl100k_base"
    assert tiktoken_encoding_for_model("Qwen/Qwen3-8B") is None


def test_load_source(qwen_dir: Path) -> None:
    assert load_source(str(qwen_dir)).vocab_size == 151669
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        with pytest.raises(TokenizerLoadError, match="huggingface_hub"):
            load_source("some-org/some-model-that-is-not-local")


def test_tiktoken_backend() -> None:
    tiktoken = pytest.importorskip("tiktoken")
    try:
        tiktoken.get_encoding("cl100k_base")
    except Exception:
        pytest.skip("cl100k_base ranks not available offline")
    tok = load_source("cl100k_base")
    ids = tok.encode("hello <|endoftext|> wörld")
    assert tok.token_to_id("<|endoftext|>") in ids
    assert tok.decode(ids) == "hello  wörld"
    assert tok.decode(ids, skip_special_tokens=False) == "hello <|endoftext|> wörld"
    assert tok.eos_token_ids == [tok.token_to_id("<|endoftext|>")]
