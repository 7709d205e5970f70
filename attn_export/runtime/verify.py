"""Verification of every artefact in DIR against the PyTorch FP32 reference: on the device from
``reference.npz`` alone, on the host with more (``attn_export.verify`` adds live PyTorch cases and the
recipe's real test split).

    result = verify(Path("."))          # python -m attn_export.runtime verify DIR
    result.passed, result.failures()

Every runnable target (``targets.discover``) runs the same inputs and is judged by its precision's rule
(``compare.rule_for``) with the recipe's ``[verify]`` table (recorded in ``model.json``) and any
``verify.key=value`` overrides:

- ``fp32``, ``fp16``, ``bf16``: every output row within its budget, ``atol + rtol * |ref| + budget_multiple
  * intrinsic``, where ``intrinsic`` is the row's own error of the same model at that precision
  (``reference.npz`` records it), so the budget follows sequence length and logit scale on any weights;
- ``fp16``, ``bf16`` also: on average over the deployment range the error stays within
  ``mean_budget_multiple`` times the intrinsic error (a damaged weight shifts every output a little: it
  shows here first), argmax agreement on the test split, and rows longer than the deployment range
  (training lengths and the ``[build]`` profile) judged by the stress rules: finite, zero attention on
  padding, argmax kept wherever the reference's margin exceeds twice the budget;
- ``int8-*``: by argmax agreement and accuracy drop on the test split (the host has it), and by its decisions
  on the split cut short against the same file quantised again here (``_judge_cut``); on the sweep only
  shapes, finite values and exactly zero attention on padding.

Everything that fails is collected and reported together: ``DIR/verify.json``, a conformance table
(every ONNX runtime x artefact: passed / failed / cannot read / not run), and each artefact's manifest
entry gets a ``verified`` verdict tied to the bytes verified.

A run on some backends adds to the standing verification instead of replacing it (``carry``, ``merge``):
earlier results (never skipped rows) are carried over from the earlier ``verify.json``, each marked
``carried_from`` (the time of the run that measured it), when the store says they still describe this
directory: the earlier file's verdicts were recorded from it (``Store.recorded_from``) and each row's
artefact is still the bytes it ran (``Store.measured``) with a verdict recorded from that file for those
bytes (``Store.judged``). A pass of a backend this run was not asked to run (``--backends`` names others;
``auto`` leaves out the opt-in ones) is carried only when the reference (``reference.npz``'s sha256, its
source, the test split) and the settings that decide pass or fail (tolerances, overrides, the deployment
range, the sweep) are this run's, and the manifest's verdict does not contradict it. A failure stands
whatever the settings until its backend runs the file again, and a pass judged without the test split does
not clear a failure judged on it (nor, on a device, a pass judged on it: the host's verdict stands, and a
pass on structure alone with no such verdict is not judged, ``_decisions_unjudged``); a failure the
manifest's verdict records that no row answers
(``_unresolved``) keeps the file failed. Any other earlier result is dropped and named in ``not_carried``
with the reason. The verdicts are then derived from the merged rows and recorded from the new
``verify.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Type, Union

import numpy as np

from ..errors import AttnExportError, BadInput, DataError, NotAvailable, printable
from . import schema, store
from .backends import Backend, get
from .compare import (CaseResult, Reference, Rule, SweepCase, _budget, _intrinsic, _ratio, compare_case,
                      rule_for, unmeasured)
from .dispatch import INSTALL_ONNX_RUNTIME, verify_by_name
from .iospec import class_logits, top_margin
from .limits import check_threads
from .modelinfo import ModelInfo
from .precisions import ONNX_FILES, ONNX_FP32, PRECISIONS, one_by_one
from .recommend import judged_elsewhere
from .reference import ReferenceSet, read_reference
from .settings import DEPLOY_CASES_MAX, VerifyConfig, applied_overrides, not_default, override_section
from .store import STREAM_FILES, Store
from .targets import Registry, Target, discover, parse_backends
from .timing import Budget, cpu_name, percentiles, time_interleaved
from .trt.profile import derive_profile
from .trt.readiness import TARGETS as TENSORRT_TARGETS
from .trt.readiness import graphs_of, not_current, readiness, summary

__all__ = ["VERIFY_JSON", "Augment", "ConformanceCell", "TargetResult", "TestSplit", "VerifyResult",
           "deployment_max_seq", "tolerance_key", "verify"]

VERIFY_JSON = store.VERIFY_JSON
# what a verify without the recipe's data (a device's) records as its reference's test split
DEVICE_SPLIT = "the test split needs the recipe's data: verify on the host"
LATENCY_BUDGET = Budget(warmup=5, seconds=0.5, min_iterations=20, max_iterations=500)
BUDGET_RULE = "|got - ref| <= atol + rtol*|ref| + budget_multiple * intrinsic (per output row)"


def tolerance_key(precision: str, device: str) -> str:
    """The key of ``verify.json``'s ``tolerances`` whose rule judges ``precision`` computed on ``device``: FP32 on
    a GPU sums in another order and has its own (``compare.rule_for``)."""
    return "fp32-gpu" if precision == "fp32" and device != "cpu" else precision


def deployment_max_seq(info: Optional[ModelInfo], cfg: VerifyConfig) -> Optional[int]:
    """The longest sequence inside the deployment range: ``verify.deployment_max_seq`` when set, else the
    longer of the training lengths and the ``[build]`` profile's max (derived as ``build`` derives it), at
    most ``DEPLOY_CASES_MAX``, the longest range the sweep covers. None when neither is known (every row is
    then judged by its budget)."""
    if cfg.deployment_max_seq:  # at most DEPLOY_CASES_MAX: the setting's bound
        return cfg.deployment_max_seq
    if info is None or (not info.train_lengths and not info.build.max_seq):
        return None
    profile, _ = derive_profile(info.input_size, info.train_lengths, max_seq=info.build.max_seq,
                                opt_seq=info.build.opt_seq or 1)
    return min(max(profile.seq.max, int((info.train_lengths or {}).get("max", 0))), DEPLOY_CASES_MAX)


@dataclass
class TargetResult:
    """One target's verdict; ``to_dict`` is DESIGN's ``verify.json`` result entry (more keys welcome)."""

    target: Target
    status: str = "passed"  # passed | failed | skipped
    reason: Optional[str] = None
    accuracy: Optional[float] = None
    accuracy_delta: Optional[float] = None
    argmax_agreement: Optional[float] = None
    test_logits_max_abs: Optional[float] = None
    latency_ms: Optional[Dict[str, float]] = None
    latency_shape: Optional[List[int]] = None
    cases: List[CaseResult] = field(default_factory=list)
    test_cases: List[CaseResult] = field(default_factory=list)
    cases_not_run: List[str] = field(default_factory=list)  # "label: why" (an engine's profile, a size limit)
    unreadable: Optional[str] = None  # the runtime could not read the artefact at all: its own message
    problems: List[str] = field(default_factory=list)
    attention: Dict[int, List[float]] = field(default_factory=dict)
    mean_ratio: Optional[float] = None
    mean_allowed: Optional[float] = None  # the most mean_ratio may be (the rule's, times the backend's allowance)
    # the worst ratio over the sweep and the test split as verify.json recorded it: its rows keep the sweep's
    # cases only, so a row read back would otherwise say less than the run did (the report said 0.16 where
    # the console said 0.18)
    recorded_worst_ratio: Optional[float] = None
    hint: Optional[str] = None  # the [verify] keys that move a failed verdict
    # a stream's: the (backend, artefact) its earlier updates were compared with, and whether that failed it
    compared_with: Optional[Tuple[str, str]] = field(default=None, repr=False)
    prefix_failed: bool = field(default=False, repr=False)
    # a carried row whose file this run ran too, on structure alone (a device's INT8): its decisions are the
    # host's, its structure passed here now (``merge``)
    structure_here: bool = field(default=False, repr=False)
    # skipped because this machine's runtime cannot run it (NotAvailable when it was opened)
    not_here: bool = field(default=False, repr=False)
    sha256: Optional[str] = None  # of the bytes this target ran (the store's): what a verdict is tied to
    # not run by this verify: carried over from an earlier verify.json (see ``carry``); the time of the run that
    # measured it (``VerifyResult.created``), kept when a row is carried again
    carried_from: Optional[str] = None
    # INT8's decisions on the test split cut short (``_judge_cut``): the steps, rows, rows whose argmax moved
    # from FP32's, and of those the ones unlike the re-quantisation's where FP32 is confident (a failure)
    cut: Optional[Dict[str, Any]] = None
    # the CPU that ran it (``timing.cpu_name``: model, ISA flags): a per-CPU backend's pass holds there only
    # (``recommend.judged_elsewhere``)
    cpu: Optional[Tuple[str, List[str]]] = None

    def fail(self, problem: str) -> None:
        self.problems.append(problem)
        self.status = "failed"
        self.reason = "; ".join(self.problems)

    @property
    def worst_ratio(self) -> Optional[float]:
        """The largest error-to-budget ratio of any case, in the sweep or on the test split: the one number
        every table (console, report, conformance, verify.json) shows for this row."""
        ratios = [c.ratio for c in self.cases + self.test_cases if c.ratio is not None]
        if self.recorded_worst_ratio is not None:
            ratios.append(self.recorded_worst_ratio)
        return max(ratios, default=None)

    @property
    def worst_max_abs(self) -> Optional[float]:
        return max((c.max_abs for c in self.cases if np.isfinite(c.max_abs)), default=None)

    @property
    def worst_cosine(self) -> Optional[float]:
        return min((c.cosine for c in self.cases if c.passed or np.isfinite(c.max_abs)), default=None)

    def budget_summary(self) -> Dict[str, Any]:
        """The worst case against its budget, in and beyond the deployment range, and the mean."""
        stress = [(c.seq, c.stress_ratio, c.max_abs) for c in self.cases if c.stress_ratio is not None]
        return {"worst_ratio": self.worst_ratio, "mean_ratio": self.mean_ratio, "mean_allowed": self.mean_allowed,
                "stress": [{"seq": s, "ratio": r, "max_abs": m} for s, r, m in sorted(stress)]}

    def first_problem_line(self) -> str:
        bad = sum(1 for c in self.cases if not c.passed)
        count = f" ({bad} of {len(self.cases)} cases failed)" if bad else ""
        more = f" and {len(self.problems) - 1} more problem(s)" if len(self.problems) > 1 else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.target.backend} {self.target.artifact}: {self.problems[0]}{more}{count}{hint}{self.carried_text()}"

    def carried_text(self) -> str:
        """" (carried from the verify of ..., not re-run now)" for a carried row, said of a file this run also
        ran on structure alone as what it is (``structure_here``); "" for a row measured now."""
        if not self.carried_from:
            return ""
        if self.structure_here:
            return f" (its decisions from the host's verify of {self.carried_from}; its structure passed here now)"
        return f" (carried from the verify of {self.carried_from}, not re-run now)"

    def to_dict(self) -> Dict[str, Any]:
        t = self.target
        return {"backend": t.backend, "artifact": t.artifact, "precision": t.precision, "status": self.status,
                "reason": self.reason, "accuracy": self.accuracy, "accuracy_delta": self.accuracy_delta,
                "argmax_agreement": self.argmax_agreement, "test_logits_max_abs": self.test_logits_max_abs,
                "latency_ms": self.latency_ms, "latency_shape": self.latency_shape,
                "budget": self.budget_summary(),
                "cases": [c.to_dict() for c in self.cases], "cases_not_run": self.cases_not_run,
                "problems": self.problems, "hint": self.hint, "unreadable": self.unreadable, "sha256": self.sha256,
                "carried_from": self.carried_from, "cut": self.cut,
                "cpu": self.cpu[0] if self.cpu else None, "isa": self.cpu[1] if self.cpu else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TargetResult":
        row = cls(Target(d["backend"], d.get("artifact"), d.get("precision")), status=d["status"],
                  reason=d.get("reason"), accuracy=d.get("accuracy"), accuracy_delta=d.get("accuracy_delta"),
                  argmax_agreement=d.get("argmax_agreement"), test_logits_max_abs=d.get("test_logits_max_abs"),
                  latency_ms=d.get("latency_ms"), latency_shape=d.get("latency_shape"),
                  cases=[CaseResult.from_dict(c) for c in d.get("cases") or []],
                  cases_not_run=list(d.get("cases_not_run") or []), unreadable=d.get("unreadable"),
                  problems=list(d.get("problems") or []), hint=d.get("hint"), sha256=d.get("sha256"),
                  carried_from=d.get("carried_from"), cut=d.get("cut"),
                  cpu=(d["cpu"], list(d.get("isa") or [])) if d.get("cpu") is not None else None)
        row.mean_ratio = (d.get("budget") or {}).get("mean_ratio")
        row.mean_allowed = (d.get("budget") or {}).get("mean_allowed")
        row.recorded_worst_ratio = (d.get("budget") or {}).get("worst_ratio")
        return row


@dataclass(frozen=True)
class ConformanceCell:
    """One runtime x artefact: passed / failed (the first divergent case) / cannot read (the reader's own
    message) / reads (a pairing verify does not judge) / not run (why)."""

    runtime: str
    artifact: str
    precision: str
    status: str
    detail: Optional[str] = None
    worst_ratio: Optional[float] = None
    carried_from: Optional[str] = None  # the row it shows was carried over (``TargetResult.carried_from``)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class TestSplit:
    """The recipe's real test split, batched by length, with the reference's outputs on it (the host's)."""

    batches: List[Tuple[np.ndarray, SweepCase]]  # (indices into the split, the batch)
    y: np.ndarray
    lengths: np.ndarray
    samples: List[int]  # a spread of sequences, shortest to longest, whose attention every target reports
    references: Optional[List[Reference]]  # per batch: PyTorch FP32 outputs and intrinsic errors
    reference_accuracy: Optional[float]
    source: str
    # the split's sequences cut to a few steps, shorter than any it holds (a case: rows of one length), with
    # PyTorch FP32's head outputs on them: where INT8's decisions are judged against a re-quantisation
    cut: List[Tuple[SweepCase, np.ndarray]] = field(default_factory=list)


@dataclass
class Augment:
    """What a host with torch and the recipe's data adds to ``reference.npz``."""

    reference: ReferenceSet
    split: Optional[TestSplit]
    split_reason: Optional[str]
    source: str  # where the reference outputs come from: model.safetensors (live) or reference.npz
    split_expected: bool = True  # the host, with the recipe's data: INT8 without a test split is not judged
    # an INT8 graph's name -> the same graph made again here by quantize's recipe (``quantize.requantised``),
    # or why it could not be: what ``_judge_cut`` judges the file's decisions against
    requantised: Dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyResult:
    """What verify found; ``to_dict`` is ``verify.json``, ``from_dict`` reads it back (report, CLI)."""

    passed: bool
    reference: Dict[str, Any]
    results: List[TargetResult]
    conformance: List[ConformanceCell]
    tolerances: Dict[str, Dict[str, Any]]
    overrides: List[str]
    deployment_max_seq: Optional[int]
    budget: Dict[str, Any]
    sweep: Dict[str, Any]
    test_split: Optional[Dict[str, Any]]
    attention_samples: Optional[Dict[str, Any]]
    latency: Dict[str, Any]
    seconds: float
    # artefacts in DIR the store will not vouch for that no row here judged (an engine when TensorRT is not
    # asked for or not here, say): each one's reason, so that a passing run never hides them
    untrusted: List[str] = field(default_factory=list)
    # every ONNX file against every TensorRT target's parser rules (trt.readiness.summary): target -> file ->
    # "ready (how)", "withdrawn: why" or "NOT READY: the first problem"; a static check, not a verdict
    tensorrt: Dict[str, Dict[str, str]] = field(default_factory=dict)
    # when this verify ran (UTC, ISO 8601): what a row carried into a later verify.json names (``carried_from``)
    created: Optional[str] = None
    # earlier rows that were not carried into this verify.json, each with the reason (see ``carry``)
    not_carried: List[str] = field(default_factory=list)
    # failures the manifest's verdicts record on these bytes that no row answers (``_unresolved``): they fail
    standing: List[str] = field(default_factory=list)
    # the recipe's [verify] values that are not the defaults, "key=value (default d)": a --set given to run or
    # train lands there, and its PASSED had read like the defaults' (found by attacking)
    recipe_settings: List[str] = field(default_factory=list)

    def failures(self) -> List[str]:
        """One short line per failed target: its first problem, how many cases failed, what moves it; then
        each failure the manifest records that no row answers."""
        return [r.first_problem_line() for r in self.results if r.status == "failed"] + list(self.standing)

    @property
    def loosened(self) -> str:
        return self.loosened_as("")

    def loosened_as(self, quote: str) -> str:
        """``--set`` and the overrides this verify ran with (between ``quote``s), then the recipe's own [verify]
        values that are not the defaults, as every headline beside its verdict says them; "" for the defaults."""
        said = [f"{quote}--set {', '.join(self.overrides)}{quote}"] if self.overrides else []
        if self.recipe_settings:
            said.append(f"the recipe's [verify] {', '.join(self.recipe_settings)}")
        return "; ".join(said)

    def latency_at(self) -> str:
        """The shape and threads the rows' p50 is of ("b1 s15, 1 thread"; "" when not recorded): said beside
        it, since bench's tables time other shapes (found by attacking)."""
        at = self.latency or {}
        threads = at.get("threads")
        return (f"b{at['batch']} s{at['seq']}, {threads or 'default'} thread{'' if threads == 1 else 's'}"
                if at.get("batch") and at.get("seq") else "")

    def p50_header(self) -> str:
        return f"p50 ms ({self.latency_at()})" if self.latency_at() else "p50 ms"

    def ran(self) -> List[TargetResult]:
        """The targets that ran, failures first: what a person reads first."""
        return sorted((r for r in self.results if r.status != "skipped"), key=lambda r: r.status != "failed")

    def skipped_by_backend(self) -> List[Tuple[str, List[str], str]]:
        """(backend, the artefacts it skipped, the reason): one line per backend and reason, not one per artefact
        (found by attacking: a backend that skipped two artefacts for two reasons showed only the first). A
        backend with nothing to run (no engine for tensorrt, an opt-in one not named) skipped no artefact."""
        out: Dict[Tuple[str, str], List[str]] = {}
        for r in self.results:
            if r.status == "skipped":
                artefacts = out.setdefault((r.target.backend, r.reason or ""), [])
                if r.target.artifact:
                    artefacts.append(r.target.artifact)
        return [(backend, names, reason) for (backend, reason), names in out.items()]

    def carried_by_run(self) -> Dict[str, List[TargetResult]]:
        """The rows carried over from earlier verifies, by the run that measured them (``carried_from``)."""
        runs: Dict[str, List[TargetResult]] = {}
        for r in self.results:
            if r.carried_from:
                runs.setdefault(r.carried_from, []).append(r)
        return runs

    def skipped_lines(self) -> List[str]:
        """"<backend> (<artefacts>): <reason>" per skipped backend and reason; without them when it skipped none."""
        return [f"{backend}{' (' + ', '.join(names) + ')' if names else ''}: {reason}"
                for backend, names, reason in self.skipped_by_backend()]

    def unjudged_decisions(self) -> List[str]:
        """"<target>: decisions on the sweep ... agreed 0.50 at 2 x 38, ..." for every row judged on the test
        split's decisions whose sweep moved some that ``_judge_sweep_decisions`` leaves (within the file's own
        error, or longer than the test split's): its agreement in the tables is the test split's, so the
        console and the report say these beside it (found by attacking: the report had left them out)."""
        decided = {p.name for p in PRECISIONS.values() if p.judged_by == "decisions"}

        def moved(case: CaseResult) -> bool:  # a carried row may lack the number
            judged = any(UNJUDGED_BY_THE_SPLIT in p for p in case.problems)  # by ``_judge_sweep_decisions``
            return not judged and case.argmax_agreement is not None and case.argmax_agreement < 1

        def said(r: TargetResult) -> str:  # a stream's case once, however many schedules moved it (review)
            return ", ".join(dict.fromkeys(f"{c.argmax_agreement:.2f} at {c.batch} x {c.seq}" for c in r.cases
                                           if moved(c)))

        return [f"{r.target.label}: decisions on the sweep (judged only on sequences shorter than the test split's) "
                f"agreed {said(r)}" for r in self.ran() if r.target.precision in decided and any(moved(c) for c in r.cases)]

    def unrecorded(self, s: Store) -> Optional[str]:
        """Why no verdict in the manifest was recorded from this verify.json (stale, or another directory's
        copy), with what to do; None when one was. Re-making files is the fix only when the files it judged
        are not current; when they are (made again since, or the copy is another directory's), verify is."""
        if s.recorded_from(VERIFY_JSON):
            return None
        judged = {str(r.target.artifact) for r in self.results if r.status != "skipped" and r.target.artifact}
        fix = ("the files it judged are not current (each is named with why): make them again (attn-export export, then quantize "
               "with the variants you had), then verify"
               if any(not s.state(n).current for n in judged if s.entry(n) is not None or (s.directory / n).exists())
               else f"run {store.made_by(VERIFY_JSON, s.hinted())} again")
        return (f"no verdict in {store.MANIFEST} was recorded from this {VERIFY_JSON}: it is stale or from another "
                f"directory; {fix}")

    def to_dict(self) -> Dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["results"] = [r.to_dict() for r in self.results]
        out["conformance"] = [c.to_dict() for c in self.conformance]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VerifyResult":
        """``to_dict``'s inverse, for a ``verify.json`` read with ``schema.VERIFY`` (which vouches for the
        keys and types used here)."""
        fields = dict(d)
        fields["results"] = [TargetResult.from_dict(r) for r in d.get("results") or []]
        cell_fields = set(ConformanceCell.__dataclass_fields__)  # more keys welcome: the ones it knows
        fields["conformance"] = [ConformanceCell(**{k: v for k, v in c.items() if k in cell_fields})
                                 for c in d.get("conformance") or []]
        for key in ("overrides", "tolerances", "budget", "latency", "reference", "sweep"):
            fields.setdefault(key, [] if key == "overrides" else {})
        for key in ("deployment_max_seq", "test_split", "attention_samples"):
            fields.setdefault(key, None)
        fields.setdefault("untrusted", [])
        fields.setdefault("tensorrt", {})
        fields.setdefault("created", None)
        fields.setdefault("not_carried", [])
        fields.setdefault("standing", [])
        fields.setdefault("recipe_settings", [])
        fields.setdefault("seconds", 0.0)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in fields.items() if k in known})


