"""What to deploy on this CPU: the fastest (backend, artefact) pair that ``verify`` passed, from ``bench``'s
timings, with its speed-up over PyTorch eager (``torch-cpu``) and the CPU it was measured on.

    bench.json["recommended"] = {
        "cpu": "AMD EPYC ...", "isa": ["avx2", ...], "threads": 1,
        "by_shape": {"b1 s128": {"backend": "ort-cpu", "artifact": "model.int8.onnx", "precision": ...,
                                  "p50_ms": 0.37, "torch_p50_ms": 1.09, "ratio": 2.94}, ...},
        "overall": {... the pair with the best geometric-mean speed over every shape timed ...},
    }

A pair counts as verified when the artefact's verdict in the manifest is a pass of the bytes the directory
holds now, recorded from this very ``verify.json``, and ``verify.json`` has the pair passed on those bytes;
PyTorch itself is the baseline, never recommended. ``bench``
computes this; ``report`` shows it; ``bundle --for cpu`` ships the overall pick when its bytes are still
the ones timed (``current``). Python 3.8, no numpy.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

__all__ = ["BASELINE", "DEVICE_BACKENDS", "current", "pick", "verified_pairs"]

BASELINE = "torch-cpu"  # what a user runs instead of this tool: PyTorch eager on the same CPU
# what a CPU bundle's device package can run (its requirements.txt gains the backend's package)
DEVICE_BACKENDS = {"ort-cpu": "onnxruntime", "openvino-cpu": "openvino", "tract-cpu": "tract"}


def verified_pairs(s: Any) -> Tuple[Set[Tuple[str, str]], Optional[str]]:
    """The (backend, artefact) pairs of ``verify.json`` that passed on the bytes store ``s`` holds now, or
    an empty set and why there are none."""
    from .schema import VERIFY
    from .store import VERIFY_JSON, parse_json

    data = s.read(VERIFY_JSON)
    if data is None:
        return set(), f"no {VERIFY_JSON}: run attn-export verify first"
    if not s.recorded_from(VERIFY_JSON):
        return set(), f"{VERIFY_JSON} is stale (no verdict in the manifest was recorded from it): run attn-export verify"
    pairs = set()
    for row in parse_json(data, s.directory / VERIFY_JSON, VERIFY).get("results", []):
        artifact = row.get("artifact")
        if row.get("status") == "passed" and artifact and row.get("sha256") == s.sha256(artifact) \
                and s.state(artifact).verified is True and s.judged(artifact, VERIFY_JSON) is None:
            pairs.add((str(row["backend"]), str(artifact)))
    return pairs, None if pairs else f"no pair in {VERIFY_JSON} passed on the bytes here"


def _shape(row: Mapping[str, Any]) -> str:
    return f"b{row['batch']} s{row['seq']}"


def pick(rows: Sequence[Mapping[str, Any]], verified: Set[Tuple[str, str]]) -> Dict[str, Any]:
    """The recommendation from bench's result rows (see the module docstring): per shape, the verified
    pair with the lowest p50 and its ratio to ``BASELINE`` there; overall, the verified pair timed at every
    shape with the lowest geometric-mean p50."""
    timed = [r for r in rows if "latency_ms" in r and not r.get("end_to_end") and not r.get("cuda_graph")]
    shapes = list(dict.fromkeys(_shape(r) for r in timed))
    torch = {_shape(r): float(r["latency_ms"]["p50"]) for r in timed if r["backend"] == BASELINE}
    candidates = [r for r in timed if (r["backend"], r["artifact"]) in verified and r["backend"] != BASELINE]

    def entry(r: Mapping[str, Any], p50: float, baseline: Optional[float]) -> Dict[str, Any]:
        return {"backend": r["backend"], "artifact": r["artifact"], "precision": r["precision"], "p50_ms": p50,
                "torch_p50_ms": baseline, "ratio": baseline / p50 if baseline else None}

    by_shape: Dict[str, Any] = {}
    for shape in shapes:
        here = [r for r in candidates if _shape(r) == shape]
        if here:
            best = min(here, key=lambda r: float(r["latency_ms"]["p50"]))
            by_shape[shape] = entry(best, float(best["latency_ms"]["p50"]), torch.get(shape))
    per_pair: Dict[Tuple[str, str], List[Mapping[str, Any]]] = {}
    for r in candidates:
        per_pair.setdefault((r["backend"], r["artifact"]), []).append(r)
    complete = {k: v for k, v in per_pair.items() if len({_shape(r) for r in v}) == len(shapes)}
    overall = None
    if complete:
        def geomean(values: List[float]) -> float:
            return math.exp(sum(math.log(v) for v in values) / len(values))

        key = min(complete, key=lambda k: geomean([float(r["latency_ms"]["p50"]) for r in complete[k]]))
        chosen = complete[key]
        p50 = geomean([float(r["latency_ms"]["p50"]) for r in chosen])
        baseline = geomean([torch[s] for s in shapes]) if all(s in torch for s in shapes) else None
        overall = {**entry(chosen[0], p50, baseline), "shapes": shapes}
    return {"by_shape": by_shape, "overall": overall}


def current(s: Any) -> Tuple[Optional[Dict[str, Any]], str]:
    """``bench.json``'s overall recommendation when the bytes it timed are still the ones here (with the CPU
    it was measured on), else None and why not."""
    from .schema import BENCH
    from .store import BENCH_JSON, parse_json

    data = s.read(BENCH_JSON)
    if data is None:
        return None, f"no {BENCH_JSON}: run attn-export bench --against torch to choose"
    bench = parse_json(data, s.directory / BENCH_JSON, BENCH)
    rec = bench.get("recommended") or {}
    chosen = rec.get("overall")
    if not chosen:
        return None, str(rec.get("reason") or f"{BENCH_JSON} recommends nothing (made by an older attn-export, or no "
                                              "verified pair was timed at every shape): run attn-export bench again")
    stale = s.measured(chosen["artifact"], str((bench.get("artifacts") or {}).get(chosen["artifact"])))
    if stale:
        return None, f"{BENCH_JSON}'s pick {chosen['backend']} {chosen['artifact']} is not current: {stale}"
    trust = s.state(chosen["artifact"])
    if trust.verified is not True:
        return None, f"{BENCH_JSON}'s pick {chosen['backend']} {chosen['artifact']} {trust.verdict}"
    return {**chosen, "cpu": rec.get("cpu"), "isa": rec.get("isa"), "threads": rec.get("threads")}, ""
