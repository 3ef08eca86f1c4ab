"""Per-model tokenizers and the admin API's asynchronous load jobs (POST/GET/DELETE /v1/tokenizers).

Methods return the JSON-ready dicts of SMG's tokenizer admin API; the HTTP layer only serializes them and maps
the exceptions (TokenizerExistsError -> 409, TokenizerNotFoundError -> 404 tokenizer_not_found).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from herder.tokenization.cache import L0_MAX_BYTES, L0_MAX_ENTRIES, L1_MAX_BYTES, CachedTokenizer
from herder.tokenization.chat_template import ChatTemplate
from herder.tokenization.loader import load_source
from herder.tokenization.tokenizer import Tokenizer

JobStatus = Literal["pending", "processing", "completed", "failed"]
Loader = Callable[[], Tokenizer]


class TokenizerExistsError(Exception):
    """A tokenizer with this name is already registered or loading (HTTP 409)."""


class TokenizerNotFoundError(KeyError):
    """No tokenizer with this id (HTTP 404, code tokenizer_not_found)."""


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Tokenizer cache settings (SMG flags --tokenizer-cache-*; both levels off by default on the CLI)."""

    enable_l0: bool = False
    l0_max_entries: int = L0_MAX_ENTRIES
    l0_max_bytes: int = L0_MAX_BYTES
    enable_l1: bool = False
    l1_max_bytes: int = L1_MAX_BYTES


@dataclass(slots=True)
class TokenizerEntry:
    """A ready tokenizer for one model name."""

    id: str
    name: str
    source: str
    tokenizer: Tokenizer
    chat_template: ChatTemplate | None
    cached: CachedTokenizer
    aliases: tuple[str, ...] = ()
    created_at: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        """TokenizerInfo for GET /v1/tokenizers/{id}."""
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "vocab_size": self.tokenizer.vocab_size,
            "status": "completed",
            "kind": self.tokenizer.kind,
            "has_chat_template": self.chat_template is not None,
            "eos_token_ids": list(self.tokenizer.eos_token_ids),
            "fingerprint": self.tokenizer.fingerprint,
            "created_at": int(self.created_at),
        }


@dataclass(slots=True)
class LoadJob:
    """An asynchronous load (its id is the tokenizer's id once completed)."""

    id: str
    name: str
    source: str
    chat_template_path: str | None
    status: JobStatus = "pending"
    message: str = "Tokenizer registration queued"
    vocab_size: int | None = None
    task: asyncio.Task[None] | None = None

    def status_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status, "message": self.message}
        if self.vocab_size is not None:
            out["vocab_size"] = self.vocab_size
        return out