def _scatter(n: int, batches: Sequence[Tuple[np.ndarray, SweepCase]], outs: Sequence[Mapping[str, np.ndarray]],
             head: str) -> Dict[str, Any]:
    """Per-sequence outputs in split order from length-sorted batches (attention as ragged rows)."""
    classes = outs[0][head].shape[1]
    logits = np.zeros((n, classes), np.float64)
    attention: List[np.ndarray] = [np.zeros(0)] * n
    for (index, case), out in zip(batches, outs):
        logits[index] = out[head]
        for row, i in enumerate(index):
            attention[i] = out["attention"][row, : case.lengths[row]]
    return {head: logits, "attention": attention}


def _judge_cases(row: TargetResult, backend: Backend, rule: Rule, reference: ReferenceSet, head: str) -> None:
    for case, ref in zip(reference.cases, reference.references):
        batch, seq = case.x.shape[:2]
        outside = backend.accepts(batch, seq)
        if outside is not None:
            row.cases_not_run.append(f"{case.label}: {outside}")
            continue
        try:
            alone = one_by_one(row.target.precision)
            got = _alone(backend, case) if alone else backend.infer(case.feeds)
            padded = _padding_attended(backend, case) if alone else None
        except AttnExportError as e:  # the artefact cannot run this shape at all (a frozen axis, say)
            row.cases.append(unmeasured(case, str(e)))
            row.fail(f"{case.label}: {e}")
            continue
        if padded is not None:
            row.fail(f"{case.label}: {padded}")
        result = compare_case(case, ref, got, head, rule)
        row.cases.append(result)
        if not result:
            row.fail(f"{case.label}: " + "; ".join(result.problems))


