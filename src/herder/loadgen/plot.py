"""Optional PNG of a run's latency distributions (needs matplotlib: `pip install 'herder[plot]'`)."""

from __future__ import annotations

import importlib.util
from typing import Any

from herder.loadgen.runner import RequestRecord

__all__ = ["PlotUnavailable", "available", "plot_latencies"]

INSTALL_HINT = "plotting needs matplotlib: pip install 'herder[plot]' (or pip install matplotlib)"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def available() -> bool:
    """Whether matplotlib can be imported (checked before a long run, not after it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise PlotUnavailable(INSTALL_HINT) from e
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_latencies(records: list[RequestRecord], path: str, title: str = "herder bench") -> None:
    """Write a 2x2 PNG: TTFT, ITL and E2E histograms (ms) and E2E over the run's time."""
    plt = _pyplot()
    ok = [r for r in records if r.ok]
    series = {
        "TTFT (ms)": [r.ttft * 1000 for r in ok if r.ttft is not None],
        "ITL (ms)": [x * 1000 for r in ok for x in r.itls],
        "E2E (ms)": [r.e2e * 1000 for r in ok],
    }
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (label, values) in zip(axes.flat, series.items(), strict=False):
        if values:
            ax.hist(values, bins=min(60, max(10, len(values) // 5)), color="#4477aa")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel("requests" if label != "ITL (ms)" else "gaps")
    ax = axes.flat[3]
    ax.scatter([r.start + r.e2e for r in ok], series["E2E (ms)"], s=4, color="#228833", label="ok")
    failed = [r for r in records if not r.ok]
    if failed:
        ax.scatter(
            [r.start + r.e2e for r in failed],
            [r.e2e * 1000 for r in failed],
            s=6,
            color="#cc3311",
            label="failed",
        )
        ax.legend(loc="upper left")
    ax.set_xlabel("completion time (s since start)")
    ax.set_ylabel("E2E (ms)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
