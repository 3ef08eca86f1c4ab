"""Helpers shared by the gRPC integration tests."""

from __future__ import annotations

import openai

from herder.server.app import Gateway

MODEL = "Qwen/Qwen3-0.6B"


def client_for(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key="unused", max_retries=0)


def base_url(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.port}"


def total_load(gw: Gateway) -> int:
    return sum(w.load for w in gw.registry.workers.values())
