"""Parity and latency of every backend × artefact against the PyTorch FP32 reference, in one run.

    attn-export verify [DIR] [--backends auto|NAMES] [--set verify.key=value] [--json] [--report]

The reference is the PyTorch model in FP32 on the CPU. Its outputs on the export sweep were recorded in
``reference.npz`` (checked to descend from the current ``model.safetensors``), so a device without torch
verifies against the same numbers; with torch installed the sweep grows by cases only torch can answer:
several thousand steps, the training length range and each engine's profile corners. Every runnable
target (``targets.discover``) runs the same inputs and is judged by its precision's rule
(``compare.rule_for``), with the recipe's ``[verify]`` table and any ``--set verify.key=value``:

- ``fp32`` and ``fp16``: every output row within its budget, ``atol + rtol * |ref| + budget_multiple *
  intrinsic`` where ``intrinsic`` is the row's own error of the same model at that precision
  (``attn_export.intrinsic``), so the budget follows sequence length and logit scale on any weights;
- ``fp16`` also: on average over the deployment range the error stays within ``mean_budget_multiple``
  times the intrinsic error (a damaged weight shifts every output a little: it shows here first), argmax
  agreement >= ``fp16_min_argmax_agreement`` on the test split, and rows longer than the deployment range
  (training lengths and the ``[build]`` profile) judged by the stress rules: finite, zero attention on
  padding, argmax kept wherever the reference's margin exceeds twice the budget;
- ``int8-*``: not by element error (quantisation moves logits by design) but by argmax agreement with the
  reference on the test split and the accuracy drop; on the sweep only that outputs have the right
  shapes, are finite, and that padded steps get exactly zero attention.

Everything that fails is collected and reported together; the result is ``DIR/verify.json`` (DESIGN's
shape; each case records the budget it was judged by), each artefact's manifest entry gets a
``verified`` verdict, and the caller raises ParityError (exit 1) after all of that is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts
from .backends import Backend, get
from .bench import Budget, percentiles, time_interleaved
from .compare import CaseResult, Reference, Rule, SweepCase, compare_case, rule_for, unmeasured
from .config import VerifyConfig, override_section, recipe_from_dict
from .errors import AttnExportError, MissingPrerequisite, NotAvailable
from .iospec import IOSpec
from .reference import ReferenceSet, read_reference
from .targets import Target, discover, load_spec

__all__ = ["VERIFY_JSON", "deployment_max_seq", "failures", "verify"]

VERIFY_JSON = "verify.json"
ATTENTION_SAMPLES = 4  # test sequences whose attention every backend reports, for the heatmaps
TEST_BATCH = 32
LATENCY_BUDGET = Budget(warmup=5, seconds=0.5, min_iterations=20, max_iterations=500)
PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-qdq")
# the [verify] keys that move each precision's verdict, named in a failure's message
KNOBS = {"fp32": ("fp32_atol", "fp32_rtol", "budget_multiple"),
         "fp16": ("fp16_atol", "fp16_rtol", "budget_multiple", "mean_budget_multiple", "deployment_max_seq"),
         "bf16": ("bf16_atol", "bf16_rtol", "budget_multiple", "mean_budget_multiple", "deployment_max_seq"),
         "int8-dynamic": ("int8_min_argmax_agreement", "int8_max_accuracy_drop"),
         "int8-qdq": ("int8_min_argmax_agreement", "int8_max_accuracy_drop")}


def deployment_max_seq(info: dict[str, Any] | None, cfg: VerifyConfig) -> int | None:
    """The longest sequence inside the deployment range: ``verify.deployment_max_seq`` when set, else the
    longer of the training lengths and the ``[build]`` profile's max (derived as ``build`` derives it).
    None when neither is known (every row is then judged by its budget)."""
    if cfg.deployment_max_seq:
        return cfg.deployment_max_seq
    if not info:
        return None
    from .trt.profile import derive_profile

    build = recipe_from_dict(info["recipe"]).build
    lengths = info.get("train_lengths")
    if not lengths and not build.max_seq:
        return None
    profile, _ = derive_profile(int(info["input_size"]), lengths, max_seq=build.max_seq, opt_seq=build.opt_seq or 1)
    return max(profile.seq.max, int((lengths or {}).get("max", 0)))


@dataclass
class Row:
    """One target's verdict; ``to_dict`` is DESIGN's ``verify.json`` result entry (more keys welcome)."""

    target: Target
    status: str = "passed"  # passed | failed | skipped
    reason: str | None = None
    accuracy: float | None = None
    accuracy_delta: float | None = None
    argmax_agreement: float | None = None
    test_logits_max_abs: float | None = None
    latency_ms: dict[str, float] | None = None
    latency_shape: list[int] | None = None
    cases: list[CaseResult] = field(default_factory=list)
    test_cases: list[CaseResult] = field(default_factory=list)
    cases_not_run: list[str] = field(default_factory=list)  # "label: why" (an engine's profile, a size limit)
    unreadable: str | None = None  # the runtime could not read the artefact at all: its own message
    problems: list[str] = field(default_factory=list)
    attention: dict[int, list[float]] = field(default_factory=dict)
    mean_ratio: float | None = None
    hint: str | None = None  # the [verify] keys that move a failed verdict

    def fail(self, problem: str) -> None:
        self.problems.append(problem)
        self.status = "failed"
        self.reason = "; ".join(self.problems)

    def budget_summary(self) -> dict[str, Any]:
        """The worst case against its budget, in and beyond the deployment range, and the mean."""
        judged = self.cases + self.test_cases
        ratios = [c.ratio for c in judged if c.ratio is not None]
        stress = [(c.seq, c.stress_ratio, c.max_abs) for c in self.cases if c.stress_ratio is not None]
        return {"worst_ratio": max(ratios, default=None), "mean_ratio": self.mean_ratio,
                "stress": [{"seq": s, "ratio": r, "max_abs": m} for s, r, m in sorted(stress)]}

    def to_dict(self) -> dict[str, Any]:
        t = self.target
        return {"backend": t.backend, "artifact": t.artifact, "precision": t.precision, "status": self.status,
                "reason": self.reason, "accuracy": self.accuracy, "accuracy_delta": self.accuracy_delta,
                "argmax_agreement": self.argmax_agreement, "test_logits_max_abs": self.test_logits_max_abs,
                "latency_ms": self.latency_ms, "latency_shape": self.latency_shape,
                "budget": self.budget_summary(),
                "cases": [c.to_dict() for c in self.cases], "cases_not_run": self.cases_not_run,
                "problems": self.problems, "hint": self.hint}


@dataclass
class TestSplit:
    """The recipe's real test split, batched by length, with the reference's outputs on it."""

    batches: list[tuple[np.ndarray, SweepCase]]  # (indices into the split, the batch)
    y: np.ndarray
    lengths: np.ndarray
    samples: list[int]
    references: list[Reference] | None  # per batch: PyTorch FP32 outputs and intrinsic errors
    reference_accuracy: float | None
    source: str


def _info(directory: Path) -> dict[str, Any] | None:
    path = directory / artifacts.MODEL_JSON
    return artifacts.read_json(path) if path.is_file() else None


def _torch_reference(directory: Path) -> bool:
    from .backends.pyt import TorchCpuBackend

    return TorchCpuBackend.available() is None and (directory / artifacts.WEIGHTS).is_file()


def _extra_cases(info: dict[str, Any] | None, spec: IOSpec, engine_profiles: list[dict[str, Any]]) -> list[SweepCase]:
    """Cases only a live PyTorch reference can answer: 4096 steps, the training range, profile corners."""
    rng = np.random.default_rng(11)
    norm = (info or {}).get("normalization") or {"mean": [0.0] * spec.features, "std": [1.0] * spec.features}
    mu, sigma = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    shapes = {(1, 4096)}
    stats = (info or {}).get("train_lengths") or {}
    shapes |= {(1, int(stats[k])) for k in ("min", "max") if stats.get(k)}
    for profile in engine_profiles:
        for corner in ("min", "opt", "max"):
            dims = profile.get("x", {}).get(corner)
            if dims:
                shapes.add((int(dims[0]), int(dims[1])))
    cases = []
    for batch, seq in sorted(shapes):
        x = (mu + sigma * rng.standard_normal((batch, seq, spec.features))).astype(np.float32)
        cases.append(SweepCase(x, np.full(batch, seq, np.int64), False))
    return cases


def torch_references(directory: Path, spec: IOSpec, cases: Sequence[SweepCase]) -> list[Reference]:
    """PyTorch FP32's outputs on ``cases`` and each row's intrinsic error per precision (needs torch)."""
    from .backends.pyt import TorchCpuBackend
    from .intrinsic import intrinsic_errors

    with TorchCpuBackend(directory, spec) as backend:
        outputs = [backend.infer(c.feeds) for c in cases]
        errors = intrinsic_errors(backend.model, [c.feeds for c in cases], outputs, spec.output_names)
    return [Reference(o, e) for o, e in zip(outputs, errors)]


def _test_split(directory: Path, info: dict[str, Any] | None, spec: IOSpec, torch_ref: bool) -> tuple[TestSplit | None, str | None]:
    from .data import pad
    from .quantize import labelled_test_split

    if info is None:
        return None, "no model.json: the recipe's test split is unknown"
    test, reason = labelled_test_split(info)
    if test is None:
        return None, reason
    order = np.argsort(test.lengths, kind="stable")
    batches = []
    for start in range(0, test.n, TEST_BATCH):
        index = order[start : start + TEST_BATCH]
        x, lengths = pad([test.sequences[i] for i in index])
        batches.append((index, SweepCase(x, lengths, True)))
    # a spread of lengths for the heatmaps, shortest to longest
    samples = list(dict.fromkeys(int(order[int(q * (test.n - 1))]) for q in np.linspace(0, 1, ATTENTION_SAMPLES)))
    references = None
    accuracy = None
    source = "metrics.json (PyTorch FP32 at training time)"
    if torch_ref:
        references = torch_references(directory, spec, [case for _, case in batches])
        logits = _scatter(test.n, batches, [r.outputs for r in references], spec.head_output)[spec.head_output]
        accuracy = float((logits.argmax(1) == test.y).mean())
        source = "torch-cpu FP32 on the test split"
    else:
        metrics = directory / artifacts.METRICS
        if metrics.is_file():
            accuracy = artifacts.read_json(metrics)["test"]["accuracy"]
    return TestSplit(batches, test.y, test.lengths, samples, references, accuracy, source), None


def _scatter(n: int, batches: list[tuple[np.ndarray, SweepCase]], outs: Sequence[dict[str, np.ndarray]],
             head: str) -> dict[str, Any]:
    """Per-sequence outputs in split order from length-sorted batches (attention as ragged rows)."""
    classes = outs[0][head].shape[1]
    logits = np.zeros((n, classes), np.float64)
    attention: list[np.ndarray] = [np.zeros(0)] * n
    for (index, case), out in zip(batches, outs):
        logits[index] = out[head]
        for row, i in enumerate(index):
            attention[i] = out["attention"][row, : case.lengths[row]]
    return {head: logits, "attention": attention}


def _engine_profiles(directory: Path, targets: list[Target]) -> list[dict[str, Any]]:
    entries = artifacts.read_manifest(directory)["artifacts"]
    return [entries[t.artifact].get("profile") or {} for t in targets
            if t.skip is None and t.artifact and t.artifact.endswith(".engine") and t.artifact in entries]


def _lineage_problems(directory: Path, target: Target) -> list[str]:
    if target.artifact is None:
        return []
    if target.artifact not in artifacts.read_manifest(directory)["artifacts"]:
        return [f"{target.artifact} is not recorded in {artifacts.MANIFEST}: its origin is unknown"]
    return artifacts.check_lineage(directory, target.artifact)


def _judge_cases(row: Row, backend: Backend, rule: Rule, reference: ReferenceSet, head: str) -> None:
    for case, ref in zip(reference.cases, reference.references):
        batch, seq = case.x.shape[:2]
        outside = backend.accepts(batch, seq)
        if outside is not None:
            row.cases_not_run.append(f"{case.label}: {outside}")
            continue
        try:
            got = backend.infer(case.feeds)
        except AttnExportError as e:  # the artefact cannot run this shape at all (a frozen axis, say)
            row.cases.append(unmeasured(case, str(e)))
            row.fail(f"{case.label}: {e}")
            continue
        result = compare_case(case, ref, got, head, rule)
        row.cases.append(result)
        if not result:
            row.fail(f"{case.label}: " + "; ".join(result.problems))


def _judge_test_split(row: Row, backend: Backend, rule: Rule, split: TestSplit, head: str) -> None:
    outs = []
    for index, case in split.batches:
        outside = backend.accepts(*case.x.shape[:2])
        if outside is not None and backend.max_cells is not None:  # an interpreter's size limit: not judged
            row.cases_not_run.append(f"test split {case.label}: {outside}")
            return
        if outside is not None:
            row.fail(f"the test split does not fit: {outside}")
            return
        outs.append(backend.infer(case.feeds))
    got = _scatter(len(split.y), split.batches, outs, head)
    predicted = got[head].argmax(1)
    row.accuracy = float((predicted == split.y).mean())
    row.attention = {i: got["attention"][i].tolist() for i in split.samples}
    if split.reference_accuracy is not None:
        row.accuracy_delta = row.accuracy - split.reference_accuracy
    if split.references is None:
        return
    for (_, case), ref, out in zip(split.batches, split.references, outs):
        result = compare_case(case, ref, out, head, rule)
        row.test_cases.append(result)
        if not result:
            row.fail(f"test split {case.label}: " + "; ".join(result.problems))
    ref_logits = _scatter(len(split.y), split.batches, [r.outputs for r in split.references], head)[head]
    row.argmax_agreement = float((predicted == ref_logits.argmax(1)).mean())
    row.test_logits_max_abs = float(np.abs(got[head] - ref_logits).max())
    if rule.min_argmax_agreement is not None and row.argmax_agreement < rule.min_argmax_agreement:
        row.fail(f"test split: argmax agreement {row.argmax_agreement:.4f} below {rule.min_argmax_agreement}")
    if (rule.max_accuracy_drop is not None and row.accuracy_delta is not None
            and row.accuracy_delta < -rule.max_accuracy_drop):
        row.fail(f"test split: accuracy {row.accuracy:.4f} is {-row.accuracy_delta:.4f} below the reference "
                 f"(allowed drop {rule.max_accuracy_drop})")


def _judge_mean(row: Row, rule: Rule) -> None:
    """Reduced precision: the mean of error / intrinsic error over every deployment-range row."""
    ratios = [r for c in row.cases + row.test_cases for r in c.intrinsic_ratios]
    if rule.mean_multiple is None or not ratios:
        return
    row.mean_ratio = float(np.mean(ratios))
    if row.mean_ratio > rule.mean_multiple:
        row.fail(f"on average over {len(ratios)} deployment-range outputs the {rule.precision.upper()} error is "
                 f"{row.mean_ratio:.2f} x the model's own {rule.budget_precision} error (allowed "
                 f"mean_budget_multiple {rule.mean_multiple:g}): a systematic shift, not rounding")


def _latency(backend: Backend, features: int, seq: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {"x": rng.standard_normal((1, seq, features)).astype(np.float32),
                                    "lengths": np.array([seq], np.int64)}
    return percentiles(time_interleaved([backend.runner(feeds)], LATENCY_BUDGET)[0])


def _run_target(directory: Path, target: Target, spec: IOSpec, rule: Rule, reference: ReferenceSet,
                split: TestSplit | None, latency_seq: int, threads: int | None) -> Row:
    row = Row(target)
    for problem in _lineage_problems(directory, target):
        row.fail(problem)
    if row.status == "failed":
        return row
    backend = target.open(directory, spec, threads)
    try:
        backend.__enter__()
    except AttnExportError as e:  # the runtime cannot read this artefact: a failure, and said so
        row.unreadable = str(e)
        row.fail(f"cannot read: {e}")
        return row
    try:
        _judge_cases(row, backend, rule, reference, spec.head_output)
        if split is not None:
            _judge_test_split(row, backend, rule, split, spec.head_output)
        _judge_mean(row, rule)
        if backend.timed and backend.accepts(1, latency_seq) is None:
            row.latency_ms = _latency(backend, spec.features, latency_seq)
            row.latency_shape = [1, latency_seq]
    except AttnExportError as e:  # a backend that cannot run this artefact: a failure, reported
        row.fail(str(e))
    finally:
        backend.close()
    return row


def _conformance(directory: Path, spec: IOSpec, targets: list[Target], rows: list[Row]) -> list[dict[str, Any]]:
    """Every ONNX runtime asked for x every ONNX artefact in DIR: passed / failed (with the first divergent
    case) / cannot read (with the reader's own message) / not run (why). A pairing verify does not judge
    (a runtime that does not run that precision) is still tried for reading, so the table says why."""
    from .backends import REGISTRY

    by_pair = {(r.target.backend, r.target.artifact): r for r in rows}
    files = [(p, f) for p, f in artifacts.ONNX_FILES.items() if (directory / f).is_file()]
    entries = []
    for name in dict.fromkeys(t.backend for t in targets):
        cls = REGISTRY[name]
        if cls.kind != "onnx":
            continue
        reason = cls.available()
        for precision, artifact in files:
            if cls.computes is not None and artifact != artifacts.ONNX_FP32:
                continue
            row = by_pair.get((name, artifact))
            entry: dict[str, Any] = {"runtime": name, "artifact": artifact,
                                     "precision": cls.computes or precision, "status": "not run", "detail": None}
            if reason is not None:
                entry["detail"] = reason
            elif row is not None and row.unreadable is not None:
                entry.update(status="cannot read", detail=row.unreadable)
            elif row is not None and row.status != "skipped":
                failing = next((c for c in row.cases + row.test_cases if not c.passed), None)
                detail = (f"{failing.batch}x{failing.seq}{' padded' if failing.padded else ''}: {failing.problems[0]}"
                          if failing is not None else (row.problems[0] if row.problems else None))
                entry.update(status=row.status, detail=detail, worst_ratio=row.budget_summary()["worst_ratio"])
            else:
                unread = cls.unreadable(directory / artifact, spec)
                entry.update(status="cannot read" if unread else "reads",
                             detail=unread or f"reads it; {name} is not judged on {precision}")
            entries.append(entry)
    return entries


def _reference(directory: Path, info: dict[str, Any] | None, spec: IOSpec, targets: list[Target],
               torch_ref: bool) -> ReferenceSet:
    """The recorded sweep, plus (with torch) the cases only a live model can answer."""
    path = artifacts.require(directory, artifacts.REFERENCE)
    stale = [p for p in artifacts.check_lineage(directory, artifacts.REFERENCE)
             if (directory / artifacts.WEIGHTS).is_file() or "changed" in p]
    if stale:
        raise MissingPrerequisite(f"{'; '.join(stale)}; run attn-export export first")
    reference = read_reference(path)
    budgeted = {str(t.precision) for t in targets if t.skip is None and t.precision in ("fp16", "bf16")}
    for precision in {"fp32"} | budgeted:
        reference.require_intrinsic(precision, path)
    if torch_ref:
        extra = _extra_cases(info, spec, _engine_profiles(directory, targets))
        reference = ReferenceSet(reference.cases + extra,
                                 reference.references + torch_references(directory, spec, extra), reference.meta)
    return reference


@artifacts.writes_directory("verify")
def verify(
    directory: Path,
    backends: str | list[str] | None = "auto",
    threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Verify every runnable target in DIR; write verify.json and the manifest verdicts; return the result.

    ``overrides`` (``verify.key=value``) change the recipe's ``[verify]`` table for this run; they are
    recorded in verify.json and in each verdict. Raises nothing for a failed comparison: the caller reads
    ``result["passed"]`` (the CLI exits 1)."""
    started = time.perf_counter()
    spec = load_spec(directory)
    info = _info(directory)
    cfg = recipe_from_dict(info["recipe"]).verify if info else VerifyConfig()
    cfg = override_section(cfg, "verify", overrides)
    deploy = deployment_max_seq(info, cfg)
    targets = discover(directory, backends)
    if not any(t.skip is None for t in targets):
        raise NotAvailable("no backend can run here: " + "; ".join(f"{t.label}: {t.skip}" for t in targets))
    torch_ref = _torch_reference(directory)
    reference = _reference(directory, info, spec, targets, torch_ref)
    split, split_reason = _test_split(directory, info, spec, torch_ref)
    stats = (info or {}).get("train_lengths") or {}
    latency_seq = int(stats.get("median", 16))

    rows = []
    for target in targets:
        if target.skip is not None:
            rows.append(Row(target, status="skipped", reason=target.skip))
            continue
        if progress:
            progress(target.label)
        rule = rule_for(str(target.precision), cfg, get(target.backend).device, deploy)
        row = _run_target(directory, target, spec, rule, reference, split, latency_seq, threads)
        if row.status == "failed" and (row.cases or row.test_cases):
            row.hint = " or ".join(f"--set verify.{k}=..." for k in KNOBS[rule.precision]) + " moves this verdict"
        rows.append(row)
    result = {
        "passed": all(r.status != "failed" for r in rows),
        "reference": {"backend": "torch-cpu", "precision": "fp32",
                      "source": artifacts.WEIGHTS if torch_ref else artifacts.REFERENCE,
                      "accuracy": split.reference_accuracy if split else None,
                      "test_split": split.source if split else split_reason},
        "results": [r.to_dict() for r in rows],
        "conformance": _conformance(directory, spec, targets, rows),
        "tolerances": {**{p: rule_for(p, cfg, "cpu", deploy).to_dict() for p in PRECISIONS},
                       "fp32-gpu": rule_for("fp32", cfg, "cuda", deploy).to_dict()},
        "overrides": list(overrides),
        "deployment_max_seq": deploy,
        "budget": {"intrinsic": reference.meta.get("intrinsic"),
                   "rule": "|got - ref| <= atol + rtol*|ref| + budget_multiple * intrinsic (per output row)"},
        "sweep": {"cases": len(reference.cases),
                  "shapes": sorted({(int(c.x.shape[0]), int(c.x.shape[1])) for c in reference.cases}),
                  "padded": sum(c.padded for c in reference.cases)},
        "test_split": None if split is None else {"sequences": len(split.y), "batch": TEST_BATCH,
                                                  "min_length": int(split.lengths.min()),
                                                  "max_length": int(split.lengths.max())},
        "attention_samples": None if split is None else _attention_samples(split, rows),
        "latency": {"batch": 1, "seq": latency_seq, "threads": threads},
        "seconds": round(time.perf_counter() - started, 2),
    }
    artifacts.write_json(directory / VERIFY_JSON, result)
    _record_verdicts(directory, rows, list(overrides))
    return result


def _attention_samples(split: TestSplit, rows: list[Row]) -> dict[str, Any]:
    by_target = {f"{r.target.backend} {r.target.artifact}": [r.attention[i] for i in split.samples]
                 for r in rows if r.attention}
    if split.references is not None:
        head = next(iter(split.references[0].outputs))
        reference = _scatter(len(split.y), split.batches, [r.outputs for r in split.references], head)
        by_target = {"reference (torch-cpu FP32)": [reference["attention"][i].tolist() for i in split.samples],
                     **by_target}
    return {"indices": split.samples, "lengths": [int(split.lengths[i]) for i in split.samples],
            "labels": [int(split.y[i]) for i in split.samples], "by_target": by_target}


def _record_verdicts(directory: Path, rows: list[Row], overrides: list[str]) -> None:
    """Each verified artefact's manifest entry gets ``verified``: passed on every backend that ran it at its
    own precision (a backend computing in a precision of its own, OpenVINO's bf16, judges its execution,
    not the file: its rows stay in verify.json and the conformance table)."""
    from .backends import REGISTRY

    verify_sha = artifacts.sha256_file(directory / VERIFY_JSON)
    manifest = artifacts.read_manifest(directory)
    entries = manifest["artifacts"]
    by_artifact: dict[str, list[Row]] = {}
    for row in rows:
        if (row.status != "skipped" and row.target.artifact in entries
                and REGISTRY[row.target.backend].computes is None):
            by_artifact.setdefault(str(row.target.artifact), []).append(row)
    for name, group in by_artifact.items():
        accuracies = [r.accuracy for r in group if r.accuracy is not None]
        entries[name]["verified"] = {
            "passed": all(r.status == "passed" for r in group),
            "verify_sha256": verify_sha,
            "backends": [r.target.backend for r in group],
            "failed_backends": [r.target.backend for r in group if r.status == "failed"],
            "accuracy": accuracies[0] if accuracies else None,
            "overrides": overrides,
        }
    artifacts.write_json(directory / artifacts.MANIFEST, manifest)


def failures(result: dict[str, Any]) -> list[str]:
    """One short line per failed target, for the error message: its first problem and how many failed."""
    lines = []
    for r in result["results"]:
        if r["status"] != "failed":
            continue
        bad = sum(1 for c in r["cases"] if not c["passed"])
        count = f" ({bad} of {len(r['cases'])} cases failed)" if bad else ""
        more = f" and {len(r['problems']) - 1} more problem(s)" if len(r["problems"]) > 1 else ""
        hint = f" ({r['hint']})" if r.get("hint") else ""
        lines.append(f"{r['backend']} {r['artifact']}: {r['problems'][0]}{more}{count}{hint}")
    return lines
