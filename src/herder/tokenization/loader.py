"""Loading tokenizers: HF folders / tokenizer.json files, tiktoken encodings, and worker `GetTokenizer` bundles.

Everything is read into memory, so a bundle's temporary directory is deleted as soon as loading ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from herder.tokenization.fast_bpe import fast_encoder
from herder.tokenization.tokenizer import HFBackend, TiktokenBackend, Tokenizer, token_content

# Bundle safety limits: a tokenizer bundle is a handful of files of at most tens of MB.
MAX_BUNDLE_FILES = 256
MAX_BUNDLE_FILE_BYTES = 256 * 1024 * 1024
MAX_BUNDLE_TOTAL_BYTES = 512 * 1024 * 1024

TIKTOKEN_ENCODINGS = ("cl100k_base", "o200k_base", "p50k_base", "p50k_edit", "r50k_base", "gpt2")


class TokenizerLoadError(Exception):
    """A tokenizer could not be loaded; the message names the path or source."""


def load_tokenizer(path: str | os.PathLike[str], *, chat_template_path: str | None = None) -> Tokenizer:
    """Load from a folder (tokenizer.json [+ tokenizer_config.json, chat_template.jinja,
    generation_config.json]) or from a single tokenizer.json file."""
    p = Path(path)
    if not p.exists():
        raise TokenizerLoadError(f"tokenizer path does not exist: {p}")
    if p.is_file():
        if p.suffix in (".model", ".gguf"):
            raise TokenizerLoadError(f"unsupported tokenizer format (SentencePiece/GGUF): {p}")
        folder, tok_file = p.parent, p
        # A lone tokenizer.json may sit next to its config; only use siblings when it has the standard name.
        use_siblings = p.name == "tokenizer.json"
    else:
        folder, tok_file, use_siblings = p, p / "tokenizer.json", True
        if not tok_file.is_file():
            if (p / "tiktoken.model").is_file() or (p / "tokenizer.model").is_file():
                raise TokenizerLoadError(
                    f"unsupported tokenizer format in {p}: only tokenizer.json (HF) is supported, "
                    "not tiktoken.model / SentencePiece tokenizer.model"
                )
            raise TokenizerLoadError(f"no tokenizer.json in {p}")
    try:
        from tokenizers import Tokenizer as HFTokenizer

        hf = HFTokenizer.from_file(str(tok_file))
    except Exception as e:
        raise TokenizerLoadError(f"cannot parse {tok_file}: {e}") from e
    config = _read_json(folder / "tokenizer_config.json") if use_siblings else {}
    gen_config = _read_json(folder / "generation_config.json") if use_siblings else {}
    backend = HFBackend(hf)
    if os.environ.get("HERDER_FAST_BPE", "1") != "0":
        backend.fast = fast_encoder(hf, _read_json(tok_file))
    tok = Tokenizer(backend=backend, source=str(p), config=config)
    _apply_config(tok, config, gen_config)
    default, named = resolve_chat_template(folder if use_siblings else None, config, chat_template_path)
    tok.chat_template, tok.chat_templates = default, named
    return tok


def load_tiktoken(encoding_name: str, *, chat_template_path: str | None = None) -> Tokenizer:
    """Load a built-in tiktoken encoding (cl100k_base, o200k_base, ...). Needs the `tiktoken` extra."""
    try:
        import tiktoken
    except ImportError as e:
        raise TokenizerLoadError(
            f"tiktoken encoding {encoding_name!r} needs the optional 'tiktoken' extra (pip install herder[tiktoken])"
        ) from e
    try:
        enc = tiktoken.get_encoding(encoding_name)
    except Exception as e:
        raise TokenizerLoadError(f"cannot load tiktoken encoding {encoding_name!r}: {e}") from e
    tok = Tokenizer(backend=TiktokenBackend(enc), source=f"tiktoken:{encoding_name}")
    eot = tok.token_to_id("<|endoftext|>")
    if eot is not None:
        tok.eos_token, tok.eos_token_ids = "<|endoftext|>", [eot]
    if chat_template_path:
        tok.chat_template = _read_text(Path(chat_template_path))
    return tok


def tiktoken_encoding_for_model(model: str) -> str | None:
    """OpenAI model name -> tiktoken encoding (the heuristic SMG uses), or None."""
    m = model.lower().rsplit("/", 1)[-1]
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "gpt-oss", "chatgpt-4o")):
        return "o200k_base"
    if m.startswith(("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada-002")):
        return "cl100k_base"
    if m.startswith(("text-davinci-002", "text-davinci-003", "code-davinci")):
        return "p50k_base"
    if m.startswith(("davinci", "curie", "babbage", "ada")):
        return "r50k_base"
    return None


def load_source(source: str, *, chat_template_path: str | None = None) -> Tokenizer:
    """Resolve a source string: local path, `tiktoken:<encoding>` / bare encoding name, OpenAI model name,
    or an HF Hub id (needs `huggingface_hub`, which herder does not depend on)."""
    if source.startswith("tiktoken:"):
        return load_tiktoken(source.split(":", 1)[1], chat_template_path=chat_template_path)
    if os.path.exists(source):
        return load_tokenizer(source, chat_template_path=chat_template_path)
    if source in TIKTOKEN_ENCODINGS:
        return load_tiktoken(source, chat_template_path=chat_template_path)
    encoding = tiktoken_encoding_for_model(source)
    if encoding is not None:
        return load_tiktoken(encoding, chat_template_path=chat_template_path)
    return _load_from_hub(source, chat_template_path=chat_template_path)


def _load_from_hub(repo_id: str, *, chat_template_path: str | None) -> Tokenizer:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise TokenizerLoadError(
            f"tokenizer source {repo_id!r} is not a local path or tiktoken encoding, and huggingface_hub is not "
            "installed to download it"
        ) from e
    patterns = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"]
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns, token=os.environ.get("HF_TOKEN"))
    except Exception as e:
        raise TokenizerLoadError(f"cannot download tokenizer {repo_id!r} from the HF Hub: {e}") from e
    return load_tokenizer(folder, chat_template_path=chat_template_path)


def load_from_bundle(
    zip_bytes: bytes, sha256_hex: str | None, *, chat_template_path: str | None = None
) -> Tokenizer:
    """Load a worker's `GetTokenizer` bundle (a zip): verify the SHA-256, extract safely, load, clean up."""
    if sha256_hex:
        digest = hashlib.sha256(zip_bytes).hexdigest()
        if digest.lower() != sha256_hex.strip().lower():
            raise TokenizerLoadError(f"tokenizer bundle sha256 mismatch: expected {sha256_hex}, got {digest}")
    with tempfile.TemporaryDirectory(prefix="herder-tokenizer-") as tmp:
        root = Path(tmp)
        extract_zip_safely(zip_bytes, root)
        candidates = sorted(root.rglob("tokenizer.json"), key=lambda q: (len(q.parts), str(q)))
        if not candidates:
            raise TokenizerLoadError("tokenizer bundle has no tokenizer.json")
        tok = load_tokenizer(candidates[0].parent, chat_template_path=chat_template_path)
        tok.source = "bundle:" + (sha256_hex or hashlib.sha256(zip_bytes).hexdigest())
        return tok


