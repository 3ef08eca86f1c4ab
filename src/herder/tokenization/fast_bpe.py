"""Fast encoding for byte-level BPE tokenizers (Qwen, Llama 3, GPT-2 / NeoX style): the HF `tokenizers` ids from
tiktoken's BPE core, at a fraction of the CPU.

A long prompt spends most of an HF encode in the pre-tokenizer regex (Oniguruma): ~5 ms for 4,000 Qwen3 tokens
on these machines, where tiktoken runs the same pattern (fancy-regex) and its own BPE in ~0.7 ms. The two give
the same ids when the tokenizer is plain byte-level BPE, which `fast_encoder` checks before using tiktoken:

- model BPE without dropout, byte fallback, subword prefix / suffix or unknown token; every byte in the vocab;
- pre-tokenizer `Split(Regex, Isolated)` + `ByteLevel(use_regex=False)`, or `ByteLevel(use_regex=True)` alone
  (the GPT-2 pattern); no prefix space; normalizer none or NFC;
- merges ranked like their results: tiktoken merges the adjacent pair whose result has the lowest id, HF the
  pair listed first, so merge i must produce a token whose id never falls with i;
- added tokens matched verbatim (no strip / single-word options), none a prefix of another, outside the BPE
  ids, unchanged by NFC; what `add_special_tokens` adds is a fixed prefix / suffix (a template post-processor);
- no truncation or padding configured in the file;
- and then a probe corpus (scripts, digits, whitespace runs, contractions, emoji, the added tokens themselves,
  and a sample of code points from every Unicode block, so a pattern that skips a class of characters shows)
  must encode identically both ways, or the HF path stays.

Text that is not already NFC goes to the HF path (the normalizer would run on each segment between added
tokens; normalizing the whole text could compose across a token boundary).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from typing import Any

log = logging.getLogger("herder.tokenization")

# GPT-2's pre-tokenizer pattern (what `ByteLevel(use_regex=True)` splits with).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

_PROBES = (
    "Hello, world! It's 2026-11-30 and we're testing: 123456789 + 0.5 = ?",
    "  leading spaces\n\n\ttabs\r\nand trailing   ",
    "I'll say it's they've he'd you're I'M SHOUTING DON'T",
    "中文字符和日本語のテキスト、한국어 텍스트도 있습니다。",
    "emoji 😀🚀👩‍👩‍👧 and symbols ©®™ ∑∫√ ≠ ≥ → ←",
    "def f(x):\n    return {'a': [1, 2, 3]}  # code\n",
    "naïve café résumé façade Ångström ß ﬃ",
    "     \n     \n",
    "a\u00a0b\u2003c\u200bd\u3000e",
    "numbers 1 12 123 1234 12345 3.14159 -42 1e10",
)


class FastBpe:
    """Encodes like the HF tokenizer it was built from (checked), with tiktoken."""

    __slots__ = ("_core", "_specials", "nfc", "prefix", "suffix")

    def __init__(self, core: Any, specials: set[str], nfc: bool, prefix: list[int], suffix: list[int]) -> None:
        self._core = core
        self._specials = specials  # added tokens written in the text are matched as themselves
        self.nfc = nfc
        self.prefix = prefix
        self.suffix = suffix

    def encode(self, text: str, add_special_tokens: bool) -> list[int] | None:
        """The ids, or None when this text needs the HF path (not NFC while the tokenizer normalizes, or not
        encodable as UTF-8: a lone surrogate)."""
        if self.nfc and not unicodedata.is_normalized("NFC", text):
            return None
        try:
            ids: list[int] = self._core.encode(text, self._specials)
        except UnicodeEncodeError:
            return None
        if add_special_tokens and (self.prefix or self.suffix):
            return self.prefix + ids + self.suffix
        return ids


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the printable character standing for each byte -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _pattern(spec: dict[str, Any]) -> str | None:
    """The pre-tokenizer's split pattern when it is plain byte-level BPE, else None."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if not steps:
        return None
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel":
        level = steps[0]
        return GPT2_PATTERN if level.get("use_regex", True) and not level.get("add_prefix_space") else None
    if len(steps) != 2:
        return None
    split, level = steps
    if (split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert")
            or "Regex" not in (split.get("pattern") or {})):
        return None
    if level.get("type") != "ByteLevel" or level.get("use_regex", True) or level.get("add_prefix_space"):
        return None
    pattern: str = split["pattern"]["Regex"]
    return pattern


