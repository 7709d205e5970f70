"""``attn-export build``: a TensorRT engine from DIR's ONNX (FP32, FP16 or Q/DQ INT8)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Dict, Optional

import typer

from ..errors import BadInput
from .common import DirArg, JsonOpt, console, print_json

NAME = "build"

SeqOpt = Optional[int]


def command(
    directory: DirArg = Path("artifacts"),
    fp16: Annotated[bool, typer.Option("--fp16", help="Build from model.fp16.onnx (made when missing or stale).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Build from model.int8-qdq.onnx (explicit Q/DQ INT8).")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Build the precision's stream graph (model.stream.onnx, "
                                         "...): the seq options then set its chunk range (default 1..max, opt "
                                         "16); its state follows the batch.")] = False,
    min_seq: Annotated[SeqOpt, typer.Option("--min-seq", min=1, help="Profile: shortest sequence (default 1).")] = None,
    opt_seq: Annotated[SeqOpt, typer.Option("--opt-seq", min=1, help="Profile: the length to tune for "
                                            "(default: the median training length).")] = None,
    max_seq: Annotated[SeqOpt, typer.Option("--max-seq", min=1, help="Profile: longest sequence (default: 4x the "
                                            "longest training sequence, to a power of two).")] = None,
    max_batch: Annotated[SeqOpt, typer.Option("--max-batch", min=1, help="Profile: largest batch (default 32).")] = None,
    workspace: Annotated[Optional[int], typer.Option("--workspace", min=1, help="Builder workspace limit in MiB "
                                                     "(default: the recipe's, 1024).")] = None,
    timing_cache: Annotated[Optional[Path], typer.Option("--timing-cache", dir_okay=False, help="Timing cache "
                                                         "file: read when it exists, written after the build.")] = None,
    hardware_compat: Annotated[bool, typer.Option("--hardware-compat", help="An engine that runs on any Ampere or "
                                                  "newer GPU (slower; TensorRT 8.6+).")] = False,
    version_compat: Annotated[bool, typer.Option("--version-compat", help="An engine later TensorRT versions can "
                                                 "run; it embeds host code, loaded only on opt-in.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build a TensorRT engine from DIR/model.onnx (or its FP16 / Q/DQ INT8 variant) for this GPU, and record
    it in the manifest. Needs an NVIDIA GPU and TensorRT (exit 3 without them; nothing is written)."""
    from ..runtime.precisions import engine_precision
    from ..runtime.trt.build import BuildOptions, build_engine, preflight

    if fp16 and int8:
        raise BadInput("--fp16 and --int8 exclude each other: build one precision at a time")
    options = BuildOptions(
        precision=engine_precision({"--fp16": fp16, "--int8": int8}),
        max_batch=max_batch or 0, min_seq=min_seq or 0, opt_seq=opt_seq or 0, max_seq=max_seq or 0,
        workspace_mib=workspace or 0, timing_cache=timing_cache,
        hardware_compat="ampere-plus" if hardware_compat else None, version_compat=version_compat, stream=stream,
    )
    options.check()  # bad flags: exit 2 on any machine
    preflight(0, directory)  # no such directory: exit 2; no GPU or no TensorRT: exit 3; before anything is read or written
    out = console(stderr=True)
    result = _with_progress(lambda progress: build_engine(directory, options, say=out.print, progress=progress,
                                                          make=_quantize), quiet=json_out)
    if json_out:
        print_json(result.to_dict())
        return
    for note in result.notes:
        out.print(f"  {note}")
    entry = result.entry
    out.print(f"wrote {directory / result.engine} ({entry['precision']}, TensorRT {entry['tensorrt']}, "
              f"{entry['gpu']} compute {entry['compute_capability']}, {entry['build_seconds']:.1f} s)")


def run_build(directory: Path, precision: str = "fp32", quiet: bool = False) -> str:
    """Build one engine with the recipe's profile (what ``attn-export run`` does); a one-line summary."""
    from ..runtime.trt.build import BuildOptions, build_engine

    out = console(stderr=True)
    say = (lambda s: None) if quiet else out.print
    result = _with_progress(lambda progress: build_engine(directory, BuildOptions(precision=precision), say=say,
                                                          progress=progress, make=_quantize), quiet=quiet)
    entry = result.entry
    return (f"{result.engine} (TensorRT {entry['tensorrt']}, {entry['gpu']}, profile seq "
            f"{entry['profile']['x']['min'][1]}..{entry['profile']['x']['max'][1]}, {entry['build_seconds']:.1f} s)")


def _quantize(directory: Path, precision: str) -> None:
    """The host makes a missing or stale precision graph itself (the device cannot)."""
    from ..quantize import quantize

    quantize(directory, [precision])


def _with_progress(run: Any, quiet: bool) -> Any:
    """Run ``run(progress_callback)`` under a rich progress bar fed by TensorRT's progress monitor."""
    if quiet:
        return run(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: Dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(stderr=True), transient=True) as bar:

        def update(phase: str, done: int, total: int, depth: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("  " * depth + phase, total=max(total, 1))
            bar.update(tasks[phase], completed=done, total=max(total, 1))
            if total and done >= total:
                bar.remove_task(tasks.pop(phase))

        return run(update)
