"""What to deploy on this CPU: the (backend, artefact) pair a CPU bundle should run, from ``bench``'s
timings of the pairs ``verify`` passed, with its speed-up over PyTorch eager (``torch-cpu``) and the CPU it
was measured on.

    bench.json["recommended"] = {
        "cpu": "AMD EPYC ...", "isa": ["avx2", ...], "threads": 1, "default": "ort-cpu model.onnx", "margin": 1.1,
        "by_shape": {"b1 s128": {"backend": "ort-cpu", "artifact": "model.int8.onnx", "precision": ...,
                                  "p50_ms": 0.37, "torch_p50_ms": 1.09, "ratio": 2.94, "vs_default": 1.9}, ...},
        "overall": {... the same choice on the geometric mean over every shape timed ...},
    }

The candidates are the pairs a CPU bundle's device package runs (``DEVICE_BACKENDS``: no GPU backend).
openvino-bf16, which computes ``model.onnx`` in bf16, is one once a verify that named it passed it; its pick
runs only on a CPU with bf16 arithmetic. A CPU bundle with no pick runs ``DEFAULT`` (ONNX Runtime, FP32),
so a pick is ``DEFAULT`` unless another pair was timed next to it and is at least ``MARGIN`` times faster:
a lossy precision, or another runtime to install, must buy more than run-to-run noise (two identical
``run``s measured the ONNX Runtime pairs within 2-5 % of each other). Overall, the margin must also hold
without the pair's best shape: one noisy cell of ``run``'s short bench (seven calls at 32 x 512) made
``model.fp16.onnx`` 1.108x over nine shapes, 1.00x at the other eight, and one of two identical ``run``s
shipped it (found by attacking). A lossy pair (a file or arithmetic other than FP32) must also gain the
margin over the fastest FP32 pair timed, whether or not that one cleared it, else the fastest FP32 pair that
cleared it is picked (or ``DEFAULT``): OpenVINO's FP16 file, computed in f32, was picked at 1.02x OpenVINO's
FP32 one (found by attacking). Without a verified, timed
``DEFAULT`` there is nothing to weigh a pick against, and nothing is recommended (``reason`` says why).

A pair counts as verified when the artefact's verdict in the manifest is a pass of the bytes the directory
holds now, recorded from this very ``verify.json``, and ``verify.json`` has the pair passed on those bytes;
PyTorch itself is the baseline, never recommended. ``bench`` computes this; ``report`` shows it;
``bundle --for cpu`` ships the overall pick when its bytes are still the ones timed (``current``).
Python 3.8, no numpy.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .backends.onnxrt import ORT_MIN
from .backends.tract_cpu import TRACT_MIN, TRACT_PYTHON
from .precisions import ONNX_FILES, PRECISIONS
from .store import VERIFY_JSON
from .timing import cpu_name

__all__ = ["BASELINE", "DEFAULT", "DEVICE_BACKENDS", "MARGIN", "UNSTEADY", "beyond_judged", "caveat", "cpu_text",
           "current", "judged_within",
           "file_precision", "judged_elsewhere", "kept_default", "measured_by", "not_timed", "other_cpu", "pick",
           "predict_flags", "rule_text", "this_cpu", "verified_pairs"]

BASELINE = "torch-cpu"  # what a user runs instead of this tool: PyTorch eager on the same CPU
# what a CPU bundle's device package can run: the requirement its requirements.txt gains, and the oldest Python
DEVICE_BACKENDS = {"ort-cpu": (f"onnxruntime>={ORT_MIN}", (3, 8)), "openvino-cpu": ("openvino", (3, 8)),
                   "openvino-bf16": ("openvino", (3, 8)), "tract-cpu": (f"tract>={TRACT_MIN}", TRACT_PYTHON)}
DEFAULT = ("ort-cpu", "model.onnx")  # what a CPU bundle runs when nothing is recommended
MARGIN = 1.10  # how much faster than DEFAULT another pair must be to be picked instead
# a shape's pick whose default or chosen pair had a p90 this many times its p50, or a p50 this many times its
# fastest call, was timed unsteadily: said beside it (found by attacking: one cell of run's short bench read
# 16x the time for 4x the length; a loaded machine's default read 3x its fastest call)
UNSTEADY = 2.0


def rule_text(margin: float, default: str) -> str:
    """The rule a pick was made by, as bench's console and the report say it (``pick``)."""
    return (f"the fastest verified pair, when {margin:.2f}x the default ({default}) or faster, and a lossy one "
            f"(FP16, INT8, bf16) also {margin:.2f}x the fastest FP32 pair timed; else the fastest FP32 pair "
            f"{margin:.2f}x the default, else the default")


