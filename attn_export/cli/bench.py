"""``attn-export bench``: latency and throughput of every backend × artefact, interleaved, one method."""

from __future__ import annotations

import re

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import BadInput, does_nothing, shell_word
from ..runtime.timing import ms_text
from .common import DirArg, Grid, JsonOpt, console, given, print_json, progress_bar, seconds_option
from .verify import BackendsOpt, ThreadsOpt

NAME = "bench"


def _ints(value: str, option: str) -> list[int]:
    items = [v.strip() for v in value.split(",")]  # an empty item ("1,,2") is refused, not dropped
    # digits only: Python's int() takes "1_6" as 16 and "٣" as 3 (found by attacking: --seq 1_6 benched 16)
    if not all(re.fullmatch(r"-?[0-9]+", v) for v in items):  # "--2" too (review)
        raise BadInput(f"{option} '{value}' is not a comma-separated list of integers (e.g. 1,8,32)")
    out = [int(v) for v in items]
    if not out or min(out) < 1:
        raise BadInput(f"{option} '{value}' needs positive integers (e.g. 1,8,32)")
    return sorted(set(out))


def command(
    ctx: typer.Context,
    directory: DirArg = Path("artifacts"),
    backends: BackendsOpt = "auto",
    batch: Annotated[Optional[str], typer.Option("--batch", metavar="N,N,...", help="Batch sizes, comma-separated "
                                                 "(default 1,8,32; with --against torch 1,32).")] = None,
    seq: Annotated[Optional[str], typer.Option("--seq", metavar="N,N,...", help="Sequence lengths, comma-separated "
                                               "(default 16,128,512; with --against torch 16,128).")] = None,
    against: Annotated[Optional[str], typer.Option(
        "--against", metavar="torch", help="Side by side: PyTorch eager against every pair verify passed, "
                                           "ratios and the fastest per shape.")] = None,
    seconds: Annotated[float, seconds_option("--seconds", "Timing budget per shape (all targets together, "
                                                          "interleaved), 0.05 to 600.")] = 2.0,
    threads: ThreadsOpt = 1,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Instead: per-update latency of model.stream.onnx against re-running model.onnx on the "
                         "prefix (batch 1, one thread); writes DIR/bench_stream.json and a plot.")] = False,
    segments: Annotated[str, typer.Option("--segments", metavar="N,N,...", help="--stream: segment lengths.")]
    = "128,512,2048",
    chunks: Annotated[str, typer.Option("--chunks", metavar="N,N,...", help="--stream: chunk sizes.")] = "1,16,64",
    json_out: JsonOpt = False,
) -> None:
    """Time every backend and artefact on a batch × seq grid; write DIR/bench.json and PNG plots."""
    # an option the chosen bench does not read is refused, not ignored (found by attacking)
    ignored = (given(ctx, "backends", "batch", "seq", "against", "threads") if stream
               else given(ctx, "segments", "chunks"))
    if ignored:
        raise (does_nothing(ignored, "with --stream (batch 1, one thread, model.stream.onnx against model.onnx)",
                            "--segments, --chunks, --seconds") if stream else
               does_nothing(ignored, "without --stream", f"--stream {' '.join(ignored)}"))
    if stream:
        streamed = run_stream_bench(directory, _ints(segments, "--segments"), _ints(chunks, "--chunks"), seconds,
                                    quiet=json_out)
        if json_out:
            print_json(streamed)
        return
    batches = _ints(("1,32" if against else "1,8,32") if batch is None else batch, "--batch")
    seqs = _ints(("16,128" if against else "16,128,512") if seq is None else seq, "--seq")
    result = run_bench(directory, backends, batches, seqs, seconds, threads or None, quiet=json_out, against=against)
    if json_out:
        print_json(result)


def run_bench(directory: Path, backends: str, batches: list[int], seqs: list[int], seconds: float,
              threads: int | None, quiet: bool = False, against: str | None = None) -> dict[str, Any]:
    from ..bench import Budget, bench

    with progress_bar("bench", quiet) as progress:
        result = bench(directory, backends, batches, seqs, threads, Budget(seconds=seconds), progress=progress,
                       against=against)
    if not quiet:
        show(directory, result, threads)
    return result


