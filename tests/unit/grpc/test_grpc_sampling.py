"""Request building: every sampling field explicit (proto3 zeros are not the defaults), per runtime."""

from __future__ import annotations

import json

import pytest

from herder.routing.grpc import Constraint, DisaggregatedParams, GenerateParams, build_generate_request


def _params(**kw: object) -> GenerateParams:
    return GenerateParams(request_id="r1", input_ids=[1, 2, 3], original_text="hi", **kw)  # type: ignore[arg-type]


def test_sglang_defaults_are_explicit() -> None:
    req = build_generate_request("sglang", _params())
    sp = req.sampling_params  # type: ignore[attr-defined]
    assert sp.temperature == pytest.approx(1.0)
    assert sp.top_p == pytest.approx(1.0)
    assert sp.top_k == -1
    assert sp.min_p == 0.0
    assert sp.repetition_penalty == pytest.approx(1.0)
    assert sp.frequency_penalty == 0.0 and sp.presence_penalty == 0.0
    assert sp.n == 1
    assert sp.skip_special_tokens is True
    assert sp.spaces_between_special_tokens is True
    assert not sp.HasField("max_new_tokens")
    assert sp.WhichOneof("constraint") is None
    assert req.tokenized.input_ids == [1, 2, 3] and req.tokenized.original_text == "hi"  # type: ignore[attr-defined]
    assert req.stream is True and req.return_logprob is False  # type: ignore[attr-defined]
    assert req.logprob_start_len == -1  # type: ignore[attr-defined]
    assert not req.HasField("disaggregated_params")


def test_vllm_defaults_are_explicit() -> None:
    req = build_generate_request("vllm", _params())
    sp = req.sampling_params  # type: ignore[attr-defined]
    assert sp.HasField("temperature") and sp.temperature == pytest.approx(1.0)
    assert sp.top_p == pytest.approx(1.0)
    assert sp.top_k == 0  # vLLM's "disabled" on its uint32 wire
    assert sp.repetition_penalty == pytest.approx(1.0)
    assert sp.n == 1 and sp.skip_special_tokens is True
    assert not sp.HasField("max_tokens") and not sp.HasField("logprobs") and not sp.HasField("seed")
    assert req.WhichOneof("input") == "tokenized"
    assert not req.HasField("kv_transfer_params_json")


@pytest.mark.parametrize("runtime", ["tokenspeed", "mlx", "trtllm"])
def test_best_effort_runtimes_set_defaults(runtime: str) -> None:
    req = build_generate_request(runtime, _params())
    if runtime == "trtllm":
        sc = req.sampling_config  # type: ignore[attr-defined]
        assert sc.temperature == pytest.approx(1.0) and sc.top_p == pytest.approx(1.0)
        assert sc.repetition_penalty == pytest.approx(1.0) and sc.num_return_sequences == 1
        assert sc.beam_width == 1 and req.max_tokens > 0  # type: ignore[attr-defined]
        assert list(req.tokenized.input_token_ids) == [1, 2, 3]  # type: ignore[attr-defined]
        return
    sp = req.sampling_params  # type: ignore[attr-defined]
    assert sp.HasField("temperature") and sp.temperature == pytest.approx(1.0)
    assert sp.top_p == pytest.approx(1.0) and sp.repetition_penalty == pytest.approx(1.0)
    if runtime == "tokenspeed":
        assert sp.HasField("top_k") and sp.top_k == -1
        assert sp.HasField("min_p") and sp.HasField("frequency_penalty")


def test_sglang_carries_every_given_value() -> None:
    p = _params(
        max_new_tokens=7,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        frequency_penalty=0.3,
        presence_penalty=0.4,
        repetition_penalty=1.1,
        stop=["\n\n"],
        stop_token_ids=[151645],
        skip_special_tokens=False,
        no_stop_trim=True,
        ignore_eos=True,
        n=3,
        logprobs=True,
        top_logprobs=5,
        min_new_tokens=2,
        constraint=Constraint("regex", "[a-z]+"),
        stream=False,
        data_parallel_rank=0,
        disaggregated_params=DisaggregatedParams("10.0.0.1", None, 42),
    )
    req = build_generate_request("sglang", p)
    sp = req.sampling_params  # type: ignore[attr-defined]
    assert sp.max_new_tokens == 7 and sp.temperature == pytest.approx(0.2) and sp.top_k == 40
    assert sp.min_p == pytest.approx(0.05) and sp.repetition_penalty == pytest.approx(1.1)
    assert list(sp.stop) == ["\n\n"] and list(sp.stop_token_ids) == [151645]
    assert sp.no_stop_trim and sp.ignore_eos and sp.n == 3 and sp.min_new_tokens == 2
    assert sp.WhichOneof("constraint") == "regex" and sp.regex == "[a-z]+"
    assert req.return_logprob and req.top_logprobs_num == 5 and not req.stream  # type: ignore[attr-defined]
    assert req.HasField("data_parallel_rank") and req.data_parallel_rank == 0  # type: ignore[attr-defined]
    d = req.disaggregated_params  # type: ignore[attr-defined]
    assert (d.bootstrap_host, d.bootstrap_port, d.bootstrap_room) == ("10.0.0.1", 8998, 42)


@pytest.mark.parametrize(
    ("kind", "sglang_field", "vllm_field"),
    [
        ("json_schema", "json_schema", "json_schema"),
        ("regex", "regex", "regex"),
        ("ebnf", "ebnf_grammar", "grammar"),
        ("structural_tag", "structural_tag", "structural_tag"),
        ("json_object", "json_schema", "json_object"),
    ],
)
def test_constraint_oneofs(kind: str, sglang_field: str, vllm_field: str) -> None:
    c = Constraint(kind, '{"type": "object"}')  # type: ignore[arg-type]
    sg = build_generate_request("sglang", _params(constraint=c)).sampling_params  # type: ignore[attr-defined]
    vl = build_generate_request("vllm", _params(constraint=c)).sampling_params  # type: ignore[attr-defined]
    assert sg.WhichOneof("constraint") == sglang_field
    assert vl.WhichOneof("constraint") == vllm_field
    if kind == "json_object":
        assert json.loads(sg.json_schema) == {"type": "object"} and vl.json_object is True


def test_vllm_logprobs_seed_kv_params() -> None:
    p = _params(
        logprobs=True,
        top_logprobs=0,
        seed=7,
        kv_transfer_params={"do_remote_decode": True},
        no_stop_trim=True,
    )
    req = build_generate_request("vllm", p)
    sp = req.sampling_params  # type: ignore[attr-defined]
    assert sp.HasField("logprobs") and sp.logprobs == 0  # requested with no alternatives: present, 0
    assert sp.seed == 7 and sp.include_stop_str_in_output is True
    assert json.loads(req.kv_transfer_params_json) == {"do_remote_decode": True}  # type: ignore[attr-defined]
