"""Tokenizer HTTP routes: POST /v1/tokenize and /v1/detokenize (data plane, spec 1.3) and the admin
tokenizer registry API (POST/GET /v1/tokenizers, GET/DELETE /v1/tokenizers/{id}, GET .../{id}/status)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from herder.routing.grpc.state import GrpcState
from herder.server import errors
from herder.server.errors import HttpError
from herder.server.http import Reply, Request
from herder.tokenization import TokenizerEntry, TokenizerExistsError, TokenizerNotFoundError

if TYPE_CHECKING:
    from herder.server.app import Gateway



def _json(reply: Reply, status: int, data: Any) -> None:
    reply.send(status, orjson.dumps(data))


def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(request.body) if request.body else None
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, errors.INVALID_JSON, f"Invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, errors.INVALID_JSON, "Request body must be a JSON object")
    return body


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value
    )


class TokenizerRoutes:
    """Handlers bound to the gateway (for auth and the registry)."""

    def __init__(self, gateway: Gateway, state: GrpcState) -> None:
        self.gw = gateway
        self.state = state

    def install(self) -> None:
        gw = self.gw
        gw.routes["/v1/tokenize"] = {b"POST": (self.tokenize, False)}
        gw.routes["/v1/detokenize"] = {b"POST": (self.detokenize, False)}
        gw.routes["/v1/tokenizers"] = {b"GET": (self.list, True), b"POST": (self.add, True)}
        gw.admin.prefix_routes.append(
            ("/v1/tokenizers/", {b"GET": (self.get, True), b"DELETE": (self.delete, True)})
        )

    # -- data plane ---------------------------------------------------------------------------------------------
    def _check_auth(self, request: Request) -> None:
        key = self.gw._api_key
        if key is not None and not self.gw._authorized(request, key):
            raise HttpError(401, errors.UNAUTHORIZED, "Invalid or missing API key")

    def _entry(self, body: dict[str, Any]) -> TokenizerEntry:
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise HttpError(400, errors.INVALID_REQUEST, "'model' must be a string", "model")
        entry = self.state.tokenizers.get(model) if model else None
        if entry is None and (not model or self.gw.registry.known_model(model)):
            entry = self.state.tokenizers.resolve(model or None)  # the only tokenizer serves a single model
        if entry is None:
            raise HttpError(
                404,
                errors.MODEL_NOT_FOUND,
                f"No tokenizer for model '{model}'" if model else "'model' is required",
                "model",
            )
        return entry

    async def tokenize(self, request: Request, reply: Reply) -> None:
        self._check_auth(request)
        body = _body(request)
        entry = self._entry(body)
        prompt = body.get("prompt", body.get("text"))
        add_special = body.get("add_special_tokens", True)
        if not isinstance(add_special, bool):
            raise HttpError(
                400, errors.INVALID_REQUEST, "'add_special_tokens' must be a boolean", "add_special_tokens"
            )
        encode = entry.cached.encode_async
        if isinstance(prompt, str):
            ids = await encode(prompt, add_special)
            _json(
                reply,
                200,
                {
                    "tokens": ids,
                    "count": len(ids),
                    "char_count": len(prompt),
                    "model": body.get("model") or entry.name,
                },
            )
            return
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            all_ids = [await encode(p, add_special) for p in prompt]
            _json(
                reply,
                200,
                {
                    "tokens": all_ids,
                    "count": [len(i) for i in all_ids],
                    "char_count": [len(p) for p in prompt],
                    "model": body.get("model") or entry.name,
                },
            )
            return
        raise HttpError(
            400, errors.INVALID_REQUEST, "'prompt' must be a string or a non-empty array of strings", "prompt"
        )

    async def detokenize(self, request: Request, reply: Reply) -> None:
        self._check_auth(request)
        body = _body(request)
        entry = self._entry(body)
        tokens = body.get("tokens")
        skip = body.get("skip_special_tokens", True)
        if not isinstance(skip, bool):
            raise HttpError(
                400, errors.INVALID_REQUEST, "'skip_special_tokens' must be a boolean", "skip_special_tokens"
            )
        vocab = entry.tokenizer.vocab_size
        decode = entry.tokenizer.decode
        if _is_ids(tokens):
            assert isinstance(tokens, list)
            self._check_range(tokens, vocab)
            _json(reply, 200, {"text": decode(tokens, skip)})
            return
        if isinstance(tokens, list) and tokens and all(_is_ids(t) for t in tokens):
            for t in tokens:
                self._check_range(t, vocab)
            _json(reply, 200, {"text": [decode(t, skip) for t in tokens]})
            return
        raise HttpError(
            400, errors.INVALID_REQUEST, "'tokens' must be an array of token ids or of arrays", "tokens"
        )

    @staticmethod
    def _check_range(ids: list[int], vocab: int) -> None:
        for t in ids:
            if t >= vocab:
                raise HttpError(
                    400, errors.INVALID_REQUEST, f"token id {t} is outside the vocabulary ({vocab})", "tokens"
                )

    # -- admin --------------------------------------------------------------------------------------------------
    async def list(self, request: Request, reply: Reply) -> None:
        _json(reply, 200, self.state.tokenizers.list_json())

    async def add(self, request: Request, reply: Reply) -> None:
        body = _body(request)
        name, source, template = body.get("name"), body.get("source"), body.get("chat_template_path")
        if not isinstance(name, str) or not name:
            raise HttpError(400, errors.MISSING_FIELD, "'name' is required", "name")
        if not isinstance(source, str) or not source:
            raise HttpError(400, errors.MISSING_FIELD, "'source' is required", "source")
        if template is not None and not isinstance(template, str):
            raise HttpError(
                400, errors.INVALID_REQUEST, "'chat_template_path' must be a string", "chat_template_path"
            )
        try:
            result = self.state.tokenizers.submit(name, source, template)
        except TokenizerExistsError as exc:
            raise HttpError(409, errors.TOKENIZER_EXISTS, str(exc), "name") from None
        self.state.forget_parsers()
        _json(reply, 202, result)

    async def get(self, request: Request, reply: Reply) -> None:
        rest: str = request.state["params"]["rest"]
        registry = self.state.tokenizers
        try:
            if rest.endswith("/status") and rest.count("/") == 1:
                _json(reply, 200, registry.status_json(rest[: -len("/status")]))
            elif "/" not in rest:
                _json(reply, 200, registry.info_json(rest))
            else:
                raise TokenizerNotFoundError(rest)
        except TokenizerNotFoundError:
            raise HttpError(404, errors.TOKENIZER_NOT_FOUND, f"Tokenizer '{rest.split('/')[0]}' not found") from None

    async def delete(self, request: Request, reply: Reply) -> None:
        rest: str = request.state["params"]["rest"]
        if "/" in rest:
            raise HttpError(404, errors.ROUTE_NOT_FOUND, f"No route for {request.path}")
        try:
            _json(reply, 200, self.state.tokenizers.remove(rest))
        except TokenizerNotFoundError:
            raise HttpError(404, errors.TOKENIZER_NOT_FOUND, f"Tokenizer '{rest}' not found") from None
