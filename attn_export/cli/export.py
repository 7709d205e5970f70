"""``attn-export export``: ONNX with dynamic batch and sequence axes, plus reference.npz."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DirArg, JsonOpt, console, print_json

NAME = "export"


def command(
    directory: DirArg = Path("artifacts"),
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (17: widest TensorRT reach).")] = 17,
    exporter: Annotated[str, typer.Option("--exporter", help="torchscript | dynamo")] = "torchscript",
    json_out: JsonOpt = False,
) -> None:
    """Export DIR's model to DIR/model.onnx, check it, and prove parity with PyTorch on a sweep."""
    result = run_export(directory, opset, exporter, quiet=json_out)
    if json_out:
        print_json({"path": str(result.path), "exporter": result.exporter, "opset": result.opset,
                    "seconds": result.seconds, "size_bytes": result.size_bytes, "operators": result.ops,
                    "cases": [c.to_dict() for c in result.cases]})


def run_export(directory: Path, opset: int, exporter: str, quiet: bool = False) -> Any:
    from ..export import export_onnx

    result = export_onnx(directory, opset=opset, exporter=exporter)
    if not quiet:
        worst = max(c.max_abs for c in result.cases)
        console(stderr=True).print(
            f"exported {result.path} ({result.exporter}, opset {result.opset}, {result.size_bytes:,} bytes, "
            f"{result.seconds:.2f} s); parity with PyTorch on {len(result.cases)} cases, max |diff| {worst:.2e}"
        )
    return result
