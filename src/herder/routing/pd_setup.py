"""Plugs prefill/decode disaggregation into the gateway. Placeholder until the PD router lands."""

from __future__ import annotations

from typing import Any


def install(gateway: Any) -> None:
    """With --pd-disaggregation: register prefill/decode workers at start, route through the PD router, and
    require a healthy prefill and decode worker for readiness."""