def _alone(backend: Backend, case: SweepCase) -> Dict[str, np.ndarray]:
    """Each row of ``case`` run alone at its own length (``Precision.per_row``: what predict does), the
    outputs stacked as the batch's would be, attention 0 on the padding."""
    outs = [backend.infer({"x": case.x[i:i + 1, :n], "lengths": case.lengths[i:i + 1]})
            for i, n in enumerate(int(n) for n in case.lengths)]
    seq = case.x.shape[1]
    return {name: np.concatenate([np.pad(o[name], [(0, 0), (0, seq - o[name].shape[1])]) if name == "attention"
                                  else o[name] for o in outs]) for name in outs[0]}


def _padding_attended(backend: Backend, case: SweepCase) -> Optional[str]:
    """What is wrong with the attention a graph judged one row at a time gives padded steps when ``case``
    runs as one batch, as a user's own session may run it (its numbers are not judged there: a dynamic scale
    is the whole batch's; zero attention on padding holds at any scale). Found by attacking: with its mask
    removed, the INT8 graph passed, each row padded with zeros here."""
    if bool((case.lengths == case.x.shape[1]).all()):
        return None
    attention = backend.infer(case.feeds)["attention"]
    padding = attention[np.arange(case.x.shape[1])[None, :] >= case.lengths[:, None]]
    if bool((padding == 0).all()):
        return None
    largest = float(np.abs(np.nan_to_num(padding, nan=np.inf)).max())  # NaN said as inf: not a weight
    return f"attention on padded steps is not exactly 0 when the batch runs together (largest {largest:.3g})"


def _judge_test_split(row: TargetResult, backend: Backend, rule: Rule, split: TestSplit, head: str) -> None:
    outs = []
    for _, case in split.batches:
        outside = backend.accepts(*case.x.shape[:2])
        if outside is not None and backend.max_cells is not None:  # an interpreter's size limit: not judged
            row.cases_not_run.append(f"test split {case.label}: {outside}")
            return
        if outside is not None:
            row.fail(f"the test split does not fit: {outside}")
            return
        outs.append(_alone(backend, case) if one_by_one(row.target.precision) else backend.infer(case.feeds))
    got = _scatter(len(split.y), split.batches, outs, head)
    predicted = class_logits(got[head]).argmax(1)  # a binary head: its logit > 0
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
    _judge_decisions(row, rule, split, got[head], head)
    if not rule.judged_by_element and not one_by_one(row.target.precision):
        _judge_alone(row, backend, rule, split, head)


def _judge_alone(row: TargetResult, backend: Backend, rule: Rule, split: TestSplit, head: str) -> None:
    """A precision judged by its decisions that runs batched (INT8 Q/DQ): its decisions on the test split once
    more one sequence at a time, as at batch 1 on a device, by the same limits (found by review: a Q/DQ graph
    wrong at batch 1 alone passed, its test split run in batches of 32)."""
    assert split.references is not None
    outside = _outside(backend, 1, [int(n) for n in split.lengths])
    if outside is not None:  # an engine whose profile starts above batch 1, say: not run, said
        row.cases_not_run.append(f"test split one sequence at a time: {outside}")
        return
    alone = _scatter(len(split.y), split.batches, [_alone(backend, case) for _, case in split.batches], head)[head]
    ref = _scatter(len(split.y), split.batches, [r.outputs for r in split.references], head)[head]
    agreement = float((class_logits(alone).argmax(1) == class_logits(ref).argmax(1)).mean())
    accuracy = float((class_logits(alone).argmax(1) == split.y).mean())
    delta = None if split.reference_accuracy is None else accuracy - split.reference_accuracy
    for problem in _outside_decision_limits(rule, agreement, accuracy, delta):
        row.fail(f"test split one sequence at a time: {problem}")


def _judge_decisions(row: TargetResult, rule: Rule, split: TestSplit, logits: np.ndarray, head: str) -> None:
    """``logits`` on the test split (split order) against PyTorch's: argmax agreement, largest difference,
    and the rule's decision limits (INT8: agreement and accuracy drop)."""
    if split.references is None:
        return
    ref_logits = _scatter(len(split.y), split.batches, [r.outputs for r in split.references], head)[head]
    row.argmax_agreement = float((class_logits(logits).argmax(1) == class_logits(ref_logits).argmax(1)).mean())
    row.test_logits_max_abs = float(np.abs(logits - ref_logits).max())
    _decision_limits(row, rule)


def _decision_limits(row: TargetResult, rule: Rule) -> None:
    """The rule's decision limits (INT8: argmax agreement and accuracy drop) on the row's measured decisions:
    measured now, or carried from the host's verify and judged again under this run's settings."""
    for problem in _outside_decision_limits(rule, row.argmax_agreement, row.accuracy, row.accuracy_delta):
        row.fail(f"test split: {problem}")


def _outside_decision_limits(rule: Rule, agreement: Optional[float], accuracy: Optional[float],
                             delta: Optional[float]) -> List[str]:
    """How decisions measured on the test split (argmax agreement with PyTorch, accuracy and its change from
    PyTorch's; None: not measured) break the rule's decision limits, one line each."""
    problems = []
    if rule.min_argmax_agreement is not None and agreement is not None and agreement < rule.min_argmax_agreement:
        problems.append(f"argmax agreement {agreement:.4f} below {rule.min_argmax_agreement}")
    if rule.max_accuracy_drop is not None and delta is not None and delta < -rule.max_accuracy_drop:
        problems.append(f"accuracy {accuracy:.4f} is {-delta:.4f} below the reference (allowed drop "
                        f"{rule.max_accuracy_drop})")
    return problems


UNJUDGED_BY_THE_SPLIT = "the test split does not judge"  # in the problem of a sweep case failed by its decisions


def _judge_sweep_decisions(row: TargetResult, rule: Rule, split: TestSplit,
                           schedules: Optional[Dict[int, str]] = None) -> None:
    """A precision judged by its decisions (INT8), on the sweep's deployment-range rows shorter than the test
    split's shortest, which the split does not judge and whose error the file's own error where it does
    bounds: a decision moved there by an error over the rule's multiple of the largest error the file shows
    at the split's lengths (on the split, and on the sweep's rows of its lengths; a stream's streamed as the
    split is, ``schedules``: id of a case, how it was streamed; random inputs moved one model's INT8 21x
    further than its test split did) fails. Rows longer than the split's longest, and a stream's rows of the
    split's lengths under other schedules, are not judged so: INT8's error grows with length and moves with
    the chunking (measured: a correct stream 5.5x its split's at 256 steps in chunks of 128, another 4.0x at
    37 steps in chunks of 1). A moved decision left unjudged is shown under "not judged". The scale is the
    file's own: a file whose error is as large everywhere passes here (``_judge_cut`` judges it).
    Found by attacking: an INT8 graph that flipped every decision on sequences of 1 to 3 steps (error 10,
    against 0.56 where the split judged it) passed."""
    if rule.judged_by_element or row.test_logits_max_abs is None or not len(split.lengths):
        return
    shortest, longest = int(split.lengths.min()), int(split.lengths.max())
    how = (lambda case: schedules[id(case)]) if schedules else (lambda case: None)
    split_how = f" streamed {STREAM_SPLIT_SCHEDULE}" if schedules else ""
    deployed = [(case, n, e, kept) for case in row.cases for n, e, kept in case.rows
                if rule.deployment_max_seq is None or n <= rule.deployment_max_seq]
    scale = max([row.test_logits_max_abs] + [e for case, n, e, _ in deployed if shortest <= n <= longest
                                              and how(case) in (None, STREAM_SPLIT_SCHEDULE)])
    for case in row.cases:
        moved = [(n, e) for c, n, e, kept in deployed if c is case and n < shortest and not kept
                 and e > rule.multiple * scale]
        if not moved:
            continue
        streamed = f" streamed {how(case)}" if schedules else ""
        problem = (f"argmax differs on {len(moved)} row(s) {UNJUDGED_BY_THE_SPLIT} "
                   f"({', '.join(str(n) for n, _ in moved)} step(s){streamed}; the split's are {shortest} to "
                   f"{longest}{split_how}) with errors up to {max(e for _, e in moved):.3g}: over "
                   f"{rule.multiple:g} x {scale:.3g}, the largest error this file shows where the test split "
                   "judges it")
        case.problems.append(problem)
        case.passed = False
        row.fail(f"{case.label}{streamed}: {problem}")


CUT_MARGIN_SHARE = 0.1  # a cut row counts where FP32's margin exceeds this share of its median on the split
CUT_SHORT = "the test split cut short"  # how a row names its INT8 decisions on the split cut short (``_judge_cut``)