def _where(s: Any, where: Optional[str]) -> Optional[Any]:
    """The directory a hint's commands name: ``where`` when given (a bundle's README: "DIR", the host's, which
    the device does not know; found by review, it shipped the host's path), else the store's own, none in a
    bundle (the device has no attn-export to run)."""
    return where if where is not None else s.hinted()


def verified_pairs(s: Any, where: Optional[str] = None) -> Tuple[Set[Tuple[str, str]], Optional[str]]:
    """The (backend, artefact) pairs of ``verify.json`` that passed on the bytes store ``s`` holds now, and on
    this CPU where the CPU picks the arithmetic (``judged_elsewhere``), or an empty set and why there are none
    (its commands naming ``_where``)."""
    passed, why = _passed_rows(s, where)
    pairs = {(str(row["backend"]), str(row["artifact"])) for row in passed if judged_elsewhere(row) is None}
    return pairs, why or (None if pairs else f"no pair in {VERIFY_JSON} passed on the bytes here")


def other_cpu(s: Any) -> Dict[Tuple[str, str], str]:
    """The pairs of ``verify.json`` that passed on the bytes here but whose pass does not hold on this CPU
    (``judged_elsewhere``), each with why: what a refusal or a skipped timing says."""
    return {(str(row["backend"]), str(row["artifact"])): why for row in _passed_rows(s)[0]
            if (why := judged_elsewhere(row)) is not None}


def _passed_rows(s: Any, where: Optional[str] = None) -> Tuple[List[Mapping[str, Any]], Optional[str]]:
    """``verify.json``'s rows that passed on the bytes store ``s`` holds now, or none and why."""
    from .schema import VERIFY
    from .store import ONNX_FP32, REFERENCE, made_by

    data = s.read(VERIFY_JSON)
    verify = made_by(VERIFY_JSON, _where(s, where))
    if data is None:
        return [], f"no {VERIFY_JSON}: run {verify} first"
    if not s.recorded_from(VERIFY_JSON):
        # what verify needs first, where that is stale (found by attacking: "run verify", which said "run export")
        first = next((fix for n in (REFERENCE, ONNX_FP32) if (fix := s.remake(n))), None)
        return [], (f"{VERIFY_JSON} is stale (no verdict in the manifest was recorded from it): "
                    + (f"{first}, then {verify}" if first else f"run {verify}"))
    rows = s.parsed(VERIFY_JSON, VERIFY).get("results", [])
    return [row for row in rows if row.get("status") == "passed" and (artifact := row.get("artifact"))
            and row.get("sha256") == s.sha256(artifact) and s.state(artifact).verified is True
            and s.judged(artifact, VERIFY_JSON) is None], None


