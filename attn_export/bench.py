"""Latency and throughput of every backend × artefact, measured one way for all of them.

    attn-export bench [DIR] [--backends auto|NAMES] [--batch 1,8,32] [--seq 16,128,512] [--json]
    attn-export bench [DIR] --against torch      # PyTorch eager against every verified pair, 1 x 16 .. 32 x 128

Method, the same for every backend (trtexec's and Polygraphy's, reduced to what matters here):
- every target is opened once; for each (batch, seq) shape each target gets its inputs placed where it
  computes (``Backend.runner``: GPU backends copy and bind once) and is warmed up;
- then the targets are timed **interleaved**, a block of calls each per round, so machine drift (frequency
  scaling, a noisy neighbour) hits all of them alike, the first call of each block uncounted (it refills
  the caches the others evicted: each target is measured warm, as deployed alone; ``runtime.timing``);
  rounds continue until the shape's time budget is spent (at least ``min_iterations``, at most
  ``max_iterations``);
- a call's time is the device's own (CUDA events) where the backend reports it, else the host's wall
  clock around a call that returns only after the device finished (synchronised);
- GPU backends are also timed end to end through ``infer`` (host arrays in and out): the difference is
  the host-device copies, reported separately as trtexec does;
- p50/p90/p99/mean/min per target and shape, throughput in sequences per second (batch / p50, like every
  ratio here: a one-off stall of a few ms moved the mean of one cell by 80 %, found by attacking), the
  thread count, and a least-squares line of latency against sequence length per target (an LSTM is
  linear in length: r² near 1 says the graph did not fall off a cliff anywhere).

- the recommendation: the fastest pair ``verify`` passed, per shape and overall, with its speed-up over
  PyTorch eager and the CPU it was measured on (``runtime.recommend``).

Writes DIR/bench.json and two plots, DIR/bench_latency_vs_seq.png and DIR/bench_throughput_vs_batch.png.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .runtime import store
from .backends import REGISTRY, Backend, get
from .errors import BadInput, MissingPrerequisite, NotAvailable, Untrusted, shell_word
from .runtime.dispatch import verify_by_name
from .runtime.modelinfo import ModelInfo
from .runtime.precisions import one_by_one
from .runtime.recommend import BASELINE, DEFAULT, MARGIN, judged_within, other_cpu, pick, verified_pairs
from .runtime.store import WEIGHTS, Store
from .runtime.limits import check_memory, check_threads, inference_bytes
from .runtime.timing import CLOCKS, cpu_name
from .runtime.targets import Target, discover, parse_backends
from .runtime.verify import none_runs
from .runtime.timing import Budget, percentiles, time_interleaved

__all__ = ["BENCH_JSON", "NOT_VERIFIED_LABEL", "ONE_BY_ONE_LABEL", "PLOTS", "bench", "bench_figures", "row_key",
           "shown_as", "write_plots"]

BENCH_JSON, PLOTS = store.BENCH_JSON, store.PLOTS


MAX_SECONDS = 600.0  # a timing budget per shape


def check_seconds(seconds: Any, where: str = "--seconds") -> float:
    """A timing budget per shape in (0, MAX_SECONDS], or one BadInput line naming ``where`` it was given."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SECONDS:
        shown = f"{seconds:g}" if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else repr(seconds)
        raise BadInput(f"{where} {shown} is outside (0, {MAX_SECONDS:g}]; expected a timing budget per shape, in "
                       "seconds")
    return float(seconds)


def _feeds(batch: int, seq: int, features: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, seq, features)).astype(np.float32),
            "lengths": np.full(batch, seq, dtype=np.int64)}


def _fit(seqs: list[int], ms: list[float]) -> dict[str, float] | None:
    """Least-squares latency = intercept + slope * seq, with r² (None from two lengths: a line through two
    points always fits, so its r² of 1 would say nothing)."""
    if len(set(seqs)) < 2:
        return None
    slope, intercept = np.polyfit(seqs, ms, 1)
    predicted = intercept + slope * np.asarray(seqs)
    total = float(((np.asarray(ms) - np.mean(ms)) ** 2).sum())
    r2 = 1.0 - float(((np.asarray(ms) - predicted) ** 2).sum()) / total if total > 0 else 1.0
    return {"ms_per_step": float(slope), "intercept_ms": float(intercept), "r2": r2 if len(set(seqs)) > 2 else None}