def _judge_cut(row: TargetResult, backend: Backend, split: TestSplit, augment: Augment, threads: Optional[int],
               registry: Registry, stream: bool = False) -> None:
    """INT8's decisions on the test split's sequences cut to a few steps (``TestSplit.cut``: lengths the split
    does not judge), against PyTorch FP32's and those of the file made again here by quantize's own recipe
    (``Augment.requantised``), run by the same runtime in the same way: a row fails where the file's argmax
    differs from both and FP32's margin exceeds ``CUT_MARGIN_SHARE`` of its median margin on the split.
    The quantiser's own moves are the re-quantisation's too, so they pass (a genuine Q/DQ graph flipped a
    decision of median margin at 50 steps); a file whose error is larger everywhere fails where the split's
    own lengths passed it (found by attacking: an initial state of -1 or a zeroed bias written into the graph
    by quantize itself, argmax agreement 0.67-0.83 on the cut sequences). Measured on 30 genuine files of 11
    models (none failed) and 86 tampered ones (README, Verify, "INT8 on cut sequences"). ``stream``: a stream
    graph, each cut sequence streamed ``STREAM_SPLIT_SCHEDULE`` as its test split is."""
    from .streaming import replay, schedule, stream_run

    name = str(row.target.artifact)
    made = augment.requantised.get(name, "none is made for an engine (it would need a TensorRT build)")
    if split.references is None:
        row.cases_not_run.append(f"{CUT_SHORT}: not judged: no PyTorch outputs on the split here")
        return
    if not split.cut:
        row.cases_not_run.append(f"{CUT_SHORT}: not judged: its shortest sequence is {int(split.lengths.min())} "
                                 "step(s), none shorter to cut it to")
        return
    if isinstance(made, str):
        row.cases_not_run.append(f"{CUT_SHORT}: not judged against a re-quantisation: {made}")
        return
    precision, head = row.target.precision, backend.spec.head_output
    per_row = one_by_one(precision)  # each row alone (a stream's too: stream_run)

    def decide(runtime: Backend, case: SweepCase) -> np.ndarray:
        if stream:
            updates = replay(stream_run(runtime.run_feeds, precision), runtime.spec, case.x, case.lengths,
                             schedule(STREAM_SPLIT_SCHEDULE, case.x.shape[1]))
            return np.asarray(updates[-1].outputs[head], np.float64)
        return np.asarray((_alone(runtime, case) if per_row else runtime.infer(case.feeds))[head], np.float64)

    def runs(runtime: Backend, case: SweepCase, width: int) -> np.ndarray:  # ``width`` rows a run, none fewer
        rows, outs = len(case.lengths), []
        for start in range(0, rows, width):
            low = min(start, rows - width)  # the last run takes rows before it again rather than fewer
            part = SweepCase(case.x[low:low + width], case.lengths[low:low + width], False)
            outs.append(decide(runtime, part)[start - low:])
        return np.concatenate(outs)

    try:
        again = get(row.target.backend, registry)(made, threads=threads).__enter__()
    except AttnExportError as e:
        row.cases_not_run.append(f"{CUT_SHORT}: not judged: {made.name} cannot run on "
                                 f"{row.target.backend}: {e}")
        return
    fp32, got, ref, steps = [], [], [], set()
    try:
        for case, logits in split.cut:
            batch, k = case.x.shape[:2]
            sizes = schedule(STREAM_SPLIT_SCHEDULE, k) if stream else [k]
            # the most rows a run both take (an engine's profile; one where each row runs alone)
            width = next((b for b in ([1] if per_row else range(batch, 0, -1))
                          if _outside(backend, b, sizes) is None and _outside(again, b, sizes) is None), None)
            if width is None:
                row.cases_not_run.append(f"{CUT_SHORT} to {k} step(s): "
                                         f"{_outside(backend, 1, sizes) or _outside(again, 1, sizes)}")
                continue
            fp32.append(class_logits(logits))
            width = batch if per_row else width  # rows alone: the whole case, each row its own run
            got.append(class_logits(runs(backend, case, width)))
            ref.append(class_logits(runs(again, case, width)))
            steps.add(k)
    finally:
        again.close()
    if not fp32:
        return
    reference = class_logits(_scatter(len(split.y), split.batches, [r.outputs for r in split.references], head)[head])
    floor = CUT_MARGIN_SHARE * float(np.median(top_margin(reference)))
    truth, file, requantised = (np.concatenate(a) for a in (fp32, got, ref))
    moved = file.argmax(1) != truth.argmax(1)
    own = moved & (file.argmax(1) != requantised.argmax(1)) & (top_margin(truth) > floor)
    row.cut = {"steps": sorted(steps), "rows": int(len(truth)), "moved": int(moved.sum()), "own": int(own.sum())}
    if own.any():
        row.fail(f"{CUT_SHORT} to {', '.join(map(str, sorted(steps)))} step(s): argmax differs both from PyTorch "
                 f"FP32's and from that of {made.name} on {int(own.sum())} of {len(truth)} sequences where FP32's margin is over "
                 f"{CUT_MARGIN_SHARE:g} x {floor / CUT_MARGIN_SHARE:.3g}, the split's median (up to "
                 f"{float(top_margin(truth)[own].max()):.3g}): an error of this file's own, not its quantisation's "
                 "(no [verify] key moves it)")


def _judge_mean(row: TargetResult, rule: Rule, allowance: float, why: str) -> None:
    """Reduced precision: the mean of error / intrinsic error over every deployment-range row, within
    ``mean_budget_multiple`` times the backend's ``mean_allowance`` (``why``: its ``mean_allowance_why``)."""
    ratios = [r for c in row.cases + row.test_cases for r in c.intrinsic_ratios]
    if rule.mean_multiple is None or not ratios:
        return
    row.mean_ratio = float(np.mean(ratios))
    row.mean_allowed = rule.mean_multiple * allowance
    if row.mean_ratio > row.mean_allowed:
        allowed = (f"mean_budget_multiple {rule.mean_multiple:g}" if allowance == 1 else
                   f"{row.mean_allowed:g}, {allowance:g} x mean_budget_multiple {rule.mean_multiple:g} on "
                   f"{row.target.backend}: {why}")
        row.fail(f"on average over {len(ratios)} deployment-range outputs the {rule.precision.upper()} error is "
                 f"{row.mean_ratio:.2f} x the model's own {rule.budget_precision} error (allowed {allowed}): a "
                 "systematic shift, not rounding")


def _latency(backend: Backend, features: int, seq: int) -> Dict[str, float]:
    rng = np.random.default_rng(0)
    feeds: Dict[str, np.ndarray] = {"x": rng.standard_normal((1, seq, features)).astype(np.float32),
                                    "lengths": np.array([seq], np.int64)}
    return percentiles(time_interleaved([backend.runner(feeds)], LATENCY_BUDGET)[0])


def _run_target(store: Store, target: Target, rule: Rule, augment: Augment, latency_seq: int,
                threads: Optional[int], registry: Registry) -> TargetResult:
    row = TargetResult(target)
    try:
        backend = target.open(store, threads, registry)
    except NotAvailable as e:  # an engine built for another GPU or TensorRT: not this machine's to judge
        return TargetResult(target, status="skipped", reason=str(e), not_here=True)
    except BadInput as e:  # the store will not vouch for it: never run, a failure
        row.fail(str(e))
        return row
    if not rule.judged_by_element and not store.info.labels:
        return _no_decisions(target, store.info)
    if not rule.judged_by_element and augment.split is None and augment.split_expected and store.info.labels:
        return TargetResult(target, status="skipped", reason=(  # INT8's verdict is its decisions: none to judge
            f"not judged: {rule.precision} is judged by its decisions on the test split, and there is none "
            f"({augment.split_reason})"))
    row.sha256, row.cpu = backend.artifact.sha256, cpu_name()
    try:
        backend.__enter__()
    except NotAvailable as e:  # this machine's runtime cannot run it (a version older than the one tested, a
        # provider that did not load, a precision OpenVINO would not compile): not a verdict on the file
        return TargetResult(target, status="skipped", reason=str(e), not_here=True)
    except AttnExportError as e:  # the runtime cannot read this artefact: a failure, and said so
        row.unreadable = str(e)
        foreign = _foreign_ops(backend.artifact)
        if foreign:  # ONNX Runtime's own operators: a runtime (version) without them is not judged on the graph
            row.status, row.reason = "skipped", (f"cannot read: {e} (the graph uses {', '.join(foreign)}, "
                                                 "ONNX Runtime's own operators, not ONNX's)")
            return row
        row.fail(f"cannot read: {e}")
        return row
    head = backend.spec.head_output
    if target.artifact is not None and store.is_stream(target.artifact):
        try:
            _judge_stream(row, backend, store, target, rule, augment, threads, registry)
        except _Unjudged as e:  # its comparator cannot be trusted: the stream is not judged, not failed
            return TargetResult(target, status="skipped", reason=str(e))
        except AttnExportError as e:
            row.fail(str(e))
        finally:
            backend.close()
        return row
    try:
        _judge_cases(row, backend, rule, augment.reference, head)
        if augment.split is not None:
            _judge_test_split(row, backend, rule, augment.split, head)
            _judge_sweep_decisions(row, rule, augment.split)
            if not rule.judged_by_element:
                _judge_cut(row, backend, augment.split, augment, threads, registry)
        _judge_mean(row, rule, backend.mean_allowance, backend.mean_allowance_why)
        if backend.timed and backend.accepts(1, latency_seq) is None:
            row.latency_ms = _latency(backend, backend.spec.features, latency_seq)
            row.latency_shape = [1, latency_seq]
    except AttnExportError as e:  # a backend that cannot run this artefact: a failure, reported
        row.fail(str(e))
    finally:
        backend.close()
    return row


def _foreign_ops(artifact: Any) -> List[str]:
    """The operators of an ONNX artefact's graph outside ONNX's own domain (``com.microsoft.DynamicQuantizeLSTM``)."""
    graph = getattr(artifact, "graph", None)
    return sorted({f"{n.domain}.{n.op_type}" for n in graph.nodes if n.domain not in ("", "ai.onnx")}) if graph else []


class _Unjudged(AttnExportError):
    """A stream graph whose comparator (the whole-sequence graph of its precision) cannot be used."""


STREAM_CHUNK_1_MAX = 64  # one step at a time up to this length (every update is a run of both graphs)
STREAM_MAX_SEQ = 512  # longer sweep cases are left to the whole-sequence graph's verdict


