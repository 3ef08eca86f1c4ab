"""herder.loadgen: `herder bench`, a load generator for OpenAI-compatible endpoints.

`main(argv)` is the CLI entry point; the pieces (client, workloads, runner, report) are importable on their
own for tests and scripts.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run `herder bench` with `argv` (default: sys.argv[1:]); returns the exit code."""
    from herder.loadgen.cli import main as _main

    return _main(argv)