def judged_elsewhere(row: Mapping[str, Any]) -> Optional[str]:
    """Why a result in ``verify.json`` (its ``row``) does not hold on this CPU: its backend's arithmetic
    is the CPU's (``Backend.per_cpu``: OpenVINO's bf16 runs AMX or AVX512-BF16 kernels, which round
    otherwise) and verify ran it on another CPU (another model name, or other ``timing.ISA_FLAGS``), or
    recorded none (an older attn-export); None where it holds."""
    from .backends import REGISTRY

    cls = REGISTRY.get(str(row.get("backend")))
    if cls is None or not cls.per_cpu:
        return None
    why = f"{row['backend']} computes as the CPU it runs on does"
    if not isinstance(row.get("cpu"), str):
        return f"its verify recorded no CPU (an older attn-export), and {why}"
    there = (row["cpu"], list(row.get("isa") or []))
    if this_cpu(*there):
        return None
    return f"verify judged it on another CPU, {cpu_text(*there)}, not this {cpu_text(*cpu_name())}, and {why}"


def this_cpu(cpu: str, isa: Sequence[str]) -> bool:
    """Whether ``cpu`` and ``isa`` (a result row's) name this CPU: its model and its ``timing.ISA_FLAGS``."""
    here = cpu_name()
    return cpu == here[0] and sorted(isa) == sorted(here[1])


def cpu_text(cpu: str, isa: Sequence[str]) -> str:
    """A CPU as every figure and verdict names it: its model and the ``timing.ISA_FLAGS`` it has."""
    return f"{cpu} ({', '.join(isa)})" if isa else cpu


def _shape(row: Mapping[str, Any]) -> str:
    return f"b{row['batch']} s{row['seq']}"