def _judge_stream(row: TargetResult, backend: Backend, s: Store, target: Target, rule: Rule, augment: Augment,
                  threads: Optional[int], registry: Registry) -> None:
    """A stream graph on this runtime, over every schedule of every sweep case up to ``STREAM_MAX_SEQ``
    steps (chunk 1 up to ``STREAM_CHUNK_1_MAX``; a reduced precision within its deployment range), padding
    full of garbage, rows ending at different chunks: each row's answer once its sequence is complete
    against PyTorch's (reference.npz) within its precision's budget; every earlier update against the
    whole-sequence graph of the same precision (``model.onnx``, ``model.fp16.onnx``) run on that prefix by
    the same runtime, within the rule's floor plus twice its multiple of the complete row's intrinsic error
    (a prefix's own is not recorded; each of the two graphs may stray that far from the truth, so their
    difference twice as far; for FP32 that is a few ulps). One CaseResult per case and
    schedule. An INT8 stream, like an INT8 graph, by structure on the sweep cases under every schedule (every
    update finite), by its decisions on the streamed test split (``_judge_stream_split``), and by the sweep's
    decisions the split does not judge (``_judge_sweep_decisions``)."""
    from .streaming import SCHEDULES, replay, schedule

    spec, head, reference = backend.spec, backend.spec.head_output, augment.reference
    longest = min(STREAM_MAX_SEQ, rule.deployment_max_seq or STREAM_MAX_SEQ) if PRECISIONS[rule.precision].reduced \
        else STREAM_MAX_SEQ
    if not rule.judged_by_element:  # INT8: structure on every update, decisions on the streamed test split
        schedules: Dict[int, str] = {}
        for case, ref in zip(reference.cases, reference.references):
            batch, steps = case.x.shape[:2]
            if steps > longest:
                row.cases_not_run.append(f"{case.label}: longer than the {longest} steps streamed here")
                continue
            # the other schedules on the cases shorter than the test split's sequences, whose decisions they
            # judge (longer ones' are not: there each update's check is the split's schedule's alone)
            shorter = augment.split is not None and len(augment.split.lengths) and steps < augment.split.lengths.min()
            for name in SCHEDULES if shorter else (STREAM_SPLIT_SCHEDULE,):
                outside = _outside(backend, batch, schedule(name, steps))
                if outside is not None:
                    row.cases_not_run.append(f"{case.label} {name}: {outside}")
                    continue
                row.cases.append(_stream_structure(row, case, ref, backend, name))
                schedules[id(row.cases[-1])] = name
        if augment.split is not None:
            _judge_stream_split(row, backend, rule, augment.split)
            _judge_sweep_decisions(row, rule, augment.split, schedules)
            _judge_cut(row, backend, augment.split, augment, threads, registry, stream=True)
        return
    try:
        comparator = _whole(s, target, rule, threads, registry)
    except BadInput as e:  # missing, changed or stale: nothing to compare the earlier prefixes with
        raise _Unjudged(f"not judged: its earlier prefixes are compared with {ONNX_FILES[rule.precision]}, which "
                        f"cannot be used: {e}") from e
    row.compared_with = (comparator.name, comparator.artifact.name)
    try:
        whole = comparator.__enter__()
    except NotAvailable as e:  # its runtime cannot run here (an old ONNX Runtime): not a failure of the stream
        raise _Unjudged(f"not judged: its earlier prefixes are compared with {comparator.name} "
                        f"{comparator.artifact.name}, which cannot run here: {e}") from e
    try:
        for case, ref in zip(reference.cases, reference.references):
            batch, steps = case.x.shape[:2]
            if steps > longest:
                row.cases_not_run.append(f"{case.label}: longer than the {longest} steps streamed here")
                continue
            final_ref = np.asarray(ref.outputs[head], np.float64)
            intrinsic = _intrinsic(ref, rule, head, batch)  # [batch], the complete rows' own error
            runs: List[Tuple[str, List[Any]]] = []
            for name in SCHEDULES:
                if name == "chunk 1" and steps > STREAM_CHUNK_1_MAX:
                    continue
                outside = _outside(backend, batch, schedule(name, steps))  # an engine's chunk range
                if outside is not None:
                    row.cases_not_run.append(f"{case.label} {name}: {outside}")
                    continue
                runs.append((name, replay(backend.run_feeds, spec, case.x, case.lengths, schedule(name, steps))))
            prefixes = _prefix_answers(whole, case, [u for _, updates in runs for u in updates], head)
            for name, updates in runs:
                row.cases.append(_stream_case(row, case, final_ref, intrinsic, rule, name, updates, prefixes,
                                              whole.artifact.name, head))
    finally:
        whole.close()


def _outside(backend: Backend, batch: int, sizes: Sequence[int]) -> Optional[str]:
    """Why ``backend`` cannot take one of the chunks (or sequences) of ``sizes`` at ``batch`` (``replay`` feeds
    a chunk of no new step one step wide), or None: an engine's profile bounds the chunk from below too (found by review: only the
    widest chunk was checked, so an engine whose profile starts above 1 failed the widening schedule)."""
    return next((why for width in sorted({max(size, 1) for size in sizes})
                 if (why := backend.accepts(batch, width)) is not None), None)


def _whole(s: Store, target: Target, rule: Rule, threads: Optional[int], registry: Registry) -> Backend:
    """What a stream's earlier prefixes are compared with: the whole-sequence graph of the rule's precision
    on the same runtime; for a stream engine, the whole-sequence engine of that precision built here, or
    ONNX Runtime CPU on its ONNX graph when there is none (a GPU's sums differ from the CPU's by the GPU
    floor the rule already allows)."""
    runtime = target.backend
    if registry[runtime].kind == "engine":
        from .dispatch import find_engine

        engine = find_engine(s, rule.precision, True, [])
        if engine is not None:
            return get(runtime, registry)(engine, threads=threads)
        runtime = "ort-cpu"
    return get(runtime, registry)(s.open(ONNX_FILES[rule.precision], need="current"), threads=threads)


STREAM_SPLIT_SCHEDULE = "chunk 7"  # how an INT8 stream takes its cases and the test split: a prime, rows end mid-chunk


def _agreement(final: np.ndarray, final_ref: np.ndarray) -> Tuple[float, float, float]:
    """(largest relative error, cosine, argmax agreement) of a stream's complete answers with PyTorch's."""
    norm = float(np.linalg.norm(final_ref) * np.linalg.norm(final))
    cosine = float((final_ref * final).sum() / norm) if norm > 0 else float(np.array_equal(final_ref, final))
    agree = float((class_logits(final).argmax(1) == class_logits(final_ref).argmax(1)).mean())
    rel = float((np.abs(final - final_ref) / np.maximum(np.abs(final_ref), 1e-12)).max())
    return rel, cosine, agree


def _stream_structure(row: TargetResult, case: SweepCase, ref: Reference, backend: Backend, name: str) -> CaseResult:
    """One sweep case streamed by ``name`` (an INT8 stream): every update's outputs finite; the complete
    answers are measured against PyTorch's, and judged by their decisions on the test split."""
    from .streaming import replay, schedule, stream_run

    batch, steps = case.x.shape[:2]
    head = backend.spec.head_output
    updates = replay(stream_run(backend.run_feeds, row.target.precision), backend.spec, case.x, case.lengths,
                     schedule(name, steps))
    bad = [k + 1 for k, u in enumerate(updates) if not all(np.isfinite(v).all() for v in u.outputs.values())]
    problems = [f"{name}, update {bad[0]}: outputs hold NaN or Inf"] if bad else []
    final, final_ref = (np.asarray(o[head], np.float64) for o in (updates[-1].outputs, ref.outputs))
    rel, cosine, agree = _agreement(final, final_ref)
    result = CaseResult(batch, steps, case.padded, float(np.abs(final - final_ref).max()), rel, cosine, agree, 0.0,
                        not problems, problems, judged_by="structure")
    kept = class_logits(final).argmax(1) == class_logits(final_ref).argmax(1)
    result.rows = [(int(n), float(e), bool(k)) for n, e, k in zip(case.lengths, np.abs(final - final_ref).max(1), kept)]
    if problems:
        row.fail(f"{case.label} {problems[0]}")
    return result


def _judge_stream_split(row: TargetResult, backend: Backend, rule: Rule, split: TestSplit) -> None:
    """The stream's decisions on the real test split, every sequence streamed ``STREAM_SPLIT_SCHEDULE``
    (padding full of garbage): each answer once its sequence is complete, by the rule's decision limits,
    exactly as the whole-sequence graph of that precision is judged."""
    from .streaming import replay, schedule, stream_run

    head = backend.spec.head_output
    logits = None
    for index, case in split.batches:
        updates = replay(stream_run(backend.run_feeds, row.target.precision), backend.spec, case.x,
                         case.lengths, schedule(STREAM_SPLIT_SCHEDULE, case.x.shape[1]))
        final = np.asarray(updates[-1].outputs[head], np.float64)  # every row complete; later chunks keep it
        if logits is None:
            logits = np.zeros((len(split.y), final.shape[1]), np.float64)
        logits[index] = final
    assert logits is not None
    predicted = class_logits(logits).argmax(1)
    row.accuracy = float((predicted == split.y).mean())
    if split.reference_accuracy is not None:
        row.accuracy_delta = row.accuracy - split.reference_accuracy
    _judge_decisions(row, rule, split, logits, head)


PREFIX_BATCH = 64  # prefixes the whole-sequence graph answers in one run (measured on the quickstart, AMD Zen 3:
# one run per update, on the case's 1 to 6 rows, was 1,200 runs per runtime; packed, 50, and verify 42 s, not 66)


def _prefix_answers(whole: Backend, case: SweepCase, updates: Sequence[Any], head: str
                    ) -> Dict[Tuple[int, int], np.ndarray]:
    """The whole-sequence graph's answer (``head``) on each prefix a row of ``case`` is in the middle of after
    one of ``updates`` (begun, not complete), keyed (row, prefix length): each prefix run once, shortest first,
    up to ``PREFIX_BATCH`` in a run whose shape ``whole`` accepts, the run filled up to the smallest batch it
    takes (an engine's profile may start above 1: found by review) with its last prefix again; each row's
    steps past its prefix are its padding, which the graph must ignore (the sweep's padded cases judge that)."""
    wanted = sorted({(int(t), b) for u in updates for b, t in enumerate(u.seen) if 0 < t < case.lengths[b]})
    largest = max(PREFIX_BATCH, case.x.shape[0])

    def batch_for(n: int, width: int) -> Optional[int]:  # the smallest batch of n prefixes or more it accepts
        return next((size for size in range(n, largest + 1) if whole.accepts(size, width) is None), None)

    answers: Dict[Tuple[int, int], np.ndarray] = {}
    while wanted:
        n = 1
        while n < min(PREFIX_BATCH, len(wanted)) and batch_for(n + 1, wanted[n][0]) is not None:
            n += 1
        group, wanted = wanted[:n], wanted[n:]
        width = group[-1][0]
        run = group + group[-1:] * ((batch_for(n, width) or n) - n)  # refused, the run says why
        out = whole.run_feeds({"x": np.ascontiguousarray(case.x[[b for _, b in run], :width]),
                               "lengths": np.array([t for t, _ in run], np.int64)})
        answers.update(((b, t), v) for (t, b), v in zip(group, np.asarray(out[head], np.float64)))
    return answers


