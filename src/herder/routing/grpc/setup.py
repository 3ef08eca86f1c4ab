"""Plugs the gRPC path into the gateway (router, prober, routes). Placeholder until the gRPC router lands."""

from __future__ import annotations

from typing import Any


def install(gateway: Any) -> None:
    """Register the gRPC router (`gateway.routers["grpc"]`), the grpc:// prober
    (`gateway.manager.probers["grpc"]`), and the tokenizer routes."""
