"""Sans-I/O response normalisation: whatever each runtime puts in its final message, streamed chunks cover
every output id exactly once and Complete.output_ids is the whole output (chunk splits must not matter)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from smg_grpc_proto.generated import sglang_scheduler_pb2 as sg
from smg_grpc_proto.generated import vllm_engine_pb2 as vl

from herder.routing.grpc import RUNTIMES, Chunk, Complete, GenerateAssembler
from herder.routing.grpc.runtimes import split_final

ids_st = st.lists(st.integers(min_value=0, max_value=50), min_size=0, max_size=30)


def _splits(ids: list[int], cuts: list[int]) -> list[list[int]]:
    points = sorted({c % (len(ids) + 1) for c in cuts} | {0, len(ids)})
    return [ids[a:b] for a, b in pairwise(points) if b > a]


def _run(
    runtime: str, responses: list[object], stream: bool
) -> tuple[dict[int, list[int]], dict[int, Complete]]:
    asm = GenerateAssembler(RUNTIMES[runtime].parse, stream)
    streamed: dict[int, list[int]] = {}
    done: dict[int, Complete] = {}
    for resp in responses:
        for ev in asm.feed(resp):  # type: ignore[arg-type]
            if isinstance(ev, Chunk):
                assert ev.index not in done, "chunk after complete"
                streamed.setdefault(ev.index, []).extend(ev.token_ids)
            else:
                done[ev.index] = ev
    return streamed, done


@given(ids=ids_st, cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_sglang_cumulative_complete(ids: list[int], cuts: list[int]) -> None:
    parts = _splits(ids, cuts)
    msgs: list[object] = [
        sg.GenerateResponse(chunk=sg.GenerateStreamChunk(token_ids=p, completion_tokens=0)) for p in parts
    ]
    msgs.append(
        sg.GenerateResponse(
            complete=sg.GenerateComplete(output_ids=ids, finish_reason="stop", completion_tokens=len(ids))
        )
    )
    streamed, done = _run("sglang", msgs, stream=True)
    assert streamed.get(0, []) == ids
    assert done[0].output_ids == ids and done[0].finish_reason == "stop"


@given(
    ids=ids_st,
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
    fresh_tail=st.booleans(),
    counts=st.booleans(),
)
def test_vllm_final_delta_conventions(
    ids: list[int], cuts: list[int], fresh_tail: bool, counts: bool
) -> None:
    parts = _splits(ids, cuts)
    # fresh_tail: the last delta arrives only in the complete; otherwise the complete repeats the last chunk.
    chunk_parts = parts[:-1] if fresh_tail and parts else parts
    last = parts[-1] if parts else []
    msgs: list[object] = [vl.GenerateResponse(chunk=vl.GenerateStreamChunk(token_ids=p)) for p in chunk_parts]
    total = len(ids) if counts else 0
    msgs.append(
        vl.GenerateResponse(
            complete=vl.GenerateComplete(output_ids=last, finish_reason="length", completion_tokens=total)
        )
    )
    streamed, done = _run("vllm", msgs, stream=True)
    if counts or not _ambiguous(chunk_parts, last, fresh_tail):
        assert streamed.get(0, []) == ids
        assert done[0].output_ids == ids
    assert done[0].completion_tokens == (total or len(done[0].output_ids))


def _ambiguous(chunk_parts: list[list[int]], last: list[int], fresh_tail: bool) -> bool:
    # Without counts a fresh tail is indistinguishable from a repeat when it equals the end of what was
    # streamed, and from a cumulative list when it starts with everything streamed.
    delivered = [t for p in chunk_parts for t in p]
    if not fresh_tail or not last:
        return False
    repeat_like = delivered[len(delivered) - len(last) :] == last
    cumulative_like = bool(delivered) and last[: len(delivered)] == delivered
    return repeat_like or cumulative_like


@given(ids=ids_st)
def test_non_streaming_complete_has_all_ids(ids: list[int]) -> None:
    msg = vl.GenerateResponse(
        complete=vl.GenerateComplete(output_ids=ids, finish_reason="stop", completion_tokens=len(ids))
    )
    streamed, done = _run("vllm", [msg], stream=False)
    assert streamed == {} and done[0].output_ids == ids


def test_n2_multiplexed_by_index() -> None:
    msgs = [
        sg.GenerateResponse(chunk=sg.GenerateStreamChunk(token_ids=[1], index=0)),
        sg.GenerateResponse(chunk=sg.GenerateStreamChunk(token_ids=[7, 8], index=1)),
        sg.GenerateResponse(chunk=sg.GenerateStreamChunk(token_ids=[2], index=0)),
        sg.GenerateResponse(
            complete=sg.GenerateComplete(output_ids=[7, 8], index=1, completion_tokens=2, matched_token_id=8)
        ),
        sg.GenerateResponse(
            complete=sg.GenerateComplete(
                output_ids=[1, 2], index=0, completion_tokens=2, matched_stop_str="x"
            )
        ),
    ]
    streamed, done = _run("sglang", msgs, stream=True)
    assert streamed == {0: [1, 2], 1: [7, 8]}
    assert done[0].matched_stop == "x" and done[1].matched_stop == 8


def test_vllm_kv_transfer_params_and_logprobs() -> None:
    lp = vl.OutputLogProbs(
        token_logprobs=[-0.5],
        token_ids=[9],
        top_logprobs=[vl.TopLogProbs(values=[-0.5, -1.0], token_ids=[9, 3])],
    )
    msgs = [
        vl.GenerateResponse(chunk=vl.GenerateStreamChunk(token_ids=[9], output_logprobs=lp)),
        vl.GenerateResponse(
            complete=vl.GenerateComplete(
                output_ids=[9],
                completion_tokens=1,
                finish_reason="length",
                output_logprobs=lp,
                kv_transfer_params_json='{"remote_engine_id": "e1"}',
            )
        ),
    ]
    _, done = _run("vllm", msgs, stream=True)
    assert done[0].kv_transfer_params == {"remote_engine_id": "e1"}
    assert done[0].logprobs is not None and done[0].logprobs.top == [[(9, -0.5), (3, -1.0)]]


def test_split_final_table() -> None:
    assert split_final([1, 2], [1, 2, 3], 3) == ([1, 2, 3], 1)  # cumulative
    assert split_final([1, 2], [2], 2) == ([1, 2], 0)  # repeat of the last delta
    assert split_final([1, 2], [2], 3) == ([1, 2, 2], 1)  # fresh delta that looks like a repeat
    assert split_final([], [4, 5], 2) == ([4, 5], 2)  # non-streaming
