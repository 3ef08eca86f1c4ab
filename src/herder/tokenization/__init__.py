"""herder.tokenization: tokenizers, chat templates, caches and output decoding for the gRPC path.

The gateway renders the chat template, tokenizes (through the L0/L1 caches) and detokenizes (with the
stop-sequence jail) itself when it talks to tokens-in/tokens-out engines.
"""

from herder.tokenization.cache import CachedTokenizer, L0Cache, L1Cache
from herder.tokenization.chat_template import (
    ChatTemplate,
    ChatTemplateError,
    UnsupportedContentError,
    detect_content_format,
    prepare_messages,
)
from herder.tokenization.detokenizer import IncrementalDetokenizer
from herder.tokenization.loader import (
    TokenizerLoadError,
    extract_zip_safely,
    load_from_bundle,
    load_source,
    load_tiktoken,
    load_tokenizer,
    tiktoken_encoding_for_model,
)
from herder.tokenization.registry import (
    CacheConfig,
    TokenizerEntry,
    TokenizerExistsError,
    TokenizerNotFoundError,
    TokenizerRegistry,
)
from herder.tokenization.stop import OutputDecoder, StopResult, StopSequenceDecoder
from herder.tokenization.tokenizer import ASYNC_ENCODE_THRESHOLD, Tokenizer

__all__ = [
    "ASYNC_ENCODE_THRESHOLD",
    "CacheConfig",
    "CachedTokenizer",
    "ChatTemplate",
    "ChatTemplateError",
    "IncrementalDetokenizer",
    "L0Cache",
    "L1Cache",
    "OutputDecoder",
    "StopResult",
    "StopSequenceDecoder",
    "Tokenizer",
    "TokenizerEntry",
    "TokenizerExistsError",
    "TokenizerLoadError",
    "TokenizerNotFoundError",
    "TokenizerRegistry",
    "UnsupportedContentError",
    "detect_content_format",
    "extract_zip_safely",
    "load_from_bundle",
    "load_source",
    "load_tiktoken",
    "load_tokenizer",
    "prepare_messages",
    "tiktoken_encoding_for_model",
]