def _ranks(model: dict[str, Any]) -> dict[bytes, int] | None:
    if (model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback")
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or model.get("unk_token")):
        return None
    vocab: dict[str, int] = model.get("vocab") or {}
    # Byte-level characters -> the bytes they stand for, in C: translate to code points < 256, encode latin-1.
    to_latin1 = str.maketrans({ch: chr(b) for ch, b in _byte_decoder().items()})
    try:
        ranks = {token.translate(to_latin1).encode("latin-1"): rank for token, rank in vocab.items()}
    except UnicodeEncodeError:
        return None  # a token outside the byte-level alphabet
    if len(ranks) != len(vocab) or any(bytes([b]) not in ranks for b in range(256)):
        return None
    last = -1
    for merge in model.get("merges") or []:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        rank = vocab.get(left + right)
        if rank is None or rank < last:
            return None  # (files converted from tiktoken list every split of a token: equal ranks in a row)
        last = rank
    return ranks


def _specials(spec: dict[str, Any], ranks: dict[bytes, int]) -> dict[str, int] | None:
    added = spec.get("added_tokens") or []
    ids = set(ranks.values())
    out: dict[str, int] = {}
    for token in added:
        content, tid = token["content"], token["id"]
        if (token.get("lstrip") or token.get("rstrip") or token.get("single_word") or tid in ids
                or unicodedata.normalize("NFC", content) != content):
            return None
        out[content] = tid
    contents = list(out)
    if any(a != b and b.startswith(a) for a in contents for b in contents):
        return None  # HF matches the longest, tiktoken's alternation need not
    return out


def _affixes(hf: Any) -> tuple[list[int], list[int]] | None:
    """What `add_special_tokens=True` adds around a text, when it is a fixed prefix and suffix."""
    plain = hf.encode("x", add_special_tokens=False).ids
    full = hf.encode("x", add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return None


def fast_encoder(hf: Any, spec: dict[str, Any] | None = None) -> FastBpe | None:
    """A tiktoken encoder that gives `hf`'s ids, or None (not byte-level BPE, tiktoken missing, a probe
    differed). `spec` is the parsed tokenizer.json (read from `hf` when not given)."""
    try:
        # tiktoken's Rust core, built as `tiktoken.Encoding` builds it but without the Encoding, which would keep
        # the rank table in Python as well (~24 MB for a 150 k vocabulary); encode is all this needs.
        from tiktoken._tiktoken import CoreBPE
    except ImportError:
        return None
    try:
        spec = spec if spec is not None else json.loads(hf.to_str())
        normalizer = spec.get("normalizer")
        if (normalizer is not None and normalizer.get("type") != "NFC") or spec.get("truncation") \
                or spec.get("padding"):
            return None
        pattern = _pattern(spec)
        ranks = _ranks(spec.get("model") or {}) if pattern is not None else None
        specials = _specials(spec, ranks) if ranks is not None else None
        affixes = _affixes(hf) if specials is not None else None
        if pattern is None or ranks is None or specials is None or affixes is None:
            return None
        core = CoreBPE(ranks, specials, pattern)
        del ranks
        fast = FastBpe(core, set(specials), normalizer is not None, *affixes)
        if not _agrees(fast, hf, list(specials)):
            log.info("fast BPE encoder disagreed with the tokenizer on a probe; using the tokenizers library")
            return None
        return fast
    except Exception as exc:  # any surprise in a tokenizer file means: keep the reference path
        log.info("fast BPE encoder not built: %s", exc)
        return None


def _coverage_text() -> str:
    """Code points from every block (every 7th below U+30000, NFC): a split pattern that misses some class of
    characters would make tiktoken drop them where HF keeps them."""
    text = "".join(chr(c) for c in range(0x20, 0x30000, 7) if not 0xD800 <= c < 0xE000)
    return unicodedata.normalize("NFC", text)


def _agrees(fast: FastBpe, hf: Any, specials: list[str]) -> bool:
    probes = [*_PROBES, _coverage_text()]
    if specials:
        probes.append(f"{specials[0]}system\nYou are helpful.{specials[-1]}\n" + "".join(specials) + " tail")
    for text in probes:
        for add in (False, True):
            if fast.encode(text, add) != hf.encode(text, add_special_tokens=add).ids:
                return False
    return True