def _stream_case(row: TargetResult, case: SweepCase, final_ref: np.ndarray, intrinsic: np.ndarray, rule: Rule,
                 name: str, updates: List[Any], prefixes: Dict[Tuple[int, int], np.ndarray], whole: str,
                 head: str) -> CaseResult:
    """One case and schedule of ``_judge_stream``: every update's rows that completed against PyTorch, the
    others that began against the whole-sequence graph (``whole``) on their prefix (``_prefix_answers``);
    cosine and argmax agreement of the completed answers with PyTorch's."""
    batch, steps = case.x.shape[:2]
    worst, worst_abs, problems = 0.0, 0.0, []  # type: float, float, List[str]
    on_prefix = False  # whether the problem kept is against the whole-sequence graph (``_comparators_failed``)
    final = np.zeros_like(final_ref)
    for k, update in enumerate(updates):
        got = np.asarray(update.outputs[head], np.float64)
        ending = update.seen == case.lengths
        middle = (update.seen > 0) & ~ending
        expected = np.where(ending[:, None], final_ref, 0.0)
        budget = _budget(rule, final_ref, intrinsic, None)
        if middle.any():  # each graph may stray one budget from the truth: their difference twice as far
            mid = np.stack([prefixes[(b, int(t))] if middle[b] else np.zeros(final_ref.shape[1])
                            for b, t in enumerate(update.seen)])
            expected = np.where(middle[:, None], mid, expected)
            budget = np.where(middle[:, None], _budget(rule, mid, 2 * intrinsic, None), budget)
        final = np.where(ending[:, None], got, final)
        diff = np.where((ending | middle)[:, None], np.abs(got - expected), 0.0)
        ratios = _ratio(diff, budget)
        worst_abs = max(worst_abs, float(diff.max()))
        if float(ratios.max()) > max(worst, 1.0):
            on_prefix = not ending[int(np.argmax(ratios.max(1)))]
            against = f"{whole} on the prefix" if on_prefix else "PyTorch"
            problems = [f"{name}, update {k + 1} (prefixes {update.seen.tolist()}): {float(ratios.max()):.2f} x its "
                        f"budget against {against}"]
        worst = max(worst, float(ratios.max()))
    rel, cosine, agree = _agreement(final, final_ref)
    result = CaseResult(batch, steps, case.padded, worst_abs, rel, cosine, agree, 0.0, worst <= 1.0, problems,
                        judged_by="budget", ratio=worst)
    if not result:
        row.fail(f"{case.label} {problems[0]}")
        row.prefix_failed = row.prefix_failed or on_prefix
    return result


# what a passed cell of a precision run one sequence at a time (``Precision.per_row``) was judged on
ONE_BY_ONE = ("one sequence at a time, as predict runs it: a batch shares one quantisation scale, and a padded "
              "batch is not what was judged")


def _conformance(s: Store, rows: List[TargetResult], registry: Registry) -> List[ConformanceCell]:
    """Every ONNX runtime with a row (run, carried or skipped) x every ONNX artefact in DIR. A pairing verify
    does not judge (a runtime that does not run that precision) is still tried for reading, so the table says
    why; a runtime this verify did not run (unavailable, or opt-in and not named) is "not run", with the
    reason its skipped row gives."""
    by_pair = {(r.target.backend, r.target.artifact): r for r in rows}
    # a backend that ran nothing: its one skipped row without an artefact (opt-in and not named, say)
    not_asked = {r.target.backend: r.reason for r in rows if r.status == "skipped" and r.target.artifact is None}
    # a backend whose every result was carried did not run now: a file it would judge but has no row for was
    # not judged by it ("not run"), never "reads it; not judged"
    ran_now = {r.target.backend for r in rows if r.status != "skipped" and not r.carried_from}
    files = [(p, f) for p, f in ONNX_FILES.items() if (s.directory / f).is_file()]
    files += [(p, f) for p, f in STREAM_FILES.items() if (s.directory / f).is_file()]
    cells = []
    for name in dict.fromkeys(r.target.backend for r in rows):
        cls = registry.get(name)
        if cls is None or cls.kind != "onnx":
            continue
        reason = cls.available() or not_asked.get(name)
        for precision, artifact in files:
            if cls.computes is not None and artifact != ONNX_FP32:
                continue
            row = by_pair.get((name, artifact))
            judged = cls.computes or precision
            carried = row.carried_from if row is not None else None
            if row is not None and row.status != "skipped" and row.unreadable is not None:
                cells.append(ConformanceCell(name, artifact, judged, "cannot read", row.unreadable,
                                             carried_from=carried))
            elif row is not None and row.status != "skipped":
                failing = next((c for c in row.cases + row.test_cases if not c.passed), None)
                detail = (f"{failing.batch}x{failing.seq}{' padded' if failing.padded else ''}: {failing.problems[0]}"
                          if failing is not None else row.problems[0] if row.problems
                          else ONE_BY_ONE if one_by_one(precision) else None)
                cells.append(ConformanceCell(name, artifact, judged, row.status, detail, row.worst_ratio, carried))
            elif reason is not None:
                cells.append(ConformanceCell(name, artifact, judged, "not run", reason))
            elif row is not None and row.unreadable is not None:
                cells.append(ConformanceCell(name, artifact, judged, "cannot read", row.unreadable))
            elif name not in ran_now and precision in cls.precisions:
                cells.append(ConformanceCell(name, artifact, judged, "not run",
                                             f"{name} did not run in this verify (its results here are carried over "
                                             f"from an earlier one, which did not judge {artifact}): name it in "
                                             "--backends"))
            else:
                try:
                    opened = s.open(artifact, need="current")
                except BadInput as e:
                    cells.append(ConformanceCell(name, artifact, judged, "not run", str(e)))
                    continue
                unread = cls.unreadable(opened)
                cells.append(ConformanceCell(name, artifact, judged, "cannot read" if unread else "reads",
                                             unread or f"reads it; {name} is not judged on {precision}"))
    return cells


def _attention_samples(split: TestSplit, rows: List[TargetResult], head: str) -> Dict[str, Any]:
    by_target = {f"{r.target.backend} {r.target.artifact}": [r.attention[i] for i in split.samples]
                 for r in rows if r.attention}
    if split.references is not None:
        reference = _scatter(len(split.y), split.batches, [r.outputs for r in split.references], head)
        by_target = {"reference (torch-cpu FP32)": [reference["attention"][i].tolist() for i in split.samples],
                     **by_target}
    return {"indices": split.samples, "lengths": [int(split.lengths[i]) for i in split.samples],
            "labels": [split.y[i].item() for i in split.samples], "by_target": by_target}  # a class index or a target


def _unjudged(s: Store, rows: List[TargetResult]) -> List[str]:
    """The reason of every ONNX file or engine in DIR that is not current and that no failed row names, a
    recorded file that is gone included (``Store.lacking``; found by attacking: verify said PASSED and nothing
    of a deleted verified graph)."""
    failed = {r.target.artifact for r in rows if r.status == "failed"}
    names = [n for n in s.present() + s.lacking() if (n.endswith(".onnx") or store.is_engine(n)) and n not in failed]
    return [str(t.reason) for t in (s.state(n) for n in names) if not t.current]


def _verdicts(rows: List[TargetResult], overrides: List[str], verify_sha: str,
              registry: Registry, info: ModelInfo) -> Dict[str, Dict[str, Any]]:
    """Each verified artefact's ``verified`` entry: passed on every backend that ran it at its own precision,
    tied to the sha256 of the bytes those backends ran and to the recipe's settings it was judged under
    (``ModelInfo.judged_under``) (a backend computing in a precision of its own,
    OpenVINO's bf16, judges its execution, not the file: its rows stay in verify.json and the conformance
    table). An artefact whose rows saw different bytes gets no verdict."""
    by_artifact: Dict[str, List[TargetResult]] = {}
    for row in rows:
        cls = registry.get(row.target.backend)  # a failure carried from a backend this side lacks still counts
        if row.status != "skipped" and row.target.artifact and (cls is None or cls.computes is None):
            by_artifact.setdefault(str(row.target.artifact), []).append(row)
    verdicts = {}
    for name, group in by_artifact.items():
        seen = {r.sha256 for r in group}
        if len(seen) != 1 or None in seen:
            continue
        accuracies = [r.accuracy for r in group if r.accuracy is not None]
        decisions = [r for r in group if r.accuracy is not None and r.target.precision in PRECISIONS
                     and PRECISIONS[str(r.target.precision)].judged_by == "decisions"]
        verdicts[name] = {
            "passed": all(r.status == "passed" for r in group),
            "sha256": seen.pop(),
            "verify_sha256": verify_sha,
            "backends": [r.target.backend for r in group],
            "failed_backends": [r.target.backend for r in group if r.status == "failed"],
            "accuracy": accuracies[0] if accuracies else None,
            "overrides": overrides,
            "carried_backends": [r.target.backend for r in group if r.carried_from],
            "settings": info.judged_under(str(group[0].target.precision)),
        }
        if decisions:  # judged on the split cut short (or said why not) by every row that judged its decisions
            verdicts[name]["cut"] = all(_cut_judged(r.cut, r.cases_not_run) for r in decisions)
    return verdicts


def _verdicts_before_the_cut(s: Store) -> List[str]:
    """The files whose manifest verdict is an INT8 pass judged before verify judged INT8 on the split cut short
    (no ``cut`` in it; found by review: with ``verify.json`` deleted, such a pass stood through a later verify
    of other backends)."""
    return [name for name in s.present() if (entry := s.entry(name) or {}).get("precision") in PRECISIONS
            and PRECISIONS[entry["precision"]].judged_by == "decisions"
            and ((entry.get("verified") or {}).get("passed") is True) and entry["verified"].get("cut") is not True]


# what must be the same for an earlier row to be carried: the reference and every setting that decides pass or
# fail (verify.json's keys), each named as a reader would
CARRY_SETTINGS = {"reference": "reference (reference.npz, its source or the test split)", "tolerances": "tolerances",
                  "overrides": "--set overrides", "deployment_max_seq": "deployment range", "sweep": "sweep",
                  "test_split": "test split"}


def asked_backends(backends: Union[str, List[str], None], registry: Registry) -> Set[str]:
    """The backends a run was asked to run: the ones named, or with ``auto`` every one but the opt-in ones
    (``targets.discover`` lists those as skipped: a run that did not ask for them)."""
    names = parse_backends(backends, registry)
    return set(names) if names is not None else {n for n, cls in registry.items() if cls.opt_in is None}


def _plain(value: Any) -> Any:
    """``value`` as verify.json holds it (tuples as lists), to compare with what an earlier file holds."""
    return json.loads(json.dumps(value))


def _carry_problem(s: Store, row: TargetResult) -> Optional[str]:
    """Why an earlier result no longer describes this directory (the store's answers); None when it does."""
    name = row.target.artifact
    if not name or row.sha256 is None:
        return "it records no sha256 of the bytes it ran"
    problem = s.measured(name, row.sha256) or s.judged(name, VERIFY_JSON)
    verdict = (s.entry(name) or {}).get("verified") or {}
    if problem is None and row.status == "passed" and row.target.backend in (verdict.get("failed_backends") or []):
        return f"it says passed, but {MANIFEST_FAILED} on {row.target.backend}"
    return problem


