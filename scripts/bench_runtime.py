"""The runtime's cost over bare ONNX Runtime, and what batching ragged sequences buys. Measured, not asserted.

    .venv/bin/python scripts/bench_runtime.py artifacts [--seq 128] [--runs 3000] [--ragged 256] [--threads 1]

1. Overhead: ``Predictor.predict([one sequence of --seq steps])`` against a bare
   ``onnxruntime.InferenceSession.run`` on the same graph (the predictor's own session), side by side:
   each iteration runs the three calls below, in reversed order every other iteration; medians compared.
   - ``bare``: ``session.run(names, feeds)`` with the feeds built once, outside the timing;
   - ``bare+feeds``: the same, building ``{"x": seq[None], "lengths": np.array([n])}`` per call, the least a
     caller of a bare session does for each new sequence;
   - ``predict``: ``Predictor.predict([seq])`` (validation, feeds, softmax, a Prediction).
   With ``--threads 1`` the clock is the calling thread's CPU time (ONNX Runtime then computes on that
   thread), which other processes on a shared machine cannot inflate; otherwise wall-clock time.
2. Batching: ``--ragged`` sequences of random lengths (1 to 2 x --seq) predicted one call each against one
   ``predict`` call on the whole list (sorted by length, padded batches); best of --repeats, wall clock.

Runs on ort-cpu with the artefact directory's fp32 model (never-verified artefacts allowed: this measures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--ragged", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0: ORT default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import onnxruntime

    from attn_export.runtime import Predictor

    predictor = Predictor.load(args.directory, backend="ort-cpu", allow_unverified=True,
                               threads=args.threads or None)
    # The bare calls use the predictor's own InferenceSession: same graph, options and threads, and the
    # same weights in the CPU caches (a second session's weights, evicted by the other's run, cost the
    # call after a switch about 10 % on the JapaneseVowels model: that is cache, not runtime overhead).
    session = predictor._backend.session
    assert isinstance(session, onnxruntime.InferenceSession)
    outputs = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(0)
    features = predictor.spec.features
    seq = rng.standard_normal((args.seq, features)).astype(np.float32)
    feeds = {"x": seq[None], "lengths": np.array([args.seq], dtype=np.int64)}

    calls = {
        "bare": lambda: session.run(outputs, feeds),
        "bare+feeds": lambda: session.run(outputs, {"x": seq[None], "lengths": np.array([seq.shape[0]])}),
        "predict": lambda: predictor.predict([seq]),
    }
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    names = list(calls)
    for _ in range(200):  # warm-up
        for f in calls.values():
            f()
    times: dict = {k: [] for k in names}
    for i in range(args.runs):
        for k in (names if i % 2 == 0 else names[::-1]):
            t0 = clock()
            calls[k]()
            times[k].append(clock() - t0)
    p50 = {k: statistics.median(v) * 1e3 for k, v in times.items()}

    lengths = rng.integers(1, 2 * args.seq + 1, size=args.ragged)
    ragged = [rng.standard_normal((int(n), features)).astype(np.float32) for n in lengths]
    one_by_one, batched = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        singles = [predictor.predict([s])[0] for s in ragged]
        t1 = time.perf_counter()
        together = predictor.predict(ragged)
        t2 = time.perf_counter()
        one_by_one.append(t1 - t0)
        batched.append(t2 - t1)
    agree = all(a.index == b.index for a, b in zip(singles, together))
    worst = max(float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(singles, together))

    result = {
        "device": "cpu", "backend": predictor.backend_name, "artifact": str(predictor.artifact),
        "threads": args.threads or "ort default",
        "overhead": {"seq": args.seq, "runs": args.runs,
                     "clock": "thread CPU time" if args.threads == 1 else "wall clock",
                     "p50_ms": {k: round(v, 4) for k, v in p50.items()},
                     "ratio_vs_bare": round(p50["predict"] / p50["bare"], 4),
                     "ratio_vs_bare_with_feeds": round(p50["predict"] / p50["bare+feeds"], 4)},
        "batching": {"sequences": args.ragged, "lengths": [int(lengths.min()), int(lengths.max())],
                     "batch_size": predictor.batch_size, "one_by_one_s_best": round(min(one_by_one), 4),
                     "batched_s_best": round(min(batched), 4),
                     "speedup": round(min(one_by_one) / min(batched), 2),
                     "same_labels": agree, "max_probability_diff": worst},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    o, b = result["overhead"], result["batching"]
    print(f"{predictor.artifact} on {predictor.backend_name}, threads {result['threads']}")
    print(f"overhead, one sequence of {o['seq']} steps (median of {o['runs']} side-by-side calls, {o['clock']}): "
          + ", ".join(f"{k} {v:.4f} ms" for k, v in o["p50_ms"].items())
          + f"; predict / bare {o['ratio_vs_bare']:.3f}, predict / bare+feeds {o['ratio_vs_bare_with_feeds']:.3f}")
    print(f"batching {b['sequences']} ragged sequences (lengths {b['lengths'][0]}-{b['lengths'][1]}, batch "
          f"{b['batch_size']}, best of {args.repeats}): one by one {b['one_by_one_s_best']:.3f} s, one call "
          f"{b['batched_s_best']:.3f} s, speed-up {b['speedup']:.1f}x (same labels: {b['same_labels']}, "
          f"max |prob diff| {b['max_probability_diff']:.1e})")


if __name__ == "__main__":
    main()
