"""HF-compatible chat-template rendering (the semantics of transformers' `apply_chat_template`).

jinja2's ImmutableSandboxedEnvironment with the globals and filters transformers registers; a template is
compiled once per `ChatTemplate`. Message content is adapted to what the template expects (plain strings or
OpenAI content parts, detected from the template's AST).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import jinja2
import jinja2.ext
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ContentFormat = Literal["string", "openai"]

# Content-part types that carry plain text (chat completions "text"; Responses API input/output text).
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
# Context keys the renderer owns; chat_template_kwargs cannot override them.
_RESERVED_KEYS = frozenset({"messages", "tools", "documents", "add_generation_prompt"})


class ChatTemplateError(ValueError):
    """The template could not be compiled or rendered (includes the template's own raise_exception)."""


class UnsupportedContentError(ChatTemplateError):
    """A message carries content this path cannot render (images, audio, ...); the gateway answers 400."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: Sequence[str] | None = None,
    sort_keys: bool = False,
) -> str:
    # transformers' override: no HTML escaping, non-ASCII kept, optional indent/separators/sort_keys.
    seps = tuple(separators) if separators is not None else None
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=seps, sort_keys=sort_keys)  # type: ignore[arg-type]


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (transformers' assistant-mask marker): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> list[nodes.Node]:
        next(parser.stream)
        body: list[nodes.Node] = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return body


def make_environment() -> ImmutableSandboxedEnvironment:
    """The jinja2 environment transformers uses for chat templates."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationBlock],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = make_environment()


def detect_content_format(ast: nodes.Template) -> ContentFormat:
    """ "openai" when the template iterates over (or indexes into) a message's content, else "string".

    Follows `{% set content = message.content %}` one level, like vLLM/SGLang's detectors."""
    content_names: set[str] = set()
    for assign in ast.find_all(nodes.Assign):
        if isinstance(assign.target, nodes.Name) and _is_content_access(assign.node):
            content_names.add(assign.target.name)

    def refers_to_content(expr: nodes.Node) -> bool:
        while isinstance(expr, nodes.Filter | nodes.Test) and expr.node is not None:
            expr = expr.node
        return _is_content_access(expr) or (isinstance(expr, nodes.Name) and expr.name in content_names)

    for loop in ast.find_all(nodes.For):
        if refers_to_content(loop.iter):
            return "openai"
    for item in ast.find_all(nodes.Getitem):
        if (
            isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, int)
            and refers_to_content(item.node)
        ):
            return "openai"
    return "string"


def _is_content_access(expr: nodes.Node) -> bool:
    if isinstance(expr, nodes.Getattr):
        return expr.attr == "content"
    if isinstance(expr, nodes.Getitem):
        return isinstance(expr.arg, nodes.Const) and expr.arg.value == "content"
    return False


class _Compiled:
    __slots__ = ("content_format", "source", "template", "variables")

    def __init__(self, source: str) -> None:
        try:
            ast = _ENV.parse(source)
            self.template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ChatTemplateError(f"chat template syntax error (line {e.lineno}): {e.message}") from e
        self.source = source
        self.content_format: ContentFormat = detect_content_format(ast)
        self.variables: frozenset[str] = frozenset(meta.find_undeclared_variables(ast))


class ChatTemplate:
    """A compiled chat template (or a set of named ones: "default", "tool_use", ...)."""

    def __init__(
        self,
        source: str | Mapping[str, str],
        *,
        special_tokens: Mapping[str, Any] | None = None,
        content_format: ContentFormat | None = None,
    ) -> None:
        if isinstance(source, str):
            self._named = {"default": _Compiled(source)}
        else:
            if not source:
                raise ChatTemplateError("no chat templates given")
            self._named = {name: _Compiled(text) for name, text in source.items()}
        self.special_tokens: dict[str, Any] = dict(special_tokens or {})
        self._forced_format = content_format

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, source: str | None = None) -> ChatTemplate | None:
        """The template of a loaded `Tokenizer` (None when it has none), with its special tokens bound."""
        text = source or tokenizer.chat_template
        specials = tokenizer.template_special_tokens()
        if text is not None and (source is not None or not tokenizer.chat_templates):
            return cls(text, special_tokens=specials)
        if tokenizer.chat_templates:
            return cls(tokenizer.chat_templates, special_tokens=specials)
        return None

    def _select(self, tools: Any) -> _Compiled:
        if tools and "tool_use" in self._named:
            return self._named["tool_use"]
        if "default" in self._named:
            return self._named["default"]
        names = ", ".join(sorted(self._named))
        raise ChatTemplateError(f"no 'default' chat template among the named templates ({names})")

    @property
    def source(self) -> str:
        """The default template's text."""
        return self._select(None).source

    @property
    def content_format(self) -> ContentFormat:
        """What the default template expects as message content."""
        return self._forced_format or self._select(None).content_format

    @property
    def variables(self) -> frozenset[str]:
        """Variables the default template reads from its context (e.g. enable_thinking, tools)."""
        return self._select(None).variables

    @property
    def thinking_key(self) -> str | None:
        """The template's thinking toggle ("enable_thinking" or "thinking"), when it has one."""
        for key in ("enable_thinking", "thinking"):
            if key in self.variables:
                return key
        return None

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        parse_tool_arguments: bool = True,
        **special_tokens: Any,
    ) -> str:
        """Render `messages` to the prompt text, as transformers' apply_chat_template(tokenize=False) does.

        Extra keyword arguments (bos_token=..., eos_token=...) override the tokenizer's special tokens.
        `continue_final_message` renders without a generation prompt and cuts the text right after the final
        message's content (transformers' tag method), so the model continues it."""
        if continue_final_message:
            add_generation_prompt = False
            if not messages:
                raise ChatTemplateError("continue_final_message needs at least one message")
        compiled = self._select(tools)
        fmt = self._forced_format or compiled.content_format
        prepared = prepare_messages(messages, fmt, parse_tool_arguments=parse_tool_arguments)
        final_text = _tag_final_message(prepared[-1]) if continue_final_message else ""
        context: dict[str, Any] = dict(self.special_tokens)
        context.update(special_tokens)
        if chat_template_kwargs:
            context.update({k: v for k, v in chat_template_kwargs.items() if k not in _RESERVED_KEYS})
        context["messages"] = prepared
        context["tools"] = [dict(t) for t in tools] if tools else None
        context["documents"] = [dict(d) for d in documents] if documents else None
        context["add_generation_prompt"] = add_generation_prompt
        try:
            rendered: str = compiled.template.render(context)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template error: {e}") from e
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as e:
            # Templates assume shapes (e.g. string content); bad input must be a 400, never a 500.
            raise ChatTemplateError(f"chat template failed on these messages: {type(e).__name__}: {e}") from e
        if continue_final_message:
            rendered = _cut_at_tag(rendered, final_text)
        return rendered