def carry(s: Store, new: VerifyResult, asked: Set[str], registry: Registry,
          judges_data: bool = True) -> Tuple[List[TargetResult], List[str]]:
    """The results of the earlier ``verify.json`` (still on disk: read through ``s`` before the new one is
    written) that ``new`` may carry over, and one line for each earlier result that it may not, with the
    reason. Skipped rows measured nothing and are never carried (this run's skipped rows say what it
    skipped). A result is carried only when the earlier file is current (``Store.recorded_from``: a verdict
    in the manifest was recorded from it) and the store says its artefact is still the bytes it ran, with a
    verdict recorded from that file (``_carry_problem``); then a pass is carried when its backend is not in
    ``asked`` and it was judged against the same reference with the same settings (``CARRY_SETTINGS``).
    A failure on those bytes stands whatever the settings, and whether or not this attn-export knows its
    backend (a device has no onnx-ref), until its backend runs it again (``merge``): a verify that did not
    re-run what failed cannot clear it. A result of a backend whose arithmetic is the CPU's judged on another
    CPU (``recommend.judged_elsewhere``), pass or failure, is not carried. On a side that cannot judge
    decisions (``judges_data`` False: a device, which never has the test split) a pass judged on the test
    split is carried like a failure, so that the host's verdict stands over a pass on structure alone
    (``merge``). An INT8 pass judged before verify judged INT8 on the split cut short (``_before_the_cut``) is
    never carried."""
    try:
        data = s.read(VERIFY_JSON)
        if data is None:
            return [], []
        earlier = store.parse_json(data, s.directory / VERIFY_JSON, schema.VERIFY)
    except BadInput as e:  # damaged, edited, not a regular file: this run's rows stand alone
        return [], [f"the earlier {VERIFY_JSON} was not read, nothing carried from it: {e}"]
    results = [d for d in earlier.get("results") or [] if d["status"] != "skipped"]
    passes = [d for d in results if d["backend"] not in asked and d["status"] == "passed"]
    # what stands whatever the settings: failures, and on a device the passes judged on the test split
    sticky = [d for d in results if d["status"] == "failed"
              or (not judges_data and d["status"] == "passed" and d.get("accuracy") is not None
                  and d.get("precision") in PRECISIONS and PRECISIONS[d["precision"]].judged_by == "decisions")]
    passes = [d for d in passes if d not in sticky]
    uncut = [d for d in passes + sticky if _before_the_cut(d)]
    passes, sticky = [d for d in passes if d not in uncut], [d for d in sticky if d not in uncut]
    uncut_line = [f"{len(uncut)} earlier INT8 pass(es) of {', '.join(dict.fromkeys(d['backend'] for d in uncut))} not "
                  f"carried: judged before verify judged INT8 on {CUT_SHORT} (an older attn-export); a verify "
                  "with the recipe's training data judges them again"] if uncut else []
    if not passes and not sticky:
        return [], uncut_line
    if not s.recorded_from(VERIFY_JSON):
        candidates = passes + [d for d in sticky if d["backend"] not in asked]
        backends = ", ".join(dict.fromkeys(d["backend"] for d in candidates))
        return [], [f"{len(candidates)} earlier result(s) of {backends} not carried: no verdict in {store.MANIFEST} "
                    f"was recorded from the earlier {VERIFY_JSON} (it is stale, or from another directory)"] \
            + uncut_line if candidates else uncut_line
    created = earlier.get("created")
    mine = new.to_dict()
    changed = [what for key, what in CARRY_SETTINGS.items() if _plain(mine[key]) != earlier.get(key)]
    if not isinstance(created, str) or not (earlier.get("reference") or {}).get("sha256"):
        why = f"the earlier {VERIFY_JSON} records no time or reference sha256 (an older attn-export wrote it)"
    else:
        why = f"it was judged with other settings than this run's: {', '.join(changed)}" if changed else ""
    rows, dropped = [], list(uncut_line)
    # a row this run measured again replaces the earlier one (merge): an earlier one that cannot be carried
    # is not news then (a failure of a stale file, which records no bytes, read "not carried" beside the pass)
    remeasured = {(r.target.backend, r.target.artifact) for r in new.results if r.status != "skipped"}
    if why and passes:
        backends = ", ".join(dict.fromkeys(d["backend"] for d in passes))
        dropped.append(f"{len(passes)} earlier result(s) of {backends} not carried: {why}")
    for d in sticky + ([] if why else passes):
        row = TargetResult.from_dict(d)
        known = row.target.backend in registry
        # a result of a backend whose arithmetic is the CPU's holds on the CPU it names only: a failure there is
        # not this CPU's either (found by review: another CPU's failure failed a verify that never named it)
        elsewhere = judged_elsewhere(d)
        problem = ("its backend is not one this attn-export knows" if not known and row.status == "passed"
                   else _carry_problem(s, row) or (f"{elsewhere}; verify it here: "
                                                   f"{verify_by_name(s, row.target.backend)}" if elsewhere else None))
        if problem is not None:
            if (row.target.backend, row.target.artifact) not in remeasured:
                dropped.append(f"{row.target.label} not carried: {problem}")
            continue
        row.carried_from = row.carried_from or (created if isinstance(created, str) else "an earlier verify")
        rows.append(row)
    return rows, dropped


def _before_the_cut(d: Mapping[str, Any]) -> bool:
    """An earlier pass judged by its decisions on the test split by an attn-export that did not judge them on
    the split cut short (no ``cut``, and no line saying why not): it passed a file whose error is larger
    everywhere (found by review: such passes were carried, and the directory said PASSED)."""
    return (d["status"] == "passed" and d.get("precision") in PRECISIONS
            and PRECISIONS[d["precision"]].judged_by == "decisions" and d.get("accuracy") is not None
            and not _cut_judged(d.get("cut"), d.get("cases_not_run") or []))


def _cut_judged(cut: Optional[Dict[str, Any]], not_run: Sequence[str]) -> bool:
    """Whether a row judged INT8 on the split cut short (``cut``), or said why it could not (``not_run``)."""
    return cut is not None or any(str(n).startswith(CUT_SHORT) for n in not_run)


def merge(new: List[TargetResult], carried: List[TargetResult], order: Sequence[str]) -> Tuple[List[TargetResult],
                                                                                                   List[str]]:
    """This run's rows and the carried ones, in the registry's order of backends, and a line for each earlier
    failure that stands over this run's row. A carried result of a pair this run measured gives way to the
    new row, unless that row could judge less: a result judged by its decisions on the test split, pass or
    failure, is not replaced by a pass without them (a device never has the data: the host's verdict stands). A
    backend with carried results (one not asked for) loses this run's skipped rows: an opt-in one's "name
    it" beside its result."""
    ran = {(r.target.backend, r.target.artifact): r for r in new if r.status != "skipped"}
    kept, notes = [], []
    for r in carried:
        now = ran.get((r.target.backend, r.target.artifact))
        if now is None:
            kept.append(r)
        elif now.status == "passed" and now.accuracy is None and r.accuracy is not None:
            r.structure_here = True
            kept.append(r)
            if r.status == "failed":
                    notes.append(f"{r.target.label}: its failure on the test split (from the verify of "
                             f"{r.carried_from}) stands: this run judged it without the test split")
    shadowed = {(r.target.backend, r.target.artifact) for r in kept}
    measured = {r.target.backend for r in kept}
    rank = {name: i for i, name in enumerate(order)}
    rows = [r for r in new if (r.target.backend, r.target.artifact) not in shadowed
            and (r.target.backend not in measured or r.status != "skipped")] + kept
    return sorted(rows, key=lambda r: rank.get(r.target.backend, len(rank))), notes


def _carried_samples(s: Store, samples: Optional[Dict[str, Any]], rows: List[TargetResult]) -> None:
    """The attention of the carried rows, from the earlier verify.json, where it holds the same sequences."""
    if samples is None or not any(r.carried_from for r in rows):
        return
    earlier = (store.parse_json(s.read(VERIFY_JSON) or b"", s.directory / VERIFY_JSON, schema.VERIFY)
               .get("attention_samples"))
    if not earlier or any(earlier[k] != _plain(samples[k]) for k in ("indices", "lengths", "labels")):
        return
    for r in rows:
        key = f"{r.target.backend} {r.target.artifact}"
        if r.carried_from and key in earlier["by_target"]:
            samples["by_target"][key] = earlier["by_target"][key]


def none_runs(targets: List[Target]) -> str:
    """One line for "nothing here can run": what to install, then why, each reason once with the backends it
    stops (a Jetson bundle without ONNX Runtime made a 2,400-character line: every backend x file)."""
    stopped: Dict[str, List[str]] = {}
    for t in targets:
        reason = printable(re.split(r" \(|; ", str(t.skip), maxsplit=1)[0], 80)
        if t.backend not in stopped.setdefault(reason, []):
            stopped[reason].append(t.backend)
    return ("no backend can run here; expected: a TensorRT engine built on this device (TensorRT from JetPack on a "
            f"Jetson), or {INSTALL_ONNX_RUNTIME} ("
            + "; ".join(f"{', '.join(backends)}: {reason}" for reason, backends in stopped.items()) + ")")


def _none_ran(rows: List[TargetResult]) -> str:
    """One line for "every runnable target was refused by its runtime when opened": each backend's first
    reason, with how many files it refused (found by attacking: ONNX Runtime 1.11 refused every graph, and the
    failures verify recorded stood after an upgrade)."""
    refused: Dict[str, List[TargetResult]] = {}
    for r in rows:
        if r.not_here:
            refused.setdefault(r.target.backend, []).append(r)
    return "no backend could run anything here: " + " | ".join(
        f"{backend}: {said[0].reason}" + (f" (and {len(said) - 1} more files alike)" if len(said) > 1 else "")
        for backend, said in refused.items())


def recorded_reference(s: Store, targets: List[Target]) -> ReferenceSet:
    """``reference.npz``, current in the store (made from the recorded weights, as the graphs were), its
    contents checked (``read_reference``), holding the budgets the targets' precisions need."""
    opened = s.open(store.REFERENCE, need="current")
    reference = read_reference(opened.data, opened.path)
    if reference.meta.get("source_sha256") != opened.entry.get("parent_sha256"):
        raise DataError(f"{opened.path} was not made with {store.ONNX_FP32}: it records weights "
                        f"{str(reference.meta.get('source_sha256'))[:12]}, its manifest entry (and the graph's) "
                        f"{str(opened.entry.get('parent_sha256'))[:12]}; expected the two files one attn-export export "
                        f"wrote (run {store.made_by(store.REFERENCE, s.hinted())})")
    budgeted = {str(t.precision) for t in targets if t.skip is None and t.precision in PRECISIONS
                and PRECISIONS[str(t.precision)].judged_by == "budget"}
    for precision in sorted(budgeted):
        reference.require_intrinsic(precision, opened.path, s.hinted())
    return reference


