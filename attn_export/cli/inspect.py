"""``attn-export inspect``: describe an .onnx file or an artefact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, path_parser, print_json

NAME = "inspect"


def command(
    path: Annotated[Path, typer.Argument(help="An .onnx file or an artefact directory.", parser=path_parser(
        "an .onnx file or an artefact directory"))] = Path("artifacts"),
    targets: Annotated[list[str] | None, typer.Option(
        "--target", metavar="TARGET", help="Check the ONNX files against the TensorRT of jetpack5, jetpack6, "
                                           "jetpack7, trt10 or trt11 (repeatable); exit 1 on a PROBLEM, a file not ready (a "
                                           "withdrawn dynamic-INT8 file, never a TensorRT input, is not one).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Inputs and outputs with dynamic axes, opset, operators, parameters, metadata and lineage."""
    from ..inspect import describe, not_current, readiness, render
    from ..runtime.trt.readiness import render as render_readiness
    from ..runtime.trt.readiness import state_of

    if targets:
        from ..errors import WorkFailed, printable

        r = readiness(path, targets)
        if json_out:
            print_json(r)
        else:
            typer.echo(render_readiness(r))
        stale = not_current(path) if path.is_dir() else []
        for reason in stale:  # ready or not, a file the store will not vouch for is not what builds
            typer.echo(f"not current: {printable(reason)}", err=True)
        failing = [f"{file} on {name}" for name, t in r.items() for file, row in t["files"].items()
                   if state_of(row) == "NOT READY"]
        if failing or stale:
            raise WorkFailed("; ".join(([f"not ready: {', '.join(failing)} (the PROBLEM lines above say what to do)"]
                                        if failing else []) + stale))
        return
    d = describe(path)
    if json_out:
        print_json(d)
    else:
        typer.echo(render(d))