def pick(rows: Sequence[Mapping[str, Any]], verified: Set[Tuple[str, str]]) -> Dict[str, Any]:
    """The recommendation from bench's result rows (see the module docstring): per shape, the fastest
    verified pair a CPU bundle runs when it is at least ``MARGIN`` times faster than ``DEFAULT`` there (a lossy
    one also ``MARGIN`` times the fastest FP32 pair timed), else ``DEFAULT``; overall, the same choice on the
    geometric-mean p50 over every shape, among the pairs timed at every shape. Each pick has its ratio to
    ``BASELINE`` and to ``DEFAULT`` (``vs_default``); a faster pair passed over for falling short of a margin
    is named in the pick's ``note``; ``unsteady`` marks a shape timed unsteadily (``UNSTEADY``)."""
    timed = [r for r in rows if "latency_ms" in r and not r.get("end_to_end") and not r.get("cuda_graph")]
    shapes = list(dict.fromkeys(_shape(r) for r in timed))
    torch = {_shape(r): float(r["latency_ms"]["p50"]) for r in timed if r["backend"] == BASELINE}
    candidates = [r for r in timed if (r["backend"], r["artifact"]) in verified and r["backend"] in DEVICE_BACKENDS]
    per_pair: Dict[Tuple[str, str], Dict[str, Mapping[str, Any]]] = {}
    for r in candidates:
        per_pair.setdefault((r["backend"], r["artifact"]), {})[_shape(r)] = r
    default = per_pair.get(DEFAULT)
    if not default:
        return {"by_shape": {}, "overall": None, "reason": _no_default(timed, verified)}

    precision = {k: str(next(iter(v.values()))["precision"]) for k, v in per_pair.items()}

    def choose(p50: Dict[Tuple[str, str], float], baseline: Optional[float],
               steady: Optional[Dict[Tuple[str, str], Tuple[float, str]]] = None) -> Dict[str, Any]:
        """The fastest pair of ``p50`` that gains ``MARGIN`` over DEFAULT (``steady``: also without its best
        shape, the gain then and that shape, per pair), a lossy one also over the fastest FP32 pair timed,
        qualifying or not (found by review: FP16 at 1.02x an FP32 pair of the same runtime just under the
        margin); else the fastest FP32 pair that gains it; else DEFAULT."""
        def held(k: Tuple[str, str]) -> float:
            return min(p50[DEFAULT] / p50[k], steady[k][0]) if steady is not None else p50[DEFAULT] / p50[k]

        best = min(p50, key=lambda k: p50[k])
        qualified = [k for k in p50 if k == DEFAULT or held(k) >= MARGIN]
        key = min(qualified, key=lambda k: p50[k])
        lossy, against = None, key
        if precision[key] != "fp32":
            against = min((k for k in p50 if precision[k] == "fp32"), key=lambda k: p50[k])  # DEFAULT is one
            if p50[against] / p50[key] < MARGIN:
                lossy, key = key, min((k for k in qualified if precision[k] == "fp32"), key=lambda k: p50[k])
        chosen = {"backend": key[0], "artifact": key[1], "precision": precision[key], "p50_ms": p50[key],
                  "torch_p50_ms": baseline, "ratio": baseline / p50[key] if baseline else None,
                  "vs_default": p50[DEFAULT] / p50[key]}
        if lossy is not None:
            shown = math.floor(p50[against] / p50[lossy] * 100) / 100
            chosen["note"] = (f"{lossy[0]} {lossy[1]} ({precision[lossy]}) was {shown:.2f}x {against[0]} {against[1]}, "
                              f"under the {MARGIN:.2f}x a lossy pair must gain over the fastest FP32 one")
        elif key != best:
            gain = p50[DEFAULT] / p50[best]
            shown = math.floor(gain * 100) / 100  # never rounded up to the margin it fell short of
            if gain >= MARGIN and steady is not None:  # wording: found by review
                chosen["note"] = (f"{best[0]} {best[1]} was {shown:.2f}x {DEFAULT[0]} {DEFAULT[1]} but "
                                  f"{math.floor(steady[best][0] * 100) / 100:.2f}x without {steady[best][1]}; a change "
                                  f"from the default must gain {MARGIN:.2f}x also without its best shape")
            else:
                chosen["note"] = (f"{best[0]} {best[1]} was {shown:.2f}x {DEFAULT[0]} {DEFAULT[1]}, under the "
                                  f"{MARGIN:.2f}x a change from it must gain")
        return chosen

    by_shape: Dict[str, Any] = {}
    for shape in shapes:
        if shape in default:
            here = {k: float(v[shape]["latency_ms"]["p50"]) for k, v in per_pair.items() if shape in v}
            chosen = by_shape[shape] = choose(here, torch.get(shape))
            # a p90 far above the p50, or a p50 itself far above the fastest call (found by attacking: a loaded
            # machine's default read 6.4 ms at p50, 2.0 at its fastest, and a 2.7x pick was 1.03x there)
            spreads: Dict[Tuple[Tuple[str, str], str], float] = {}
            for k in (DEFAULT, (chosen["backend"], chosen["artifact"])):
                timing = per_pair[k][shape]["latency_ms"]
                spreads[k, "p90"] = float(timing.get("p90", timing["p50"])) / float(timing["p50"])
                spreads[k, "min"] = float(timing["p50"]) / float(timing.get("min") or timing["p50"])
            worst = max(spreads, key=lambda k: spreads[k])
            if spreads[worst] > UNSTEADY:
                chosen["unsteady"] = round(spreads[worst], 1)
                if worst[1] == "min":
                    chosen["unsteady_against"] = "min"
                if worst[0] != (chosen["backend"], chosen["artifact"]):  # whose it was (found by attacking: "its")
                    chosen["unsteady_of"] = f"{worst[0][0]} {worst[0][1]}"
    overall = None
    if len(default) == len(shapes):
        complete = {k: _geomean([float(v[s]["latency_ms"]["p50"]) for s in shapes])
                    for k, v in per_pair.items() if len(v) == len(shapes)}
        baseline = _geomean([torch[s] for s in shapes]) if all(s in torch for s in shapes) else None
        steady = {k: _without_best([float(default[s]["latency_ms"]["p50"]) / float(per_pair[k][s]["latency_ms"]["p50"])
                                    for s in shapes], shapes) for k in complete}
        overall = {**choose(complete, baseline, steady), "shapes": shapes}
        pair = per_pair[overall["backend"], overall["artifact"]]
        # the shapes where PyTorch eager beat the overall pick, which its geometric mean hides (found by attacking)
        slower = [s for s in shapes if s in torch and torch[s] < float(pair[s]["latency_ms"]["p50"])]
        if slower:
            overall["slower_at"] = slower
    return {"by_shape": by_shape, "overall": overall}


