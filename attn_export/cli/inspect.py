"""``attn-export inspect``: describe an .onnx file or an artefact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, print_json

NAME = "inspect"


def command(
    path: Annotated[Path, typer.Argument(help="An .onnx file or an artefact directory.")] = Path("artifacts"),
    json_out: JsonOpt = False,
) -> None:
    """Inputs and outputs with dynamic axes, opset, operators, parameters, metadata and lineage."""
    from ..inspect import describe, render

    d = describe(path)
    if json_out:
        print_json(d)
    else:
        typer.echo(render(d))
