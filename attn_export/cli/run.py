"""``attn-export run``: every stage this machine can do, driven by one recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import SetOpt, console, recipe

NAME = "run"

def command(
    recipe_file: Annotated[Path | None, typer.Argument(help="Recipe TOML (default: the built-in quickstart, recipes/quickstart.toml).",
                                                       dir_okay=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Artefact directory.", file_okay=False)] = Path("artifacts"),
    overrides: SetOpt = None,
) -> None:
    """Run the whole pipeline this machine can do: train, export (parity-checked), quantize."""
    from .export import run_export
    from .quantize import run_quantize
    from .train import run_training

    r = recipe(recipe_file, overrides)
    out_console = console(stderr=True)
    out_console.rule(f"attn-export run {recipe_file or '(built-in quickstart)'} -> {out}")
    metrics = run_training(r, out)
    run_export(out, r.export.opset, r.export.exporter, r.export.parity_max_seq)
    q = r.quantize
    precisions = [p for p, on in (("fp16", q.fp16), ("int8-dynamic", q.int8_dynamic), ("int8-qdq", q.int8_qdq)) if on]
    reports = run_quantize(out, precisions) if precisions else []
    out_console.rule("summary")
    out_console.print(
        f"train: test accuracy {metrics['test']['accuracy']:.4f} in {metrics['wall_seconds']:.1f} s; "
        f"export: {out / 'model.onnx'} passed its parity sweep"
    )
    for report in reports:
        accuracy = "-" if report.accuracy is None else f"{report.accuracy:.4f}"
        out_console.print(f"{report.artifact}: test accuracy {accuracy}, {report.speedup or 0:.2f}x FP32 speed")
