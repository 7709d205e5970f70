"""``attn-export report``: render DIR/report.md again from the results DIR holds."""

from __future__ import annotations

from pathlib import Path

from .common import DirArg, console

NAME = "report"


def command(directory: DirArg = Path("artifacts")) -> None:
    """Write DIR/report.md (and attention.png, and bench's plots drawn again from bench.json) from verify.json,
    bench.json and metrics.json, whichever exist."""
    from ..report import headline, write_report

    path = write_report(directory)
    out = console(stderr=True)
    # what the report says first, here too: "wrote" alone left the verdict to opening the file (found by
    # attacking)
    for line in headline(path):
        out.print(line)
    out.print(f"wrote {path}")
