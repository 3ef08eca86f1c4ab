"""Metric families of our own: children (counter, gauge, histogram series), label families, and the text
renderer. Plain Python numbers and a `bisect` per histogram observation; prometheus_client Collectors
(`collect()`), rendered byte-identically to prometheus_client's `generate_latest` by `render_text`.
See `metrics.py` for why (cost per request) and for the metric definitions.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any, ClassVar, Generic, Literal, TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

GaugeMode = Literal["sum", "max", "min"]

# --------------------------------------------------------------------------------------------- children


class CounterChild:
    """One counter series. `inc` does not check the sign (callers only ever add)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class GaugeChild:
    """One gauge series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class HistogramChild:
    """One histogram series: non-cumulative bucket counts (last one is +Inf) and the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left gives the first bound >= value: Prometheus' `le` (less-or-equal) semantics.
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


# --------------------------------------------------------------------------------------------- families

_C = TypeVar("_C", CounterChild, GaugeChild, HistogramChild)


class Family(Generic[_C]):
    """A named metric with fixed label names; `labels(...)` returns (and caches) one child per value tuple.

    It is a prometheus_client Collector (`collect`/`describe`), registered in its `Metrics`' registry.
    """

    __slots__ = ("_children", "_header", "_prefixes", "documentation", "labelnames", "name")
    kind: ClassVar[str]

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _C] = {}
        self._prefixes: dict[tuple[str, ...], Any] = {}  # label values -> pre-rendered sample-line prefixes
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self._header = f"# HELP {name} {doc}\n# TYPE {name} {self.kind}\n"
        if not self.labelnames:
            self._children[()] = self._new_child()

    def _new_child(self) -> _C:
        raise NotImplementedError

    def labels(self, *values: str) -> _C:
        """The child for these label values (in `labelnames` order); created on first use."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values!r}")
            if not all(type(v) is str for v in values):
                raise TypeError(f"{self.name}: label values must be str, got {values!r}")
            child = self._children[values] = self._new_child()
        return child

    @property
    def child(self) -> _C:
        """The single child of a family without labels."""
        return self._children[()]

    def series(self) -> dict[tuple[str, ...], _C]:
        """A copy of label values -> child (for tests, tooling and aggregation)."""
        return dict(self._children)

    def remove(self, *values: str) -> None:
        self._children.pop(values, None)
        self._prefixes.pop(values, None)

    def remove_matching(self, label: str, value: str) -> None:
        """Drop every series whose `label` equals `value` (e.g. all series of a removed worker)."""
        i = self.labelnames.index(label)
        for key in [k for k in self._children if k[i] == value]:
            del self._children[key]
            self._prefixes.pop(key, None)

    def _empty(self) -> Metric:
        raise NotImplementedError

    def _add(self, family: Metric, labels: tuple[str, ...], child: _C) -> None:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._empty()]

    def collect(self) -> list[Metric]:
        family = self._empty()
        for labels, child in list(self._children.items()):
            self._add(family, labels, child)
        return [family]

    def render(self, out: list[str]) -> None:
        """Append this family's text exposition (byte-identical to prometheus_client's generate_latest of
        `collect()`, several times faster: label strings are rendered once per series and cached)."""
        out.append(self._header)
        prefixes = self._prefixes
        for labels, child in list(self._children.items()):
            prefix = prefixes.get(labels)
            if prefix is None:
                prefix = prefixes[labels] = self._prefix(labels)
            self._render_child(out, prefix, child)

    def _prefix(self, labels: tuple[str, ...]) -> Any:
        return f"{self.name}{_labelstr(self.labelnames, labels)} "

    def _render_child(self, out: list[str], prefix: Any, child: _C) -> None:
        out.append(f"{prefix}{_fmt(child.value)}\n")  # type: ignore[attr-defined]


class CounterFamily(Family[CounterChild]):
    __slots__ = ()
    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")  # the exposition relies on it
        super().__init__(name, documentation, labelnames)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def _empty(self) -> Metric:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, labels: tuple[str, ...], child: CounterChild) -> None:
        family.add_metric(labels, child.value)  # type: ignore[attr-defined]


class GaugeFamily(Family[GaugeChild]):
    """A gauge; `mode` says how worker processes' values combine (`sum` for in-flight counts, `max`/`min`
    for per-process copies of the same fact)."""

    __slots__ = ("mode",)
    kind = "gauge"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), mode: GaugeMode = "sum"
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.mode: GaugeMode = mode

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def _empty(self) -> Metric:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, labels: tuple[str, ...], child: GaugeChild) -> None:
        family.add_metric(labels, child.value)  # type: ignore[attr-defined]


class HistogramFamily(Family[HistogramChild]):
    __slots__ = ("_le", "bounds")
    kind = "histogram"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.bounds = _check_bounds(bounds)
        # Formatted once, exactly as prometheus_client's own Histogram formats `le`.
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        super().__init__(name, documentation, labelnames)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _empty(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _prefix(self, labels: tuple[str, ...]) -> tuple[list[str], str, str]:
        pairs = _pairs(self.labelnames, labels)
        plain = "{" + ",".join(pairs) + "}" if pairs else ""
        # `le` sorts into a fixed place among the label names: render the pairs once, split around it.
        at = sum(1 for n in self.labelnames if n < "le")
        head = "".join(p + "," for p in pairs[:at])
        tail = "".join("," + p for p in pairs[at:])
        buckets = [f'{self.name}_bucket{{{head}le="{le}"{tail}}} ' for le in self._le]
        return buckets, f"{self.name}_count{plain} ", f"{self.name}_sum{plain} "

    def _render_child(
        self, out: list[str], prefix: tuple[list[str], str, str], child: HistogramChild
    ) -> None:
        buckets, count_prefix, sum_prefix = prefix
        cumulative = 0
        for bucket_prefix, n in zip(buckets, list(child.counts), strict=True):
            cumulative += n
            out.append(f"{bucket_prefix}{_fmt(cumulative)}\n")
        out.append(f"{count_prefix}{_fmt(cumulative)}\n{sum_prefix}{_fmt(child.sum)}\n")

    def _add(self, family: Metric, labels: tuple[str, ...], child: HistogramChild) -> None:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for le, n in zip(self._le, list(child.counts), strict=True):
            cumulative += n
            buckets.append((le, cumulative))
        family.add_metric(labels, buckets, child.sum)  # type: ignore[attr-defined]


def _fmt(value: float) -> str:
    """prometheus_client's floatToGoString, without its overhead in the usual range (same output: below 1e6
    it is repr of the float; NaN fails the comparison and takes the slow path)."""
    if -math.inf < value < 1e6:
        return repr(float(value))
    return floatToGoString(value)


def _pairs(names: Sequence[str], values: Sequence[str]) -> list[str]:
    """`name="value"` pairs sorted by name, values escaped exactly as generate_latest does."""
    return [
        '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\""))
        for k, v in sorted(zip(names, values, strict=True))
    ]


def _labelstr(names: Sequence[str], values: Sequence[str]) -> str:
    """`{a="x",b="y"}` (empty without labels)."""
    return "{" + ",".join(_pairs(names, values)) + "}" if names else ""


def render_text(families: Iterable[Family[Any]]) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of these families, in order."""
    out: list[str] = []
    for family in families:
        family.render(out)
    return "".join(out).encode()


def _check_bounds(bounds: Sequence[float]) -> tuple[float, ...]:
    values = [float(b) for b in bounds]
    if values and math.isinf(values[-1]) and values[-1] > 0:
        values.pop()  # +Inf is implicit
    if not values or any(not math.isfinite(b) for b in values):
        raise ValueError(f"histogram buckets must be finite numbers, got {list(bounds)!r}")
    if any(a >= b for a, b in pairwise(values)):
        raise ValueError(f"histogram buckets must be strictly increasing, got {list(bounds)!r}")
    return tuple(values)
