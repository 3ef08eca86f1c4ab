"""The error envelope and every error code herder answers with (one place per fact).

Errors are OpenAI-shaped: `{"error": {"message", "type", "code", "param"}}`; `type` is the HTTP reason phrase as
SMG does, and the code is repeated in the `X-SMG-Error-Code` response header.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_TYPES: dict[int, str] = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type",
    417: "Expectation Failed", 422: "Unprocessable Entity", 429: "Too Many Requests",
    499: "Client Closed Request", 500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

# Error codes (SMG's names where SMG has one).
INVALID_JSON = "invalid_json"
INVALID_REQUEST = "invalid_request"
MISSING_FIELD = "missing_required_field"
MODEL_NOT_FOUND = "model_not_found"
ROUTE_NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
PAYLOAD_TOO_LARGE = "payload_too_large"
UNAUTHORIZED = "unauthorized"
NO_AVAILABLE_WORKERS = "no_available_workers"
UPSTREAM_CONNECTION_FAILED = "call_upstream_connection_failed"
UPSTREAM_TIMEOUT = "call_upstream_timeout"
UPSTREAM_ERROR = "upstream_error"
UPSTREAM_STREAM_ERROR = "upstream_stream_error"
WORKER_NOT_FOUND = "worker_not_found"
RATE_LIMITED = "rate_limit_exceeded"
QUEUE_TIMEOUT = "queue_timeout"
INTERNAL_ERROR = "internal_error"
SHUTTING_DOWN = "server_shutting_down"
CLIENT_DISCONNECTED = "client_disconnected"  # status 499: the client left before the answer was complete
# PD routing
SERVER_SELECTION_FAILED = "server_selection_failed"
PD_REQUEST_FAILED = "pd_request_failed"
PREFILL_ERROR = "prefill_error"  # a PD leg answered a retryable error status (`{leg}_error`)
DECODE_ERROR = "decode_error"
# tokenizer admin routes
TOKENIZER_NOT_FOUND = "tokenizer_not_found"
TOKENIZER_EXISTS = "tokenizer_already_exists"


def error_type(status: int) -> str:
    return _TYPES.get(status, "Error")


def error_body(message: str, code: str, status: int, param: str | None = None) -> bytes:
    """The JSON error envelope."""
    return orjson.dumps(
        {"error": {"message": message, "type": error_type(status), "code": code, "param": param}}
    )


def sse_error_event(message: str, code: str, status: int) -> bytes:
    """One SSE `data:` event carrying an error, for failures after a stream started."""
    return b"data: " + orjson.dumps(
        {"error": {"message": message, "type": error_type(status), "code": code, "param": None,
                   "status": status}}
    ) + b"\n\n"


@dataclass(slots=True)
class HttpError(Exception):
    """Raised by handlers and turned into the error envelope by the app."""

    status: int
    code: str
    message: str
    param: str | None = None
    headers: list[tuple[bytes, bytes]] | None = None

    def body(self) -> bytes:
        return error_body(self.message, self.code, self.status, self.param)
