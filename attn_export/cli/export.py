"""``attn-export export``: ONNX with dynamic batch and sequence axes, plus reference.npz."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..runtime.trt.readiness import EXPORT_OPSETS
from .common import DirArg, JsonOpt, console, print_json, progress_bar
from .verify import ThreadsOpt

NAME = "export"


class Exporter(str, Enum):
    torchscript = "torchscript"
    dynamo = "dynamo"


def command(
    directory: DirArg = Path("artifacts"),
    opset: Annotated[int | None, typer.Option(
        "--opset", min=EXPORT_OPSETS[0], max=EXPORT_OPSETS[1],
        help="ONNX opset (default: the recipe's export.opset, 17: widest TensorRT reach).")] = None,
    exporter: Annotated[Exporter | None, typer.Option(
        "--exporter", help="PyTorch exporter (default: the recipe's export.exporter).")] = None,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Also DIR/model.stream.onnx: the chunk-by-chunk form of a causal model, proven equal to "
                         "the whole-sequence model on every prefix (without it, a stream graph DIR holds from "
                         "earlier weights is remade).")] = False,
    threads: ThreadsOpt = 1,
    json_out: JsonOpt = False,
) -> None:
    """Export DIR's model to DIR/model.onnx, check it, and prove parity with PyTorch on a sweep."""
    if stream:  # refused before model.onnx is written
        from ..stream import refuse_unstreamable

        refuse_unstreamable(directory)
    result = run_export(directory, opset, exporter.value if exporter else None, None, quiet=json_out,
                        threads=threads or None)
    streamed = None
    if stream:
        streamed = run_stream_export(directory, opset, quiet=json_out, threads=threads or None)
    elif not _drop_unstreamable(directory) and _stream_left_stale(directory):
        # best effort: a failure is a note, not this export's error (review)
        from ..errors import AttnExportError
        from ..runtime.store import STREAM_ONNX, made_by

        try:
            streamed = run_stream_export(directory, opset, quiet=json_out, threads=threads or None)
        except AttnExportError as e:
            console(stderr=True).print(f"note: {STREAM_ONNX} not remade: {e}; run {made_by(STREAM_ONNX, directory)}")
    if json_out:
        print_json({"path": str(result.path), "exporter": result.exporter, "opset": result.opset,
                    "seconds": result.seconds, "size_bytes": result.size_bytes, "operators": result.ops,
                    "cases": [c.to_dict() for c in result.cases],
                    "stream": None if streamed is None else {
                        "path": str(streamed.path), "updates": streamed.updates, "worst_ratio": streamed.worst_ratio}})


def _drop_unstreamable(directory: Path) -> bool:
    """For a model that cannot stream: remove the stream graphs an earlier model left (stale, or recorded and
    gone), as ``run`` does, saying so; whether any were. Found by attacking: export had only noted "remove the
    stream graphs", and a user who did so by hand was then sent to ``export --stream``, which refuses."""
    from ..errors import AttnExportError
    from ..pipeline import remove_leftovers
    from ..runtime.store import STREAM_FILES, Store
    from ..runtime.streaming import not_streamable

    try:
        cannot = not_streamable(Store(directory).info.recipe.get("model", {}))
    except AttnExportError:
        return False
    removed = remove_leftovers(directory, list(STREAM_FILES.values())) if cannot else []
    if removed:  # on stderr under --json too (review: it was silent there)
        console(stderr=True).print(f"removed {', '.join(removed)}: made from an earlier model, and this one cannot "
                                   f"stream ({cannot})")
    return bool(removed)


def _stream_left_stale(directory: Path) -> bool:
    """Whether DIR holds a stream graph made from earlier weights (recorded, its parent changed since) that the
    model can remake (export remakes it: found by attacking, after a retrain a plain export left
    model.stream.onnx stale, and predict --stream named it only after an export and a verify). A stream graph
    changed, unrecorded or unreadable is left as it is (the store refuses it in its own words)."""
    from ..errors import AttnExportError
    from ..runtime.store import STREAM_ONNX, Store
    from ..runtime.streaming import not_streamable

    s = Store(directory)
    try:
        state = s.state(STREAM_ONNX)
        entry = s.entry(STREAM_ONNX) or {}
        parent = entry.get("parent")
        earlier = isinstance(parent, str) and s.entry(parent) is not None and (
            s.sha256(parent) != entry.get("parent_sha256"))
    except AttnExportError:
        return False
    # stale for another reason (no parent recorded): not export's to remake
    return state.state == "stale" and earlier and not_streamable(s.info.recipe.get("model", {})) is None


def run_stream_export(directory: Path, opset: int | None, quiet: bool = False, threads: int | None = 1) -> Any:
    from ..stream import export_stream

    result = export_stream(directory, opset=opset, threads=threads)
    if not quiet:
        console(stderr=True).print(
            f"exported {result.path} (opset {result.opset}, {result.seconds:.2f} s); equal to PyTorch on every "
            f"prefix: {result.updates} updates, worst {result.worst_ratio:.2f} of the FP32 rule")
    return result


def run_export(directory: Path, opset: int | None, exporter: str | None, parity_max_seq: int | None,
               quiet: bool = False, threads: int | None = 1) -> Any:
    from ..export import export_onnx

    with progress_bar("export", quiet) as progress:
        result = export_onnx(directory, opset=opset, exporter=exporter, parity_max_seq=parity_max_seq,
                             threads=threads, progress=progress)
    if not quiet:
        worst = max(c.max_abs for c in result.cases)
        console(stderr=True).print(
            f"exported {result.path} ({result.exporter}, opset {result.opset}, {result.size_bytes:,} bytes, "
            f"{result.seconds:.2f} s); parity with PyTorch on {len(result.cases)} cases, max |diff| {worst:.2e}"
        )
    return result