@store.writes_directory("verify")
def verify(
    directory: Path,
    backends: Union[str, List[str], None] = "auto",
    threads: Optional[int] = 1,
    progress: Optional[Callable[[str, int, int], None]] = None,
    overrides: Sequence[str] = (),
    registry: Optional[Mapping[str, Type[Backend]]] = None,
    augment: Optional[Callable[[Store, ModelInfo, List[Target], ReferenceSet], Augment]] = None,
) -> VerifyResult:
    """Verify every runnable target in DIR; write verify.json and the manifest verdicts; return the result.

    ``overrides`` (``verify.key=value``) change the recipe's ``[verify]`` table for this run; those that
    applied (a key's last) are recorded in verify.json and in each verdict. ``registry`` and ``augment`` are the host's (more backends,
    live PyTorch cases, the test split). Raises nothing for a failed comparison: the caller reads
    ``result.passed`` (the CLIs exit 1)."""
    from .backends import REGISTRY

    check_threads(threads)
    table = dict(REGISTRY if registry is None else registry)
    started = time.perf_counter()
    s = Store(directory)
    info = s.model()
    spec = info.spec
    cfg = override_section(info.verify, "verify", overrides)
    overrides = applied_overrides(overrides)  # of a key given twice, the value that applied is recorded
    deploy = deployment_max_seq(info, cfg)
    targets = discover(s, backends, table)
    if not any(t.skip is None for t in targets):
        raise NotAvailable(none_runs(targets))
    recorded = recorded_reference(s, targets)
    # the host's live cases reach this verify's deployment range (its --set overrides applied)
    extra = (augment(s, replace(info, verify=cfg), targets, recorded) if augment is not None else
             Augment(recorded, None, DEVICE_SPLIT, store.REFERENCE, split_expected=False))
    latency_seq = int((info.train_lengths or {}).get("median", 16))

    rows = []
    runnable = sum(1 for t in targets if t.skip is None)
    for target in targets:
        if target.skip is not None:
            trust = s.state(target.artifact) if target.artifact else None
            flagged = f"{trust.reason}; and " if trust is not None and trust.reason else ""
            rows.append(TargetResult(target, status="skipped", reason=flagged + target.skip))
            continue
        if progress:  # what is being checked, how many are done, of how many
            progress(target.label, sum(1 for r in rows if r.status != "skipped"), runnable)
        rule = rule_for(str(target.precision), cfg, table[target.backend].device, deploy)
        row = _run_target(s, target, rule, extra, latency_seq, threads, table)
        if row.status == "failed" and (row.cases or row.test_cases) and not (row.cut and row.cut["own"]):
            keys = PRECISIONS[rule.precision].verify_keys
            if len(row.problems) == 1 and (row.mean_ratio or 0.0) > (row.mean_allowed or float("inf")):
                keys = ("mean_budget_multiple",)  # the mean alone failed it (found by a user: the others were named)
            row.hint = " or ".join(f"--set verify.{k}=..." for k in keys) + " moves this verdict"
        rows.append(row)
    if any(r.not_here for r in rows) and all(r.status == "skipped" for r in rows):
        raise NotAvailable(_none_ran(rows))  # as when none is installed: nothing judged here, so no verdict
    _comparators_failed(rows)
    split = extra.split
    result = VerifyResult(
        passed=False,  # decided below, from the rows merged with the carried ones
        reference={"backend": "torch-cpu", "precision": "fp32", "source": extra.source,
                   "accuracy": split.reference_accuracy if split else None,
                   "test_split": split.source if split else extra.split_reason,
                   "sha256": s.sha256(store.REFERENCE)},
        results=rows,
        conformance=[],
        tolerances={**{p: rule_for(p, cfg, "cpu", deploy).to_dict() for p in PRECISIONS},
                    tolerance_key("fp32", "cuda"): rule_for("fp32", cfg, "cuda", deploy).to_dict()},
        overrides=list(overrides),
        recipe_settings=not_default(info.verify, overrides),
        deployment_max_seq=deploy,
        budget={"intrinsic": extra.reference.meta.get("intrinsic"), "rule": BUDGET_RULE},
        sweep={"cases": len(extra.reference.cases),
               "shapes": sorted({(int(c.x.shape[0]), int(c.x.shape[1])) for c in extra.reference.cases}),
               "padded": sum(c.padded for c in extra.reference.cases)},
        test_split=None if split is None else {"sequences": len(split.y), "batch": int(split.batches[0][1].x.shape[0]),
                                               "min_length": int(split.lengths.min()),
                                               "max_length": int(split.lengths.max())},
        attention_samples=None if split is None else _attention_samples(split, rows, spec.head_output),
        latency={"batch": 1, "seq": latency_seq, "threads": threads},
        seconds=round(time.perf_counter() - started, 2),
        untrusted=[],
        tensorrt=summary(readiness(graphs_of(s), list(TENSORRT_TARGETS), not_current(s))),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    # a backend asked for but not run here (not installed) replaced nothing: its earlier results may be carried
    ran = {r.target.backend for r in rows if r.status != "skipped"}
    judges_data = extra.split is not None or extra.split_expected
    carried, result.not_carried = carry(s, result, asked_backends(backends, table) & ran, table, judges_data)
    for r in carried:  # the host's measured decisions, under this run's limits: a --set here moves them too
        if r.status == "passed" and r.accuracy is not None and r.target.backend in table and r.target.precision:
            _decision_limits(r, rule_for(str(r.target.precision), cfg, table[r.target.backend].device, deploy))
    result.results, standing = merge(rows, carried, list(table))
    rows = result.results = [_decisions_unjudged(r, s) if info.labels else _without_classes(r, info)
                             for r in result.results]
    result.not_carried += standing
    _carried_samples(s, result.attention_samples, rows)
    unresolved = _unresolved(s, rows)
    result.standing = [f"{b} {name}: {MANIFEST_FAILED} on these bytes and no row of this verify says otherwise; it "
                       f"stays failed until {b} judges it again" + _not_judged_now(rows, name, b)
                       for name, b in unresolved]
    result.not_carried += result.standing
    result.passed = all(r.status != "failed" for r in rows) and not unresolved
    result.conformance = _conformance(s, rows, table)
    result.untrusted = _unjudged(s, rows)
    data = store.json_bytes(result.to_dict())
    store.write_bytes(directory / VERIFY_JSON, data)
    verdicts: Dict[str, Optional[Dict[str, Any]]] = dict(
        _verdicts(rows, list(overrides), hashlib.sha256(data).hexdigest(), table, info))
    for name, b in unresolved:
        verdict = verdicts.get(name)
        if verdict is not None:
            verdict["passed"] = False
            verdict["failed_backends"].append(b)
    for name in _verdicts_before_the_cut(s):  # not judged now: an INT8 pass from before the cut no longer stands
        verdicts.setdefault(name, None)
    if not info.labels:  # no decisions to judge INT8 by: an earlier verdict (an older verify's) no longer stands
        verdicts.update({str(r.target.artifact): None for r in rows if r.reason == _no_decisions_reason(
            str(r.target.precision), info)})
    store.record_verdicts(directory, verdicts)
    return result


MANIFEST_FAILED = f"the verdict in {store.MANIFEST} recorded it failed"


def _comparators_failed(rows: List[TargetResult]) -> None:
    """A stream row failed against its whole-sequence graph on a prefix while that graph failed in this verify
    too: the hint names it as what to fix first, not the budgets (found by attacking: an untouched stream
    graph read as failed beside a damaged ``model.fp16.onnx``, with nothing saying which was at fault)."""
    failed = {(r.target.backend, r.target.artifact) for r in rows if r.status == "failed"}
    for row in rows:
        if row.status == "failed" and row.prefix_failed and row.compared_with in failed:
            backend, whole = row.compared_with
            row.hint = (f"{whole}, which its earlier updates are compared with, failed on {backend} in this verify "
                        f"too: fix {whole} first, then verify again")


def _no_decisions_reason(precision: str, info: ModelInfo) -> str:
    return (f"not judged: {precision} is judged by its decisions (argmax agreement and accuracy on the test split), "
            f"and a model with {'no' if info.head == 'none' else 'a ' + info.head} head has none: its element error "
            f"is not bounded (deploy FP32 or FP16, judged by their error budgets)")


def _no_decisions(target: Target, info: ModelInfo) -> TargetResult:
    """A target of a precision judged by its decisions, for a model without classes: skipped, said why (shapes,
    finiteness and zero attention on padding alone passed an INT8 graph whose outputs were noise)."""
    return TargetResult(target, status="skipped", reason=_no_decisions_reason(str(target.precision), info))


def _without_classes(row: TargetResult, info: ModelInfo) -> TargetResult:
    """For a model without classes, ``row`` unless it is a pass of a precision judged by its decisions (carried
    from an earlier verify that judged it on structure alone): that one is not judged either."""
    precision = PRECISIONS.get(str(row.target.precision))
    if row.status != "passed" or precision is None or precision.judged_by != "decisions":
        return row
    return _no_decisions(row.target, info)


def _decisions_unjudged(row: TargetResult, s: store.Store) -> TargetResult:
    """``row``, or, for a pass on structure alone of an ONNX file of a precision judged by its decisions on the
    test split (INT8 on a device, which has no data; or such a pass carried from an earlier device verify), a
    skipped row saying so: such a pass records no verdict, as on the host without the split. Where the host's
    verdict for those bytes stands, ``merge`` kept its row instead. An engine built on the device is judged by
    structure as before: no host ever judges it, and its ONNX parent's verdict is the host's."""
    if row.status != "passed" or row.accuracy is not None or row.target.precision is None \
            or store.is_engine(str(row.target.artifact)):
        return row
    precision = str(row.target.precision)
    if precision not in PRECISIONS or PRECISIONS[precision].judged_by != "decisions":
        return row
    if row.carried_from:
        return TargetResult(row.target, status="skipped", reason=(
            f"not judged: {precision} is judged by its decisions on the test split, and this pass (carried from "
            f"the verify of {row.carried_from}) was judged on structure alone: run attn-export verify on the host"))
    if row.target.backend in s.verified_on(str(row.target.artifact)):  # the manifest's pass, without its row
        again = ("unpack the bundle's .tar.gz again to carry its figures" if s.in_bundle() else
                 "run attn-export verify with the test split to judge it again")
        return TargetResult(row.target, status="skipped", reason=(
            f"not judged here: {precision} is judged by its decisions on the test split, which only the host has; "
            f"the host's pass for these bytes stands ({store.MANIFEST}), but {VERIFY_JSON} here has no row of it "
            f"(its structure on the sweep passed here): {again}"))
    return TargetResult(row.target, status="skipped", reason=(
        f"not judged: {precision} is judged by its decisions on the test split, which only the host has, and "
        f"no verdict of the host's stands for these bytes (its structure on the sweep passed here): run "
        f"attn-export verify on the host, then bundle again"))


def _not_judged_now(rows: List[TargetResult], name: str, backend: str) -> str:
    """Why ``backend``'s row of ``name`` in this verify was skipped ("" when it has none): the failure it leaves
    standing is then said with what would judge it (found by attacking: a device's INT8 Q/DQ, run here but
    judged by the host's decisions only, "stays failed until ort-cpu runs it again" after ort-cpu ran it)."""
    reason = next((r.reason for r in rows if r.status == "skipped" and r.target.backend == backend
                   and str(r.target.artifact) == name and r.reason), None)
    return f" ({backend} did not judge it now: {reason})" if reason else ""


def _unresolved(s: Store, rows: List[TargetResult]) -> List[Tuple[str, str]]:
    """(file, backend) for each failure the manifest's verdict records on the bytes here that no row of this
    verify answers (measured now or carried): a verify.json edited by hand, or a stale one, cannot clear it."""
    out = []
    for name in dict.fromkeys(str(r.target.artifact) for r in rows if r.status != "skipped" and r.target.artifact):
        verdict = (s.entry(name) or {}).get("verified") or {}
        if verdict.get("passed") is False and verdict.get("sha256") == s.sha256(name):
            answered = {r.target.backend for r in rows if r.target.artifact == name and r.status != "skipped"}
            out += [(name, b) for b in verdict.get("failed_backends") or [] if b not in answered]
    return out