class TokenizerRegistry:
    """name -> TokenizerEntry, plus load jobs. Lookups are O(1) dict reads, safe from the event loop."""

    def __init__(
        self,
        cache: CacheConfig | None = None,
        *,
        loader: Callable[[str, str | None], Tokenizer] | None = None,
    ) -> None:
        self.cache = cache or CacheConfig()
        self._load_source = loader or (lambda source, tpl: load_source(source, chat_template_path=tpl))
        self._by_id: dict[str, TokenizerEntry] = {}
        self._by_name: dict[str, TokenizerEntry] = {}
        self._jobs: dict[str, LoadJob] = {}

    # -- registration ----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        tokenizer: Tokenizer,
        *,
        source: str = "",
        chat_template_path: str | None = None,
        aliases: Iterable[str] = (),
        entry_id: str | None = None,
        replace: bool = False,
    ) -> TokenizerEntry:
        """Register a loaded tokenizer synchronously (startup, tests). The template is compiled here."""
        if not replace and (name in self._by_name or self._pending_job(name) is not None):
            raise TokenizerExistsError(f"tokenizer {name!r} already exists")
        template_text = _read_template(chat_template_path) if chat_template_path else None
        template = ChatTemplate.from_tokenizer(tokenizer, source=template_text)
        cfg = self.cache
        cached = CachedTokenizer(
            tokenizer,
            enable_l0=cfg.enable_l0,
            l0_max_entries=cfg.l0_max_entries,
            l0_max_bytes=cfg.l0_max_bytes,
            enable_l1=cfg.enable_l1,
            l1_max_bytes=cfg.l1_max_bytes,
        )
        entry = TokenizerEntry(
            id=entry_id or str(uuid.uuid4()),
            name=name,
            source=source or tokenizer.source,
            tokenizer=tokenizer,
            chat_template=template,
            cached=cached,
            aliases=tuple(aliases),
        )
        old = self._by_name.get(name)
        if old is not None:
            self._drop(old)
        self._by_id[entry.id] = entry
        self._by_name[name] = entry
        for alias in entry.aliases:
            self._by_name.setdefault(alias, entry)
        return entry

    def submit(
        self,
        name: str,
        source: str,
        chat_template_path: str | None = None,
        *,
        load: Loader | None = None,
    ) -> dict[str, Any]:
        """POST /v1/tokenizers: start an asynchronous load; returns the 202 body. Needs a running loop.

        `load` overrides how the tokenizer is obtained (e.g. `lambda: load_from_bundle(data, sha)` for a
        worker's GetTokenizer bundle); by default `source` is resolved by `loader.load_source`."""
        if not name:
            raise ValueError("tokenizer name must not be empty")
        if name in self._by_name or self._pending_job(name) is not None:
            raise TokenizerExistsError(f"tokenizer {name!r} already exists")
        job = LoadJob(id=str(uuid.uuid4()), name=name, source=source, chat_template_path=chat_template_path)
        self._jobs[job.id] = job
        loader = load or (lambda: self._load_source(source, chat_template_path))
        job.task = asyncio.get_running_loop().create_task(self._run_job(job, loader))
        return {"id": job.id, "status": job.status, "message": job.message}

    async def _run_job(self, job: LoadJob, load: Loader) -> None:
        job.status, job.message = "processing", f"Loading tokenizer from {job.source}"
        try:
            # Loading parses tens of MB of JSON and compiles the template: keep it off the event loop.
            tokenizer = await asyncio.to_thread(load)
            if job.id not in self._jobs:  # deleted while loading
                return
            entry = self.register(
                job.name, tokenizer, source=job.source, chat_template_path=job.chat_template_path,
                entry_id=job.id, replace=True,
            )  # fmt: skip
        except asyncio.CancelledError:
            job.status, job.message = "failed", "Tokenizer load cancelled"
            raise
        except Exception as e:
            job.status, job.message = "failed", f"Failed to load tokenizer: {e}"
            return
        job.status, job.vocab_size = "completed", entry.tokenizer.vocab_size
        job.message = f"Tokenizer {job.name!r} loaded (vocab size {job.vocab_size})"

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Wait for a load job to finish; returns its status body."""
        job = self._jobs.get(job_id)
        if job is None:
            return self.status_json(job_id)
        if job.task is not None:
            await asyncio.gather(job.task, return_exceptions=True)
        return job.status_json()

    # -- lookups ---------------------------------------------------------------------------------
    def get(self, model_id: str) -> TokenizerEntry | None:
        """The entry for a model name or alias."""
        return self._by_name.get(model_id)

    def resolve(self, model_id: str | None) -> TokenizerEntry | None:
        """`get`, falling back to the only registered tokenizer (single-model deployments)."""
        if model_id:
            entry = self._by_name.get(model_id)
            if entry is not None:
                return entry
        if len(self._by_id) == 1:
            return next(iter(self._by_id.values()))
        return None

    def by_id(self, entry_id: str) -> TokenizerEntry | None:
        return self._by_id.get(entry_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._by_name

    # -- admin API bodies ------------------------------------------------------------------------
    def list_json(self) -> dict[str, Any]:
        """GET /v1/tokenizers."""
        return {
            "tokenizers": [
                {"id": e.id, "name": e.name, "source": e.source, "vocab_size": e.tokenizer.vocab_size}
                for e in self._by_id.values()
            ]
        }

    def info_json(self, entry_id: str) -> dict[str, Any]:
        """GET /v1/tokenizers/{id}; a job that is not completed yet reports its status fields."""
        entry = self._by_id.get(entry_id)
        if entry is not None:
            return entry.info()
        job = self._jobs.get(entry_id)
        if job is not None:
            return {"id": job.id, "name": job.name, "source": job.source, **job.status_json()}
        raise TokenizerNotFoundError(entry_id)

    def status_json(self, entry_id: str) -> dict[str, Any]:
        """GET /v1/tokenizers/{id}/status."""
        job = self._jobs.get(entry_id)
        if job is not None:
            return job.status_json()
        entry = self._by_id.get(entry_id)
        if entry is not None:
            return {"id": entry.id, "status": "completed", "message": "Tokenizer registered",
                    "vocab_size": entry.tokenizer.vocab_size}  # fmt: skip
        raise TokenizerNotFoundError(entry_id)

    def remove(self, entry_id: str) -> dict[str, Any]:
        """DELETE /v1/tokenizers/{id}: drops the tokenizer (or cancels its pending load)."""
        entry = self._by_id.get(entry_id)
        job = self._jobs.pop(entry_id, None)
        if entry is None and job is None:
            raise TokenizerNotFoundError(entry_id)
        if job is not None and job.task is not None and not job.task.done():
            job.task.cancel()
        if entry is not None:
            self._drop(entry)
            return {"success": True, "message": f"Tokenizer {entry.name!r} removed"}
        assert job is not None
        return {"success": True, "message": f"Tokenizer load {job.name!r} cancelled"}

    def _drop(self, entry: TokenizerEntry) -> None:
        self._by_id.pop(entry.id, None)
        for key in (entry.name, *entry.aliases):
            if self._by_name.get(key) is entry:
                del self._by_name[key]

    def _pending_job(self, name: str) -> LoadJob | None:
        for job in self._jobs.values():
            if job.name == name and job.status in ("pending", "processing"):
                return job
        return None


def _read_template(path: str) -> str:
    from herder.tokenization.loader import TokenizerLoadError

    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise TokenizerLoadError(f"cannot read chat template {path}: {e}") from e
