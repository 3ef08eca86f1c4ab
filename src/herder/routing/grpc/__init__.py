"""herder.routing.grpc: the gateway-side client layer for tokens-in/tokens-out gRPC workers
(smg-grpc-proto: SGLang, vLLM, TRT-LLM, TokenSpeed, MLX)."""

from herder.routing.grpc.client import (
    GRPC_TO_HTTP_STATUS,
    EmbedResult,
    GrpcCallError,
    GrpcWorkerClient,
    grpc_target,
    http_status_for,
    normalize_runtime_hint,
)
from herder.routing.grpc.runtimes import (
    RUNTIME_ORDER,
    RUNTIMES,
    Chunk,
    Complete,
    GenerateAssembler,
    GenerateEvent,
    Logprobs,
    ModelInfo,
    build_generate_request,
)
from herder.routing.grpc.sampling import Constraint, DisaggregatedParams, GenerateParams

__all__ = [
    "GRPC_TO_HTTP_STATUS",
    "RUNTIMES",
    "RUNTIME_ORDER",
    "Chunk",
    "Complete",
    "Constraint",
    "DisaggregatedParams",
    "EmbedResult",
    "GenerateAssembler",
    "GenerateEvent",
    "GenerateParams",
    "GrpcCallError",
    "GrpcWorkerClient",
    "Logprobs",
    "ModelInfo",
    "build_generate_request",
    "grpc_target",
    "http_status_for",
    "normalize_runtime_hint",
]
