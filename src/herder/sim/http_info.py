"""Info and metrics endpoints of the simulated HTTP worker (pure: engine state in, body out).

``/v1/models``, ``/get_model_info``, ``/get_server_info``, ``/get_load`` (worker loads) and the SGLang-style
Prometheus text. Split from ``http_shapes.py``, which re-exports these names.
"""

from __future__ import annotations

import time
from typing import Any

from herder.sim.engine import SimEngine


def models(eng: SimEngine) -> dict[str, Any]:
    m = eng.config.model
    return {
        "object": "list",
        "data": [
            {
                "id": m,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "sglang",
                "root": m,
                "parent": None,
                "max_model_len": 32768,
            }
        ],
    }


def model_info(eng: SimEngine) -> dict[str, Any]:
    m = eng.config.model
    return {
        "model_path": m,
        "tokenizer_path": m,
        "is_generation": True,
        "preferred_sampling_params": None,
        "weight_version": "default",
        "has_image_understanding": False,
        "has_audio_understanding": False,
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "max_context_length": 32768,
    }


def server_info(eng: SimEngine) -> dict[str, Any]:
    cfg = eng.config
    return {
        "model_path": cfg.model,
        "served_model_name": cfg.model,
        "tokenizer_path": cfg.model,
        "tp_size": 1,
        "dp_size": 1,
        "page_size": cfg.block_size,
        "context_length": 32768,
        "max_total_num_tokens": cfg.cache_blocks * cfg.block_size,
        "max_running_requests": cfg.max_running_requests,
        "version": "herder-sim",
        "internal_states": [eng.loads()],
    }


def worker_loads(eng: SimEngine) -> dict[str, Any]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"timestamp": ts, "dp_rank_count": 1, "loads": [eng.loads()]}


def prometheus(eng: SimEngine) -> bytes:
    ld, st = eng.loads(), eng.stats
    name = eng.config.model.replace('"', "")
    lbl = f'{{model_name="{name}"}}'
    rows = [
        ("num_running_reqs", ld["num_running_reqs"]),
        ("num_queue_reqs", 0),
        ("token_usage", ld["token_usage"]),
        ("cache_hit_rate", ld["cache_hit_rate"]),
        ("gen_throughput", ld["gen_throughput"]),
        ("prompt_tokens_total", st.prompt_tokens),
        ("generation_tokens_total", st.completion_tokens),
        ("cached_tokens_total", st.cached_tokens),
    ]
    return "".join(f"sglang:{k}{lbl} {v}\n" for k, v in rows).encode()