def run_stream_bench(directory: Path, segments: list[int], chunks: list[int], seconds: float,
                     quiet: bool = False) -> dict[str, Any]:
    from rich.table import Table

    from ..bench import NOT_VERIFIED_LABEL
    from ..stream_bench import bench_stream

    with progress_bar("bench --stream", quiet) as progress:
        result = bench_stream(directory, segments, chunks, seconds, progress=progress)
    if quiet:
        return result
    machine = result["machine"]
    t = Table(title=f"bench --stream {directory}: ms per update, batch 1, one thread, {result['backend']}, "
                    f"{machine['cpu']} ({', '.join(machine['isa'])})")
    for col in ("segment", "chunk", "updates", "streamed", "re-run (last)", "re-run (mean)", "per update (last)",
                "whole segment", "on paper"):
        t.add_column(col, justify="right")
    for r in result["results"]:
        t.add_row(str(r["segment"]), str(r["chunk"]), str(r["updates"]), ms_text(r['stream_ms_per_update']),
                  ms_text(r['rerun_ms_last']), ms_text(r['rerun_ms_mean']), f"{r['per_update_ratio_last']:.1f}x",
                  f"{r['segment_ratio']:.1f}x", f"{r['on_paper_segment_ratio']:.1f}x")
    out = console(stderr=True)
    out.print(t)
    unverified = [name for name, passed in result["verified"].items() if not passed]
    if unverified:  # as plain bench labels such a row
        many = len(unverified) > 1
        out.print(f"{', '.join(unverified)}{NOT_VERIFIED_LABEL}: timed as {'they are' if many else 'it is'}; "
                  f"attn-export verify {shell_word(directory)} judges {'them' if many else 'it'}")
    for line in result["not_timed"]:
        out.print(f"not timed: {line}")
    drift = result["drift"]
    out.print(f"drift, {drift['steps']} steps one at a time, against model.onnx on the prefix (of the FP32 rule): "
              + ", ".join(f"{v:.2f} at {k}" for k, v in drift["ratio_to_fp32_rule"].items()))
    out.print(f"state: {result['state_bytes_per_row']:,} bytes per row, whatever the segment's length; wrote "
              f"{directory / 'bench_stream.json'} and {result['plot']}")
    return result


