"""``attn-export run``: every stage this machine can do, driven by one recipe.

train -> export -> quantize -> build (skipped, with the reason, without TensorRT and a GPU) -> verify ->
bench -> report. Exit 1 when verification fails (after everything, the report included, is written).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import SetOpt, console, recipe
from .verify import raise_if_failed

NAME = "run"

BENCH_SECONDS = 1.0  # per shape of the default 3 x 3 grid: ~10 s for a whole directory


def command(
    recipe_file: Annotated[Path | None, typer.Argument(help="Recipe TOML (default: the built-in quickstart, recipes/quickstart.toml).",
                                                       dir_okay=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Artefact directory.", file_okay=False)] = Path("artifacts"),
    overrides: SetOpt = None,
    bench_seconds: Annotated[float, typer.Option("--bench-seconds", min=0.05,
                                                 help="bench's timing budget per shape.")] = BENCH_SECONDS,
) -> None:
    """Run the whole pipeline this machine can do: train, export, quantize, build, verify, bench, report."""
    from ..artifacts import locked

    r = recipe(recipe_file, overrides)
    with locked(out, "run"):
        _run(r, recipe_file, out, bench_seconds, [o for o in overrides or [] if o.strip().startswith("verify.")])


def _run(r: Any, recipe_file: Path | None, out: Path, bench_seconds: float, verify_overrides: list[str]) -> None:
    from ..report import write_report
    from .bench import run_bench
    from .export import run_export
    from .quantize import run_quantize
    from .train import run_training
    from .verify import run_verify

    out_console = console(stderr=True)
    stages: list[tuple[str, float, str]] = []

    def stage(name: str, started: float, summary: str) -> None:
        stages.append((name, time.perf_counter() - started, summary))
        out_console.rule(f"{name}: {summary}")

    out_console.rule(f"attn-export run {recipe_file or '(built-in quickstart)'} -> {out}")
    t = time.perf_counter()
    metrics = run_training(r, out)
    stage("train", t, f"test accuracy {metrics['test']['accuracy']:.4f}")
    t = time.perf_counter()
    result = run_export(out, r.export.opset, r.export.exporter, r.export.parity_max_seq)
    stage("export", t, f"{result.path.name}, parity on {len(result.cases)} cases")
    t = time.perf_counter()
    q = r.quantize
    precisions = [p for p, on in (("fp16", q.fp16), ("int8-dynamic", q.int8_dynamic), ("int8-qdq", q.int8_qdq)) if on]
    reports = run_quantize(out, precisions) if precisions else []
    stage("quantize", t, ", ".join(rep.artifact for rep in reports) or "nothing asked for")
    t = time.perf_counter()
    stage("build", t, _build(out))
    t = time.perf_counter()
    verified = run_verify(out, "auto", threads=1, overrides=verify_overrides)
    counts = {s: sum(1 for x in verified["results"] if x["status"] == s) for s in ("passed", "failed", "skipped")}
    stage("verify", t, f"{'PASSED' if verified['passed'] else 'FAILED'}: "
                       + ", ".join(f"{n} {s}" for s, n in counts.items()))
    t = time.perf_counter()
    benched = run_bench(out, "auto", [1, 8, 32], [16, 128, 512], bench_seconds, threads=1)
    stage("bench", t, f"{len([x for x in benched['results'] if 'latency_ms' in x])} timings")
    t = time.perf_counter()
    stage("report", t, str(write_report(out)))
    _summary(out_console, stages, verified)
    raise_if_failed(verified)


def _build(out: Path) -> str:
    """Build an FP16 engine where TensorRT and a GPU exist; otherwise say which is missing."""
    from ..trt.device import query_gpus
    from ..trt.importer import tensorrt_missing

    reason = tensorrt_missing() or query_gpus().reason
    if reason:
        return f"skipped: {reason}"
    from .build import run_build

    return run_build(out, "fp16")


def _summary(out_console: Any, stages: list[tuple[str, float, str]], verified: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="attn-export run: summary")
    for col in ("stage", "seconds", "result"):
        t.add_column(col, justify="right" if col == "seconds" else "left", overflow="fold")
    for name, seconds, summary in stages:
        t.add_row(name, f"{seconds:.1f}", summary)
    out_console.print(t)
