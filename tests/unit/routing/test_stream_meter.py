"""Stream metering: first content event detection and the deferred SSE event count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from herder.routing.context import StreamMeter, _has_content


def test_content_detection_compact_spaced_and_empty() -> None:
    assert _has_content(b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n')
    assert not _has_content(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n')
    assert _has_content(b'data: {"choices":[{"delta":{"content":""}}]}\n\ndata: {"choices":[{"delta":{"content":"x"}}]}\n\n')
    assert _has_content(b'data: {"choices": [{"delta": {"content": "spaced"}}]}\n\n')
    assert _has_content(b'data: {"choices":[{"text":"completion"}]}\n\n')
    assert _has_content(b'data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n')
    assert not _has_content(b"data: [DONE]\n\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=30),
       st.integers(min_value=10, max_value=5000))
def test_event_count_is_exact_whatever_the_reads(events_per_read: list[int], payload: int) -> None:
    event = b"data: " + b"x" * payload + b"\n\n"
    meter = StreamMeter()
    for n in events_per_read:
        meter.add(event * n)  # large reads are counted as they come, small ones at the end
    assert meter.total_events() == sum(events_per_read)
    assert meter.total_events() == sum(events_per_read)  # idempotent