def extract_zip_safely(zip_bytes: bytes, dest: Path) -> list[Path]:
    """Extract a zip into `dest`, rejecting path traversal, absolute paths, links and oversized content.

    Sizes are counted on the bytes actually decompressed, not trusted from the headers (zip bombs)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile as e:
        raise TokenizerLoadError(f"tokenizer bundle is not a valid zip: {e}") from e
    dest = dest.resolve()
    written: list[Path] = []
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_BUNDLE_FILES:
            raise TokenizerLoadError(
                f"tokenizer bundle has too many entries ({len(infos)} > {MAX_BUNDLE_FILES})"
            )
        total = 0
        for info in infos:
            name = info.filename
            target = _safe_member_path(dest, name)
            mode = (info.external_attr >> 16) & 0xFFFF
            if stat.S_ISLNK(mode):
                raise TokenizerLoadError(f"tokenizer bundle entry is a symlink: {name!r}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            size = 0
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    size += len(chunk)
                    total += len(chunk)
                    if size > MAX_BUNDLE_FILE_BYTES:
                        raise TokenizerLoadError(f"tokenizer bundle entry too large: {name!r}")
                    if total > MAX_BUNDLE_TOTAL_BYTES:
                        raise TokenizerLoadError("tokenizer bundle too large when extracted")
                    out.write(chunk)
            written.append(target)
    return written


def _safe_member_path(dest: Path, name: str) -> Path:
    if not name or "\x00" in name:
        raise TokenizerLoadError(f"tokenizer bundle entry has an invalid name: {name!r}")
    norm = name.replace("\\", "/")
    pp = PurePosixPath(norm)
    if pp.is_absolute() or norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise TokenizerLoadError(f"tokenizer bundle entry has an absolute path: {name!r}")
    if any(part == ".." for part in pp.parts):
        raise TokenizerLoadError(f"tokenizer bundle entry escapes the bundle (path traversal): {name!r}")
    target = (dest / pp).resolve()
    if target != dest and dest not in target.parents:
        raise TokenizerLoadError(f"tokenizer bundle entry escapes the bundle (path traversal): {name!r}")
    return target


def resolve_chat_template(
    folder: Path | None, config: dict[str, Any], explicit_path: str | None
) -> tuple[str | None, dict[str, str]]:
    """Template precedence: explicit path > chat_template.jinja > chat_template.json > tokenizer_config.json.

    Returns (default template, named templates). The list-of-named-templates form gives its "default"
    entry as the default and every entry in the dict (the renderer picks "tool_use" when tools are given).
    """
    if explicit_path:
        return _read_text(Path(explicit_path)), {}
    if folder is not None:
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            return _read_text(jinja), {}
        cj = folder / "chat_template.json"
        if cj.is_file():
            value = _read_json(cj).get("chat_template")
            if isinstance(value, str):
                return value, {}
    value = config.get("chat_template")
    if isinstance(value, str):
        return value, {}
    if isinstance(value, list):
        named: dict[str, str] = {}
        for item in value:
            if (
                isinstance(item, dict)
                and isinstance(item.get("name"), str)
                and isinstance(item.get("template"), str)
            ):
                named[item["name"]] = item["template"]
        return named.get("default"), named
    return None, {}


def _apply_config(tok: Tokenizer, config: dict[str, Any], gen_config: dict[str, Any]) -> None:
    """Fill EOS/BOS and the template's special-token variables from the config files."""
    specials: dict[str, Any] = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
        content = token_content(config.get(key))
        if content is not None:
            specials[key] = content
    extra = config.get("additional_special_tokens")
    if isinstance(extra, list):
        specials["additional_special_tokens"] = [
            c for c in (token_content(x) for x in extra) if c is not None
        ]
    tok.special_tokens_map = specials
    tok.bos_token = specials.get("bos_token")
    tok.eos_token = specials.get("eos_token")
    eos_ids: list[int] = []
    if tok.eos_token is not None:
        tid = tok.token_to_id(tok.eos_token)
        if tid is not None:
            eos_ids.append(tid)
    gen_eos = gen_config.get("eos_token_id")
    for tid in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
        if isinstance(tid, int) and tid not in eos_ids:
            eos_ids.append(tid)
    tok.eos_token_ids = eos_ids


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerLoadError(f"cannot parse {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise TokenizerLoadError(f"cannot read chat template {path}: {e}") from e