def show(directory: Path, result: dict[str, Any], threads: int | None) -> None:
    """The timings table and the latency-vs-seq fits, on stderr."""
    from rich.text import Text

    from ..bench import NOT_VERIFIED_LABEL, row_key, shown_as
    from ..runtime.timing import fit_text

    out = console(stderr=True)
    numbers = ["batch", "seq", "p50", "p90", "p99", "mean", "seq/s", "speed-up"]
    t = Grid(f"bench {directory} (threads {threads or 'default'}; ms, speed-up over {result['ratios']['reference']})",
             ["target", *numbers], right=tuple(numbers))
    skipped: dict[str, tuple[list[str], str]] = {}  # target -> (the shapes it skipped, the first reason)
    names = shown_as(result["results"])
    for r in result["results"]:
        if "latency_ms" not in r:
            graph = " (CUDA graph)" if r.get("cuda_graph") else ""
            skipped.setdefault(f"{r['backend']} {r['artifact']}{graph}", ([], r["skipped"]))[0].append(
                f"b{r['batch']} s{r['seq']}")
            continue
        key = row_key(r)
        ratio = result["ratios"]["by_shape"].get(f"b{r['batch']} s{r['seq']}", {}).get(key)
        lat = r["latency_ms"]
        t.add_row(names.get(key, key), str(r["batch"]), str(r["seq"]),
                  ms_text(lat['p50']), ms_text(lat['p90']),
                  ms_text(lat['p99']), ms_text(lat['mean']), f"{r['throughput_seq_per_s']:,.0f}",
                  "-" if ratio is None else f"{ratio:.2f}x")
    out.print(t)
    for key, (shapes, reason) in skipped.items():
        out.print(Text.assemble(("skipped ", "yellow"), f"{key} at {', '.join(shapes)}: {reason}"))
    # (backend, reason) -> its artefacts not timed for that reason: one line each, as verify prints them (found by
    # attacking: the dynamic INT8 graph's fix, --int8, was printed for the Q/DQ graph too)
    not_timed: dict[tuple[str, str], list[str]] = {}
    for target in result["targets"]:
        if target["skip"]:
            named = not_timed.setdefault((target["backend"], target["skip"]), [])
            if target["artifact"]:  # a backend with nothing to time names no file (was a bare "-")
                named.append(target["artifact"])
    for (backend, reason), artifacts in not_timed.items():
        out.print(Text.assemble(("not timed ", "yellow"), " ".join([backend, ", ".join(artifacts)]).strip()
                                + f": {reason}"))
    if any(r.get("verified") is False for r in result["results"]):
        from ..runtime.precisions import PRECISIONS
        from ..runtime.store import Store

        # a model without classes: verify never judges its INT8 files (found by attacking: sent to verify them)
        never = not Store(directory).info.labels and any(
            r.get("verified") is False and r.get("precision") in PRECISIONS
            and PRECISIONS[r["precision"]].judged_by == "decisions" for r in result["results"])
        out.print(Text.assemble(("not verified ", "yellow"), f"rows marked{NOT_VERIFIED_LABEL}: pairs verify had not "
                                f"passed on these bytes (an opt-in backend's, on this CPU), timed but never "
                                f"recommended (attn-export verify {shell_word(directory)}, an opt-in backend by name: "
                                "--backends NAME)" + ("; the INT8 files of a model without classes never will be: "
                                                      "verify judges INT8 by its decisions" if never else "")))
    for key, s in result["scaling"].items():
        fit = s["seq_fit"]
        if fit:
            out.print(f"{key}: {fit_text(fit)} at batch {s['batch']}")
    show_recommended(result["recommended"])
    out.print(f"wrote {directory / 'bench.json'} and {', '.join(result.get('plots', {}).values())}")


def show_recommended(rec: dict[str, Any]) -> None:
    """What to deploy on this CPU, per shape and overall, against PyTorch eager, with the CPU, on stderr."""
    from ..runtime.recommend import beyond_judged, caveat, rule_text

    out = console(stderr=True)
    where = f"{rec['cpu']} ({', '.join(rec.get('isa') or [])}), threads {rec.get('threads') or 'default'}"
    if not rec.get("by_shape"):
        out.print(f"recommended on {where}: nothing ({rec.get('reason') or 'no verified pair was timed'})")
        return
    numbers = ["p50 ms", "torch eager ms", "speed-up", "vs default"]
    t = Grid(f"recommended on {where}: {rule_text(rec['margin'], rec['default'])}",
             ["shape", "backend", "artefact", *numbers, "note"], right=tuple(numbers))

    ranges = rec.get("judged_within") or {}

    def row(shape: str, r: dict[str, Any], passed_over: bool, shapes: list[str]) -> None:
        # what its "verified" does not cover, as the report says it (found by attacking: said there alone)
        said = "; ".join(x for x in (caveat(r, passed_over), beyond_judged(str(r["precision"]),
                                                                             ranges.get(str(r["precision"])), shapes)) if x)
        t.add_row(shape, r["backend"], r["artifact"], ms_text(r['p50_ms']),
                  ms_text(r["torch_p50_ms"]),
                  "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", f"{r['vs_default']:.2f}x", said)

    for shape, r in rec["by_shape"].items():
        row(shape.replace("b", "").replace(" s", " x "), r, True, [shape])
    if rec.get("overall"):
        row("overall (geomean)", rec["overall"], False, rec["overall"].get("shapes") or [])
    out.print(t)
    if (rec.get("overall") or {}).get("note"):
        out.print(f"overall: {rec['overall']['note']}")
