"""``attn-export quantize``: FP16 and INT8 ONNX variants with measured accuracy and latency."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import BadInput
from .common import DirArg, JsonOpt, console, print_json

NAME = "quantize"


class Method(str, Enum):
    dynamic = "dynamic"
    qdq = "qdq"


def command(
    directory: DirArg = Path("artifacts"),
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 compute, FP32 I/O -> model.fp16.onnx.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 -> model.int8.onnx (dynamic) or "
                                                     "model.int8-qdq.onnx (qdq).")] = False,
    method: Annotated[Method | None, typer.Option("--method", help="INT8 method (default dynamic).")] = None,
    calib_samples: Annotated[int | None, typer.Option("--calib-samples", min=1, max=100000, help="Q/DQ calibration "
                                                      "sequences from the training split (default: recipe).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Make precision variants of DIR/model.onnx, check them, and compare them with FP32."""
    if not (fp16 or int8):
        raise BadInput("say what to make: --fp16 and/or --int8 [--method dynamic|qdq]")
    # an option that would change nothing is refused, not ignored (found by attacking: --fp16 --method qdq)
    if method is not None and not int8:
        raise BadInput(f"--method {method.value} applies to --int8; expected --int8 --method {method.value}")
    method = method or Method.dynamic
    if calib_samples is not None and not (int8 and method is Method.qdq):
        raise BadInput("--calib-samples applies to --int8 --method qdq (the only calibrated variant); expected it there")
    precisions = (["fp16"] if fp16 else []) + ([f"int8-{method.value}"] if int8 else [])
    reports = run_quantize(directory, precisions, calib_samples, quiet=json_out)
    if json_out:
        print_json([r.to_dict() for r in reports])


def run_quantize(directory: Path, precisions: list[str], calib_samples: int | None = None,
                 quiet: bool = False) -> list[Any]:
    from ..quantize import quantize

    reports = quantize(directory, precisions, calib_samples)
    if not quiet:
        show(directory, reports)
    return reports


def show(directory: Path, reports: list[Any]) -> None:
    """The variants' table and what each really quantised, on stderr."""
    from rich.table import Table

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    table = Table(title=f"precision variants of {directory / 'model.onnx'} (ONNX Runtime CPU)")
    for col in ("variant", "accuracy", "FP32 acc", "torch acc", "argmax agree", "max |logits|",
                "max |attn|", "ms b1 s128", "FP32 ms", "speed-up"):
        table.add_column(col, justify="right")
    for r in reports:
        table.add_row(r.artifact, fmt(r.accuracy, ".4f"), fmt(r.accuracy_fp32, ".4f"),
                      fmt(r.accuracy_torch, ".4f"), fmt(r.argmax_agreement, ".4f"),
                      fmt(r.logits_max_abs, ".2e"), fmt(r.attention_max_abs, ".2e"),
                      fmt(r.latency_ms, ".3f"), fmt(r.latency_fp32_ms, ".3f"), fmt(r.speedup, ".2f"))
    out = console(stderr=True)
    out.print(table)
    for r in reports:
        out.print(f"{r.artifact}: quantised {r.quantized}; left as is {r.not_quantized}")
        for note in r.notes:
            out.print(f"  {note}")
        if r.stream:
            out.print(f"  {r.stream}: the stream graph's {r.precision} variant, made the same way (attn-export "
                      "verify judges it update by update)")