# transformers (4.5x) marks the end of the final message with this tag, renders, and cuts at the tag.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _tag_final_message(message: dict[str, Any]) -> str:
    """Append the continue tag to the final message's (last) text; return that text."""
    content = message.get("content")
    if isinstance(content, str):
        message["content"] = content + _CONTINUE_TAG
        return content
    if isinstance(content, list):
        for part in reversed(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                text: str = part["text"]
                part["text"] = text + _CONTINUE_TAG
                return text
    raise ChatTemplateError("continue_final_message is set but the final message has no text to continue")


def _cut_at_tag(rendered: str, final_text: str) -> str:
    tag = _CONTINUE_TAG.strip()
    if final_text.strip() not in rendered or tag not in rendered:
        raise ChatTemplateError(
            "continue_final_message is set but the final message does not appear in the rendered chat"
        )
    loc = rendered.rindex(tag)
    if rendered[loc : loc + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return rendered[:loc]  # the template keeps spacing: the message text is exactly as given
    return rendered[:loc].rstrip()  # the template trimmed the message: so do we


def prepare_messages(
    messages: Sequence[Mapping[str, Any]], content_format: ContentFormat, *, parse_tool_arguments: bool = True
) -> list[dict[str, Any]]:
    """Copy messages into the shape templates expect.

    - keys whose value is None are dropped (templates test `is defined`);
    - content parts: text parts are kept as parts ("openai") or joined with a space ("string", as SGLang/SMG);
      non-text parts (images, audio, files) raise UnsupportedContentError;
    - assistant tool_call arguments given as a JSON string are parsed to an object (as SGLang does), so
      templates that write `arguments | tojson` do not double-encode them."""
    out: list[dict[str, Any]] = []
    for idx, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ChatTemplateError(f"messages[{idx}] is not an object")
        msg = {k: v for k, v in message.items() if v is not None}
        content = msg.get("content")
        if isinstance(content, list):
            msg["content"] = _adapt_parts(content, content_format, idx)
        elif content_format == "string" and "content" not in msg:
            msg["content"] = ""
        if parse_tool_arguments and isinstance(msg.get("tool_calls"), list):
            msg["tool_calls"] = [_parse_tool_call(tc) for tc in msg["tool_calls"]]
        out.append(msg)
    return out


def _adapt_parts(parts: list[Any], content_format: ContentFormat, idx: int) -> str | list[dict[str, Any]]:
    texts: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise ChatTemplateError(f"messages[{idx}].content has a part that is not an object")
        ptype = part.get("type", "text")
        if ptype not in _TEXT_PART_TYPES:
            raise UnsupportedContentError(
                f"messages[{idx}].content: part type {ptype!r} is not supported on this path (text only)"
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise ChatTemplateError(f"messages[{idx}].content: a text part has no string 'text'")
        texts.append(text)
    if content_format == "string":
        return " ".join(texts)
    return [{"type": "text", "text": t} for t in texts]


def _parse_tool_call(tool_call: Any) -> Any:
    if not isinstance(tool_call, Mapping):
        return tool_call
    tc = dict(tool_call)
    fn = tc.get("function")
    if isinstance(fn, Mapping) and isinstance(fn.get("arguments"), str):
        fn = dict(fn)
        try:
            fn["arguments"] = json.loads(fn["arguments"]) if fn["arguments"].strip() else {}
        except ValueError:
            pass  # not JSON: leave the string for the template
        tc["function"] = fn
    return tc