def judged_within(s: Any) -> Dict[str, int]:
    """Each precision's longest sequence verify judged it fully on, as ``verify.json`` recorded it: a reduced
    precision's deployment range (its budget), an INT8 one's test split (its decisions); none for FP32."""
    from . import schema

    recorded = s.parsed(VERIFY_JSON, schema.VERIFY)
    if recorded is None:
        return {}
    tolerances = recorded.get("tolerances") or {}
    split = (recorded.get("test_split") or {}).get("max_length")
    longest = {p: split if PRECISIONS[p].judged_by == "decisions" else t.get("deployment_max_seq")
               for p, t in tolerances.items() if p in PRECISIONS and isinstance(t, dict)}
    return {p: int(n) for p, n in longest.items() if n}


def beyond_judged(precision: str, longest: Optional[int], shapes: Sequence[str]) -> str:
    """What a pick's "verified" does not cover ("" when nothing): its shapes ("b1 s128") past what verify
    judged ``precision`` on fully (``judged_within``): the stress rules only past a reduced precision's
    deployment range (found by attacking: an FP16 pick at seq 512, range 128, said only "verified"); structure
    only past the test split that judged an INT8 file's decisions (found by attacking: "verified" at seq 128
    for a split of 29 steps, where verify had said its decisions moved; and bench's console, bench.json and a
    bundle said nothing of it, where only the report did)."""
    if longest is None or precision not in PRECISIONS:
        return ""
    steps = {shape: re.fullmatch(r"b\d+ s(\d+)", str(shape)) for shape in shapes}  # a hand-edited one: skipped
    past = [shape for shape, m in steps.items() if m and int(m.group(1)) > longest]
    if not past:
        return ""
    which = "" if len(shapes) == 1 else f" at {', '.join(past)}"
    if PRECISIONS[precision].judged_by == "decisions":
        return (f"longer than the test split's sequences (seq <= {longest}){which}, on whose decisions verify "
                "judged it: beyond them it checked its structure only, not its decisions")
    return (f"beyond its deployment range (seq <= {longest}){which}, where verify judged it by the stress rules "
            "only")


def overall_ratio(chosen: Mapping[str, Any]) -> str:
    """An overall pick's ratio to PyTorch eager as every place that states it says it: a geometric mean, over
    how many shapes, and where PyTorch eager was faster ("" without a ratio); found by attacking, "2.24x
    PyTorch eager" read as at every shape, where it was 0.68x at one."""
    if chosen.get("ratio") is None:
        return ""
    shapes = chosen.get("shapes") or []
    slower = chosen.get("slower_at") or []
    return (f"{chosen['ratio']:.2f}x PyTorch eager (geometric mean over {len(shapes)} shape(s)"
            + (f"; PyTorch eager faster at {', '.join(slower)}" if slower else "") + ")")


def caveat(chosen: Mapping[str, Any], passed_over: bool = False) -> str:
    """What a reader of a pick must weigh besides its numbers: "" when nothing. ``passed_over``: with a faster
    pair the margin passed over (its ``note``), for a shape's row, whose note is said nowhere else (found by
    attacking; the overall one has a line of its own)."""
    said = []
    if chosen.get("ratio") is not None and chosen["ratio"] < 1:
        said.append(f"{BASELINE} (PyTorch eager) is faster here")
    if chosen.get("slower_at"):  # an overall pick: where its geometric mean hides a loss
        said.append(f"{BASELINE} (PyTorch eager) is faster at {', '.join(chosen['slower_at'])}")
    if chosen.get("unsteady"):
        spread = (f"p50 {chosen['unsteady']:.1f}x its fastest call" if chosen.get("unsteady_against") == "min" else
                  f"p90 {chosen['unsteady']:.1f}x its p50")
        said.append(f"unsteady timing: {chosen['unsteady_of']}'s {spread} (the default this pick is measured against)"
                    if chosen.get("unsteady_of") else f"unsteady timing: a {spread}")
    if passed_over and chosen.get("note"):
        said.append(str(chosen["note"]))
    return "; ".join(said)


