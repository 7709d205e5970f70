"""``attn-export doctor``: what this machine can run, and why not."""

from __future__ import annotations

from .common import JsonOpt, print_json

NAME = "doctor"


def command(json_out: JsonOpt = False) -> None:
    """Report every backend (available or why not), package versions, GPUs, ONNX Runtime providers and the
    TensorRT precision path build would take."""
    import typer

    from ..doctor import diagnose, render

    report = diagnose()
    if json_out:
        print_json(report)
        return
    for line in render(report):
        typer.echo(line)