def _machine(threads: int | None) -> dict[str, Any]:
    cpu, isa = cpu_name()
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpu": cpu,
            "isa": isa, "cpu_count": os.cpu_count(), "python": platform.python_version(), "threads": threads}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"attn-export": __version__}
    for package in ("torch", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


MAX_GRID = 16  # batch sizes, and sequence lengths, in one bench: 256 shapes at most


@store.writes_directory("bench")
def bench(
    directory: Path,
    backends: str | list[str] | None = "auto",
    batches: Sequence[int] = (1, 8, 32),
    seqs: Sequence[int] = (16, 128, 512),
    threads: int | None = 1,
    budget: Budget = Budget(),
    plots: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    against: str | None = None,
    made_by: str = "attn-export bench",
) -> dict[str, Any]:
    """Time every runnable target on the grid ``batches`` × ``seqs``; write bench.json and the plots, with
    what to deploy on this CPU, per shape and overall (``runtime.recommend``). ``against="torch"``: only
    PyTorch eager and the pairs verify passed on the bytes here, side by side. ``made_by``: the command
    whose budget this is, recorded in ``method`` (a bundle and the report say which bench made a pick)."""
    check_threads(threads)
    if against not in (None, "torch"):
        raise BadInput(f"--against {against!r} is unknown; expected torch (PyTorch eager, the baseline)")
    if len(batches) > MAX_GRID or len(seqs) > MAX_GRID:
        raise BadInput(f"--batch has {len(batches):,} sizes and --seq {len(seqs):,} lengths; expected at most "
                       f"{MAX_GRID} of each (every pair is timed)")
    check_seconds(budget.seconds)
    if not batches or not seqs or min(batches) < 1 or min(seqs) < 1:
        raise BadInput(f"--batch and --seq need positive integers; got batch {list(batches)}, seq {list(seqs)}")
    s = Store(directory)
    info = s.model()
    spec = info.spec
    named = parse_backends(backends, REGISTRY)
    explicit = named is not None
    # the stream graph takes chunks and a state, not whole sequences: bench --stream times it
    verified, unverified = verified_pairs(s)
    passed = set(verified)  # each timed row says whether its pair was one of these (PyTorch is the model itself)
    if against is not None:  # every verified pair a deployment runs (opt-in ones too), and the baseline
        if s.state(WEIGHTS).state == "missing":  # not "backend torch-cpu was asked for": the user asked no backend
            raise MissingPrerequisite(f"bench --against torch times PyTorch eager on {WEIGHTS}, which {directory} "
                                      "does not hold (a bundle ships no weights); run it where the model was trained")
        if not verified:
            raise MissingPrerequisite(f"bench --against torch times the pairs verify passed: {unverified}")
        # whole-sequence graphs only: a stream graph takes chunks and a state (bench --stream times it); found
        # by attacking: with model.onnx re-exported and only the stream graphs still verified, bench timed
        # PyTorch alone, exit 0, over the bench.json that was there
        timed = {(b, a) for b, a in verified
                 if b != BASELINE and b in REGISTRY and get(b).timed and not s.is_stream(a)}
        if not timed:
            raise MissingPrerequisite("bench --against torch times the whole-sequence graphs verify passed on the "
                                      "bytes here, and there are none (a correctness oracle, PyTorch itself and a "
                                      "stream graph are not timed against it): run "
                                      f"{store.made_by(store.VERIFY_JSON, directory)}")
        if named is not None:  # --backends narrows the pairs to those backends
            narrowed = {(b, a) for b, a in timed if b in named}
            if not narrowed:
                held = [f"{b} {a}: {why}; verify it here: {verify_by_name(s, b)}"
                        for (b, a), why in other_cpu(s).items() if b in named]
                if held:  # its pass is another CPU's: not bad usage, a verify to run here
                    raise Untrusted(f"--backends {','.join(named)}: {'; '.join(held)}")
                raise BadInput(f"--backends {','.join(named)} names no backend of a pair verify passed that bench "
                               f"times; expected one or more of {','.join(sorted({b for b, _ in timed}))}")
            timed = narrowed
        verified = timed | {(b, a) for b, a in verified if b == BASELINE}
        # a pass on another CPU of a pair whose arithmetic is the CPU's is said, not timed
        elsewhere = {p: why for p, why in other_cpu(s).items() if named is None or p[0] in named}
        backends = [b for b in dict.fromkeys([BASELINE, *sorted(b for b, _ in verified | set(elsewhere))])
                    if b in REGISTRY and REGISTRY[b].available() is None and get(b).timed]
        explicit = True
    targets = [_skip_oracle(t, explicit) for t in discover(s, backends, REGISTRY)
               if t.artifact is None or not s.is_stream(t.artifact)]
    if against is not None:  # a pair verify has not passed is said, not left out (found by attacking)
        targets = [t if t.backend == BASELINE or t.skip is not None or (t.backend, t.artifact) in verified
                   else replace(t, skip=f"{elsewhere[t.backend, t.artifact]}; verify it here: "
                                        f"{verify_by_name(s, t.backend)}") if (t.backend, t.artifact) in elsewhere
                   else replace(t, skip="verify has not passed this pair on the bytes here, and --against torch "
                                        f"times only those (run attn-export verify {shell_word(directory)})")
                   for t in targets]
    runnable = [t for t in targets if t.skip is None]
    if not runnable:
        raise NotAvailable(none_runs(targets))
    if not explicit and all(t.artifact is None for t in targets if REGISTRY[t.backend].kind != "torch"):
        # PyTorch alone is no comparison: a bench before export (found by attacking) timed it, exit 0
        raise MissingPrerequisite(f"bench would time PyTorch alone: {directory} holds no ONNX model or engine; "
                                  f"run {store.made_by(store.ONNX_FP32, directory)} first")
    _check_memory(info, max(batches), max(seqs), len(runnable))
    opened: list[tuple[Target, Backend]] = []
    refused: list[str] = []  # why the store would not vouch for a target's artefact
    results: list[dict[str, Any]] = []
    try:
        for i, target in enumerate(targets):
            if target.skip is not None:
                continue
            try:  # the store must vouch for the artefact: one it will not is never timed
                backend = target.open(s, threads, REGISTRY)
            except BadInput as e:
                targets[i] = replace(target, skip=str(e))
                refused.append(str(e))
                continue
            opened.append((target, backend.__enter__()))
        if not opened:  # a stale or changed file is the directory's to fix (exit 2), not this machine's
            raise (Untrusted if refused else NotAvailable)(
                "nothing to time: " + "; ".join(f"{t.label}: {t.skip}" for t in targets))
        if refused and all(t.backend == BASELINE for t, _ in opened):  # PyTorch alone is not a comparison
            raise Untrusted(f"bench would time PyTorch alone: {refused[0]}"
                            + (f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""))
        runnable = [t for t, _ in opened]
        for k, (batch, seq) in enumerate((b, t) for b in batches for t in seqs):
            if progress:
                progress(f"batch {batch} x seq {seq}, {len(opened)} targets", k, len(batches) * len(seqs))
            results += _bench_shape(opened, spec.features, batch, seq, budget)
    finally:
        for _, backend in opened:
            backend.close()
    for r in results:
        if REGISTRY[r["backend"]].kind != "torch":
            r["verified"] = (r["backend"], r["artifact"]) in passed
    reference = _reference_label(runnable)
    machine = _machine(threads)
    out: dict[str, Any] = {
        "schema": 1,
        "method": {"interleaved": True, "block": budget.block, "warmup": budget.warmup,
                   "seconds_per_shape": budget.seconds,
                   "min_iterations": budget.min_iterations, "made_by": made_by,
                   "inputs": "standard normal, unpadded, float32",
                   "timing": CLOCKS["device" if any(r.get("device", "cpu") != "cpu" for r in results) else "host"]},
        "machine": machine,
        "versions": _versions(),
        "batches": list(batches),
        "seqs": list(seqs),
        "targets": [{"backend": t.backend, "artifact": t.artifact, "precision": t.precision, "skip": t.skip}
                    for t in targets],
        # the bytes each artefact had when it was timed: the report shows a timing only for those bytes
        "artifacts": {str(t.artifact): backend.artifact.sha256 for t, backend in opened},
        "results": results,
        "scaling": _scaling(results, batches, seqs),
        "ratios": _ratios(results, reference, batches, seqs),
        "recommended": {"cpu": machine["cpu"], "isa": machine["isa"], "threads": threads,
                        "default": " ".join(DEFAULT), "margin": MARGIN,
                        # each precision's longest sequence verify judged fully, which a pick's shapes may pass
                        "judged_within": judged_within(s),
                        **(pick(results, verified) if verified else {"reason": unverified})},
    }
    drawn = render_plots(out) if plots else {}
    if drawn:
        out["plots"] = {kind: PLOTS[kind] for kind in drawn}
    # bench.json first: an interrupt before the plots leaves the old ones beside it, which report redraws from
    # bench.json; the other way round left new plots above the old tables (found by attacking)
    store.write_json(directory / BENCH_JSON, out)
    for kind, data in drawn.items():
        store.write_bytes(directory / PLOTS[kind], data)
    return out


def _check_memory(info: ModelInfo, batch: int, seq: int, targets: int) -> None:
    """Refuse the grid's largest shape before anything is allocated when it cannot fit: past the memory
    available, the kernel kills the process (no message) or numpy raises a MemoryError."""
    check_memory(inference_bytes(info, batch, seq, targets), f"bench --batch {batch} --seq {seq}",
                 "a smaller --batch or --seq")


def _skip_oracle(target: Target, explicit: bool) -> Target:
    """The reference interpreter is a correctness oracle, 100x slower: timed only when named."""
    if explicit or target.skip is not None or get(target.backend).timed:
        return target
    return Target(target.backend, target.artifact, target.precision,
                  f"{target.backend} is a correctness oracle, not a deployment backend; name it in --backends to time it")


def _reference_label(runnable: list[Target]) -> str:
    for backend in ("torch-cpu", "ort-cpu"):
        for t in runnable:
            if t.backend == backend and t.precision == "fp32":
                return t.label
    return runnable[0].label


def _one_by_one(runs: list[Callable[[], float | None]]) -> Callable[[], float | None]:
    """One timed call that makes each of ``runs`` in turn: the device's milliseconds summed, else None."""
    def run() -> float | None:
        times = [r() for r in runs]
        return None if any(t is None for t in times) else sum(t for t in times if t is not None)

    return run


def _bench_shape(opened: list[tuple[Target, Backend]], features: int, batch: int, seq: int,
                 budget: Budget) -> list[dict[str, Any]]:
    feeds = _feeds(batch, seq, features)
    runs: list[Callable[[], float | None]] = []
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for target, backend in opened:
        base = {"backend": target.backend, "artifact": target.artifact, "precision": target.precision,
                "batch": batch, "seq": seq}
        reason = backend.accepts(batch, seq)
        if reason is not None:
            skipped.append({**base, "skipped": reason})
            continue
        if one_by_one(target.precision):  # as predict runs it: a batch is that many runs of one sequence
            runs.append(_one_by_one([backend.runner({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(batch)]))
            rows.append({**base, "cuda_graph": False, "device": backend.device, "one_by_one": True})
            continue
        variants = [False, True] if backend.supports_cuda_graph else [False]
        for graph in variants:
            try:
                runs.append(backend.runner(feeds, cuda_graph=graph))
            except NotAvailable as e:  # an engine a CUDA graph cannot capture: that row only (review)
                if not graph:
                    raise
                skipped.append({**base, "cuda_graph": True, "skipped": str(e)})
                continue
            rows.append({**base, "cuda_graph": graph, "device": backend.device})
        if backend.device != "cpu":  # end to end, host arrays in and out: the copies are the difference
            runs.append(_end_to_end(backend, feeds))
            rows.append({**base, "cuda_graph": False, "device": backend.device, "end_to_end": True})
    times = time_interleaved(runs, budget) if runs else []
    for row, t in zip(rows, times):
        stats = percentiles(t)
        row.update(latency_ms=stats, iterations=len(t), throughput_seq_per_s=batch / stats["p50"] * 1e3)
    compute = {(r["backend"], r["artifact"]): r for r in rows if not r.get("end_to_end") and not r["cuda_graph"]}
    for row in rows:
        if row.get("end_to_end"):
            base_row = compute[(row["backend"], row["artifact"])]
            base_row["host_device_copies_ms"] = max(0.0, row["latency_ms"]["p50"] - base_row["latency_ms"]["p50"])
    return rows + skipped


def _end_to_end(backend: Backend, feeds: dict[str, np.ndarray]) -> Callable[[], float | None]:
    def run() -> float | None:
        backend.infer(feeds)
        return None

    return run


ONE_BY_ONE_LABEL = " (one by one)"  # a batch of the dynamic INT8 graph is that many runs of one row (predict's way)
NOT_VERIFIED_LABEL = " (not verified)"  # a pair verify had not passed on the bytes timed


def shown_as(results: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Each target's name as the console, the plots and the report show it: a target whose rows ran one
    sequence at a time says so (found by attacking: at batch 32 the row read as batched), and so does a pair
    verify had not passed when it was timed (found by attacking: plain bench timed them beside the verified
    ones, unmarked)."""
    alone = {row_key(r) for r in results if r.get("one_by_one")}  # any row of it (a skipped one says nothing)
    unverified = {row_key(r) for r in results if r.get("verified") is False}
    return {key: key + (ONE_BY_ONE_LABEL if key in alone else "") + (NOT_VERIFIED_LABEL if key in unverified else "")
            for key in (row_key(r) for r in results)}


def row_key(row: dict[str, Any]) -> str:
    suffix = " (CUDA graph)" if row.get("cuda_graph") else " (end to end)" if row.get("end_to_end") else ""
    return f"{row['backend']} {row['artifact']}{suffix}"


def _timed(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if "latency_ms" in r]


def _scaling(results: list[dict[str, Any]], batches: Sequence[int], seqs: Sequence[int]) -> dict[str, Any]:
    """Per target: the latency-vs-seq line at the smallest batch, throughput against batch at the middle seq."""
    b0 = min(batches)
    s_mid = sorted(seqs)[len(seqs) // 2]
    out: dict[str, Any] = {}
    for key in dict.fromkeys(row_key(r) for r in _timed(results)):
        rows = [r for r in _timed(results) if row_key(r) == key]
        by_seq = sorted((r["seq"], r["latency_ms"]["p50"]) for r in rows if r["batch"] == b0)
        by_batch = sorted((r["batch"], r["throughput_seq_per_s"]) for r in rows if r["seq"] == s_mid)
        out[key] = {"batch": b0, "p50_ms_by_seq": dict(by_seq), "seq_fit": _fit([s for s, _ in by_seq],
                                                                                [m for _, m in by_seq]),
                    "seq": s_mid, "throughput_by_batch": dict(by_batch)}
    return out


def _ratios(results: list[dict[str, Any]], reference: str, batches: Sequence[int],
            seqs: Sequence[int]) -> dict[str, Any]:
    """p50 speed-up of every target over the reference target at each shape (reference p50 / target p50)."""
    out: dict[str, Any] = {"reference": reference, "by_shape": {}}
    timed = _timed(results)
    for b in batches:
        for s in seqs:
            ref = next((r for r in timed if row_key(r) == reference and r["batch"] == b and r["seq"] == s), None)
            if ref is None:
                continue
            out["by_shape"][f"b{b} s{s}"] = {row_key(r): ref["latency_ms"]["p50"] / r["latency_ms"]["p50"]
                                              for r in timed if r["batch"] == b and r["seq"] == s}
    return out


def batch_ticks(ax: Any, batches: list[int]) -> None:
    """Label a log batch axis with the batches measured (1, 8, 32), not with powers of ten."""
    from matplotlib.ticker import NullLocator

    ax.set_xticks(sorted(batches), labels=[str(b) for b in sorted(batches)])
    ax.xaxis.set_minor_locator(NullLocator())


def bench_figures(result: dict[str, Any], changed: Collection[str] = ()) -> dict[str, Any]:
    """Latency against sequence length and throughput against batch, one line per target, each titled with
    the CPU and the thread count it was measured with (a figure without its machine says little). A target
    whose file is one of ``changed`` since it was timed says NOT CURRENT in the legend (the report redraws
    them: the image is opened on its own too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = result["scaling"]
    machine = result.get("machine") or {}
    threads = machine.get("threads")
    where = (f"{machine.get('cpu', machine.get('processor', 'this CPU'))}, "
             f"{threads if threads else 'default'} thread{'' if threads == 1 else 's'}")
    figures = {}
    names = shown_as(result.get("results", []))
    names.update({row_key(r): names[row_key(r)] + " (NOT CURRENT)" for r in result.get("results", [])
                  if r.get("artifact") in changed})
    # ten colours, then the same ten dashed, with seven markers cycling against them, so that no two of the first
    # seventy targets share colour and marker: a dozen targets had shared colours on the default cycle, and the
    # legend covered the batch-32 points (found by attacking); the 11th target had the 1st's colour and marker,
    # its dash hidden under the marker in the legend (found by attacking: tract FP16 read as PyTorch)
    colours = plt.get_cmap("tab10").colors
    for kind in PLOTS:
        fig, ax = plt.subplots(figsize=(9.5, 4.5), dpi=110)
        for i, (key, s) in enumerate(scaling.items()):
            # keyed by int in the result bench makes, by str once read back from bench.json (report redraws)
            drawn = s.get("p50_ms_by_seq") or {} if kind == "latency" else s["throughput_by_batch"]
            series = {int(x): v for x, v in drawn.items()}
            if series:
                xs = sorted(series)
                ax.plot(xs, [series[x] for x in xs], marker="osD^v<p"[i % 7], color=colours[i % 10],
                        linestyle=("-", "--", ":")[i // 10 % 3],
                        label=names.get(key, key))
        if kind == "latency":
            ax.set(xlabel="sequence length (steps)", ylabel="p50 latency (ms)")
            ax.set_title(f"latency against sequence length, batch {min(result['batches'])}\n{where}", fontsize=9)
        else:
            ax.set(xlabel="batch", ylabel="throughput (sequences/s)", xscale="log", yscale="log")
            ax.set_title(f"throughput against batch, seq {sorted(result['seqs'])[len(result['seqs']) // 2]}\n{where}",
                         fontsize=9)
            batch_ticks(ax, result["batches"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        figures[kind] = fig
    return figures


def render_plots(result: dict[str, Any], changed: Collection[str] = ()) -> dict[str, bytes]:
    """``bench_figures`` as PNG bytes (Agg), by kind: drawn before anything is written."""
    import io

    import matplotlib.pyplot as plt

    drawn = {}
    for kind, fig in bench_figures(result, changed).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        drawn[kind] = buffer.getvalue()
    return drawn


def write_plots(directory: Path, result: dict[str, Any], changed: Collection[str] = ()) -> dict[str, str]:
    """``bench_figures`` written as PNG (Agg) into DIR, each atomically."""
    drawn = render_plots(result, changed)
    for kind, data in drawn.items():
        store.write_bytes(directory / PLOTS[kind], data)
    return {kind: PLOTS[kind] for kind in drawn}