def _geomean(values: List[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _without_best(gains: List[float], shapes: List[str]) -> Tuple[float, str]:
    """The geometric-mean gain over every shape but the one where it is largest, and that shape (with one
    shape, the gain there)."""
    top = max(range(len(gains)), key=lambda i: gains[i])
    rest = gains[:top] + gains[top + 1:]
    return (_geomean(rest) if rest else gains[top]), shapes[top]


def _no_default(timed: Sequence[Mapping[str, Any]], verified: Set[Tuple[str, str]]) -> str:
    """Why nothing is recommended when ``DEFAULT`` is not among the verified pairs timed: not timed (bench's
    --backends left it out), or timed without a passing verdict."""
    name = f"{DEFAULT[0]} {DEFAULT[1]}"
    # not passed: whether or not it was timed (found by attacking: bench --against torch times only verified
    # pairs, and its advice was to time it, again and again)
    if DEFAULT not in verified:
        # a pair's row, not the file's verdict: another backend may have passed the file (found by attacking)
        return (f"{name}, what a CPU bundle runs by default, has no passing row in verify.json to weigh a pick "
                f"against: run attn-export verify with {DEFAULT[0]}")
    return (f"bench did not time {name}, what a CPU bundle runs by default, so no pick could be weighed against it "
            f"(time it too: --backends {DEFAULT[0]},...)")


def not_timed(s: Any, bench: Mapping[str, Any], name: str) -> Optional[str]:
    """Why ``name`` here is not the file ``bench`` (``bench.json``) timed: not current, other bytes, or bytes it
    recorded no sha256 for; None when it is that file."""
    return s.measured(name, str((bench.get("artifacts") or {}).get(name)))


def file_precision(pick: Mapping[str, Any]) -> str:
    """The precision of the file ``pick`` runs, which predict's ``--precision`` names: the pick's own, but
    ``fp32`` for openvino-bf16's, which computes ``model.onnx`` in bf16."""
    files = {file: precision for precision, file in ONNX_FILES.items()}
    return files.get(str(pick["artifact"]), str(pick["precision"]))


def predict_flags(pick: Mapping[str, Any]) -> str:
    """predict's flags that run ``pick``."""
    return f"--backend {pick['backend']} --precision {file_precision(pick)}"


def why_picked(pick: Mapping[str, Any]) -> str:
    """Why bench picked ``pick``, as every place that names it says it: the default kept because no other
    pair was ``MARGIN`` times faster (found by attacking: the kept default was said to be "measured
    fastest"), or the pair it picked and its gain over the default (not "measured fastest": a faster lossy
    pair may have been passed over for an FP32 one, ``pick``)."""
    by = str(pick.get("by", "attn-export bench")).replace("`", "")
    beyond = f"; verified, but {pick['beyond_judged']}" if pick.get("beyond_judged") else ""  # ``current``
    if (pick["backend"], pick["artifact"]) == DEFAULT:
        return f"the default, kept by {by} on {pick['cpu']}: {kept_default(pick)}{beyond}"
    gain = f", {float(pick['vs_default']):.2f}x the default" if pick.get("vs_default") else ""
    return f"what {by} picked{_over(pick)} on {pick['cpu']}{gain}{beyond}"


def kept_default(pick: Mapping[str, Any]) -> str:
    """Why an overall ``pick`` of ``DEFAULT`` kept it, over what (found by attacking: "no other verified pair
    was 1.10x faster" beside bench's own INT8 picks at batch 1, 1.3x the default there)."""
    over = _over(pick)
    return (f"no other verified pair was {MARGIN:.2f}x faster{over}"
            + (" and also without its best shape (a shape's own pick may differ)" if over else ""))


def _over(pick: Mapping[str, Any]) -> str:
    shapes = len(pick.get("shapes") or [])
    return f" over the geometric mean of {shapes} shape(s)" if shapes > 1 else ""


def current(s: Any, where: Optional[str] = None) -> Tuple[Optional[Dict[str, Any]], str]:
    """``bench.json``'s overall recommendation when the bytes it timed are still the ones here (with the CPU
    it was measured on), else None and why not (its commands naming ``_where``)."""
    from ..errors import BadInput
    from .schema import BENCH
    from .store import BENCH_JSON, VERIFY_JSON, made_by, parse_json

    data = s.read(BENCH_JSON)
    bench_again = made_by(BENCH_JSON, _where(s, where))
    against = f"{bench_again} --against torch"
    if data is None:
        return None, f"no {BENCH_JSON}: run {against} to choose"
    try:
        bench = parse_json(data, s.directory / BENCH_JSON, BENCH)
    except BadInput as e:  # a pick is optional: a damaged file withholds it, and says how to have one again
        return None, f"{e} (run {against} again, or remove {BENCH_JSON})"
    rec = bench.get("recommended") or {}
    chosen = rec.get("overall")
    if not chosen:
        return None, str(rec.get("reason") or f"{BENCH_JSON} recommends nothing (made by an older attn-export, or no "
                                              f"verified pair was timed at every shape): run {bench_again} again")
    if "vs_default" not in chosen:
        return None, (f"{BENCH_JSON}'s pick was not weighed against {DEFAULT[0]} {DEFAULT[1]} (made by an older "
                      f"attn-export): run {bench_again} again")
    stale = not_timed(s, bench, chosen["artifact"])
    if stale:
        return None, f"{BENCH_JSON}'s pick {chosen['backend']} {chosen['artifact']} is not current: {stale}"
    trust = s.state(chosen["artifact"])
    if trust.verified is not True:
        return None, f"{BENCH_JSON}'s pick {chosen['backend']} {chosen['artifact']} {trust.verdict}"
    pairs, why = verified_pairs(s, where)  # the pair itself, not only its file: a later verify may not have run it
    pair = (chosen["backend"], chosen["artifact"])
    elsewhere = other_cpu(s).get(pair)
    if elsewhere:  # found by review: "no passing row" under the report's line naming the other CPU
        from .dispatch import verify_by_name

        return None, (f"{BENCH_JSON}'s pick {pair[0]} {pair[1]} is not verified on this CPU: {elsewhere}; verify it "
                      f"here: {verify_by_name(s, pair[0])}")
    if pair not in pairs:
        return None, (f"{BENCH_JSON}'s pick {pair[0]} {pair[1]} has no passing row in "
                      f"{VERIFY_JSON} now{f' ({why})' if why else ''}: run "
                      f"{made_by(VERIFY_JSON, _where(s, where))} with that backend")
    beyond = beyond_judged(str(chosen["precision"]), judged_within(s).get(str(chosen["precision"])),
                           chosen.get("shapes") or [])
    return {**chosen, "cpu": rec.get("cpu"), "isa": rec.get("isa"), "threads": rec.get("threads"),
            "by": measured_by(bench.get("method") or {}), **({"beyond_judged": beyond} if beyond else {})}, ""


def measured_by(method: Mapping[str, Any]) -> str:
    """Which bench a ``bench.json`` ``method`` records (``made_by``): ``attn-export bench``'s full budget, or
    ``attn-export run``'s shorter first look (fewer timed calls a shape), which a reader should weigh as
    such."""
    from .timing import Budget

    if method.get("made_by") == "attn-export run":
        return (f"`attn-export run`'s first-look bench (at least {method.get('min_iterations')} timed calls a shape, "
                f"where `attn-export bench` takes {Budget().min_iterations})")
    return "`attn-export bench`"
