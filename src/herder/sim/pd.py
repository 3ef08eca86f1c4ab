"""Simulated PD (prefill/decode disaggregation) fleet: ``SimPdFleet`` starts prefill + decode workers in-process.

The workers and the PD handoff they check (SGLang bootstrap rooms, vLLM ``kv_transfer_params``) are in
``pd_worker.py``; its public names are re-exported here so ``from herder.sim.pd import ...`` keeps working.
"""

from __future__ import annotations

import contextlib
import dataclasses
from types import TracebackType
from typing import Any

from herder.sim.engine import SimConfig, SimEngine
from herder.sim.pd_worker import BOOTSTRAP_FAILED as BOOTSTRAP_FAILED
from herder.sim.pd_worker import MAX_ROOMS as MAX_ROOMS
from herder.sim.pd_worker import Flavor, Role, SimPdWorker
from herder.sim.pd_worker import PdFailure as PdFailure
from herder.sim.pd_worker import PdStats as PdStats
from herder.sim.pd_worker import input_logprobs as input_logprobs


class SimPdFleet:
    """``prefill`` + ``decode`` in-process simulated PD workers of one ``flavor``, sharing one config."""

    def __init__(
        self,
        prefill: int = 2,
        decode: int = 2,
        *,
        flavor: Flavor = "sglang",
        host: str = "127.0.0.1",
        transfer_ms: float = 0.0,
        config: SimConfig | None = None,
        **engine_config: Any,
    ) -> None:
        base = config if config is not None else SimConfig()
        self.config = dataclasses.replace(base, **engine_config) if engine_config else base
        self.flavor: Flavor = flavor
        self.host = host
        self.transfer_ms = transfer_ms
        self._n = (prefill, decode)
        self.prefills: list[SimPdWorker] = []
        self.decodes: list[SimPdWorker] = []

    def _make(self, role: Role, i: int, port: int = 0, bootstrap_port: int = 0) -> SimPdWorker:
        seed = self.config.seed + i + (1000 if role == "decode" else 0)
        return SimPdWorker(
            role,
            SimEngine(dataclasses.replace(self.config, seed=seed)),
            flavor=self.flavor,
            host=self.host,
            port=port,
            bootstrap_port=bootstrap_port,
            transfer_ms=self.transfer_ms,
        )

    async def start(self) -> SimPdFleet:
        try:
            for i in range(self._n[0]):
                w = self._make("prefill", i)
                await w.start()
                self.prefills.append(w)
            for i in range(self._n[1]):
                w = self._make("decode", i)
                await w.start()
                self.decodes.append(w)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                await w.stop()

    async def __aenter__(self) -> SimPdFleet:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def workers(self) -> list[SimPdWorker]:
        return [*self.prefills, *self.decodes]

    @property
    def prefill_args(self) -> list[list[str]]:
        """The gateway's `prefill` config value: [[url, bootstrap_port], ...]."""
        return [[w.url, str(w.bootstrap_port)] for w in self.prefills]

    @property
    def decode_args(self) -> list[list[str]]:
        return [[w.url] for w in self.decodes]

    def failures(self) -> int:
        """PD mismatch / bootstrap failures over the whole fleet (0 in a correct run)."""
        return sum(w.pd.failures for w in self.workers)

    def transfers(self) -> int:
        return sum(w.pd.transfers_ok for w in self.decodes)

    async def kill_prefill(self, i: int) -> None:
        """Make prefill ``i`` vanish (listener, bootstrap server and every connection)."""
        w = self.prefills[i]
        w.dead.set()
        await w.stop()
