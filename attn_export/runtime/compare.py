"""Comparing a backend's outputs with the reference, and the sweep of inputs every comparison uses.

Each output row (one sequence) is judged against a **budget** derived from the model itself:

    |got - ref| <= atol + rtol * |ref| + multiple * intrinsic[row]

where ``intrinsic[row]`` is the largest distance from the FP32 reference that the *same model* computed at
the artefact's precision showed on that row (``attn_export.intrinsic``: FP16 rounding realisations for
FP16, float64 for FP32). The floor (atol, rtol) covers outputs whose intrinsic error happens to be tiny;
the multiple covers an implementation that rounds differently. The budget grows with sequence length and
logit scale exactly as the precision's error does, on any machine's weights.

A row is in the **deployment range** when its length is at most the rule's ``deployment_max_seq`` (the
training lengths and the ``[build]`` profile): there the budget is the verdict. Beyond it (the stress
range, reduced precision only) error growth is reported and the row is judged by what matters there:
finite outputs, exactly zero attention on padding, and the same argmax wherever the reference's margin
between its two largest logits exceeds twice the row's budget (a smaller margin is a near tie that the
precision may honestly flip). A rule without ``atol`` (INT8) judges structure only here: shapes, finite
values, zero attention on padding; its decisions are judged on the real test split by ``verify``, and so
are its sweep decisions at lengths the test split lacks, against the file's own error where it has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .iospec import class_logits, top_margin
from .settings import DEPLOY_CASES_MAX

__all__ = ["CaseResult", "Reference", "Rule", "SweepCase", "compare_case", "half_step", "rule_for", "sweep_cases",
           "unmeasured"]


@dataclass(frozen=True)
class SweepCase:
    x: np.ndarray  # float32 [B, T, F]
    lengths: np.ndarray  # int64 [B]
    padded: bool

    @property
    def feeds(self) -> Dict[str, np.ndarray]:
        return {"x": self.x, "lengths": self.lengths}

    @property
    def label(self) -> str:
        return f"batch {self.x.shape[0]} seq {self.x.shape[1]}" + (" padded" if self.padded else "")


@dataclass(frozen=True)
class Reference:
    """The FP32 reference outputs of one case, and each row's intrinsic error per precision and output."""

    outputs: Mapping[str, np.ndarray]
    intrinsic: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)  # precision -> name -> [B]


@dataclass(frozen=True)
class Rule:
    """How one precision is judged (see the module docstring); ``verify.rule_for`` builds it from a recipe."""

    precision: str
    atol: Optional[float]  # the floor; None: not judged by element (INT8: structure here, decisions on data)
    rtol: Optional[float]
    attention_atol: Optional[float]
    # times the row's intrinsic error at ``budget_precision``; INT8: times the file's own largest error where
    # the test split judged it (``verify._judge_sweep_decisions``)
    multiple: float = 0.0
    budget_precision: Optional[str] = None  # whose intrinsic error: "fp32", "fp16"; None: the floor alone
    mean_multiple: Optional[float] = None  # the mean of error / intrinsic over deployment rows may not exceed it
    deployment_max_seq: Optional[int] = None  # longer rows: stress rules; None: every row by its budget (FP32)
    min_argmax_agreement: Optional[float] = None  # on the test split
    max_accuracy_drop: Optional[float] = None  # on the test split

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    @property
    def judged_by_element(self) -> bool:
        return self.atol is not None


def rule_for(precision: str, cfg: Any, device: str = "cpu", deployment_max_seq: Optional[int] = None) -> Rule:
    """The rule for ``precision`` on a backend computing on ``device``, from a ``[verify]`` table (any object
    with ``VerifyConfig``'s attributes). GPU FP32 sums in another order than the CPU: its own floor."""
    if precision == "fp32":
        gpu = device != "cpu"
        return Rule("fp32", cfg.fp32_gpu_atol if gpu else cfg.fp32_atol, cfg.fp32_gpu_rtol if gpu else cfg.fp32_rtol,
                    cfg.fp32_gpu_atol if gpu else cfg.attention_atol_fp32, cfg.budget_multiple, "fp32")
    if precision in ("fp16", "bf16"):  # reduced precision: the model's own error at it, in the deployment range
        atol, rtol, agreement = (getattr(cfg, f"{precision}_{k}") for k in ("atol", "rtol", "min_argmax_agreement"))
        return Rule(precision, atol, rtol, atol, cfg.budget_multiple, precision, cfg.mean_budget_multiple,
                    deployment_max_seq, agreement)
    return Rule(precision, None, None, None, cfg.budget_multiple, deployment_max_seq=deployment_max_seq,
                min_argmax_agreement=cfg.int8_min_argmax_agreement, max_accuracy_drop=cfg.int8_max_accuracy_drop)


@dataclass
class CaseResult:
    batch: int
    seq: int
    padded: bool
    max_abs: float
    max_rel: float
    cosine: float
    argmax_agreement: float
    attention_max_abs: float
    passed: bool
    problems: List[str] = field(default_factory=list)
    range: str = "deployment"  # deployment | stress | mixed (rows of both)
    judged_by: str = "budget"  # budget | stress | budget+stress | structure
    budget: Optional[float] = None  # the largest head-output budget among the rows judged by it
    ratio: Optional[float] = None  # worst |got - ref| / budget over the deployment rows (<= 1 passes)
    stress_ratio: Optional[float] = None  # the same over the stress rows: reported, not judged
    # |got - ref| / intrinsic per deployment row, for verify's mean check (not written to verify.json)
    intrinsic_ratios: List[float] = field(default_factory=list, repr=False)
    # (length, largest head-output error, decision kept) per row, for verify's judgement of an INT8 file's
    # sweep decisions against its own error where the test split judged it (not written to verify.json)
    rows: List[Tuple[int, float, bool]] = field(default_factory=list, repr=False)

    def to_dict(self) -> Dict[str, object]:
        """As a JSON-ready dict: a value that could not be measured (inf: shapes differ, no output) is None."""
        out: Dict[str, object] = {}
        for k, v in self.__dict__.items():
            if k in ("intrinsic_ratios", "rows"):
                continue
            out[k] = None if isinstance(v, float) and not np.isfinite(v) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CaseResult":
        """``to_dict``'s inverse: a value that could not be measured (None) is inf again."""
        known = {f for f in cls.__dataclass_fields__ if f not in ("intrinsic_ratios", "rows")}
        values = {k: v for k, v in d.items() if k in known}
        for key in ("max_abs", "max_rel", "attention_max_abs"):
            if values.get(key) is None:
                values[key] = float("inf")
        return cls(**values)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def label(self) -> str:
        return f"batch {self.batch} seq {self.seq}" + (" padded" if self.padded else "")

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.problems)
        return f"{self.label}: max_abs {self.max_abs:.2e} {verdict}"


def unmeasured(case: SweepCase, problem: str) -> CaseResult:
    """The result of a case the artefact could not run at all."""
    inf = float("inf")
    return CaseResult(case.x.shape[0], case.x.shape[1], case.padded, inf, inf, 0.0, 0.0, inf, False, [problem])


def _budget(rule: Rule, ref: np.ndarray, intrinsic: np.ndarray, floor: Optional[float]) -> np.ndarray:
    """[B, ...] elementwise budget for one output."""
    atol = rule.atol if floor is None else floor
    extra = (rule.multiple * intrinsic).reshape((-1,) + (1,) * (ref.ndim - 1))
    return float(atol or 0.0) + float(rule.rtol or 0.0) * np.abs(ref) + extra


def _ratio(diff: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """diff / budget, where a zero budget allows only a zero difference (0/0 is 0, x/0 is inf)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(diff == 0, 0.0, diff / budget)


def _explain(rule: Rule, name: str, diff: np.ndarray, budget: np.ndarray, intrinsic: np.ndarray,
             floor: Optional[float]) -> str:
    """Why an output failed, at its worst element (the largest error / budget). Its max_abs is over the rows
    in the deployment range only, and says so: the case's own max_abs covers the stress rows too, and a
    failed case quoted two different max_abs without saying why."""
    worst = np.unravel_index(int(np.argmax(_ratio(diff, budget))), diff.shape)
    how = f"atol {rule.atol if floor is None else floor:g} + rtol {rule.rtol or 0.0:g}*|ref|"
    if rule.budget_precision and rule.multiple:
        how += (f" + {rule.multiple:g} x the model's own {rule.budget_precision.upper()} error "
                f"{float(intrinsic[worst[0]]):.3g}")
    return (f"{name} max_abs {float(diff.max()):.3g} on the rows judged by budget (the deployment range): "
            f"{float(diff[worst]):.3g} exceeds its budget {float(budget[worst]):.3g} ({how}) in row {int(worst[0])}")


def half_step(values: np.ndarray, precision: str) -> np.ndarray:
    """Half the spacing of ``precision`` (``fp16``, ``bf16``) at each of ``values``: how far rounding a value
    to that precision may move it. The reference's FP16 realisations end in FP16, so an output's intrinsic
    error cannot be told apart below this: a logit that happens to lie on an FP16 value has an intrinsic
    error of almost 0 (found by a user's data: one such row, 4.8e-7, made a correct graph's mean 6.04 x it)."""
    magnitude = np.abs(np.asarray(values, np.float64))
    if precision == "fp16":  # FP16's top binade, 32768 to 65504, steps by 32: its largest value's spacing is inf
        return np.spacing(np.minimum(magnitude, 32768.0).astype(np.float16)).astype(np.float64) / 2
    if precision != "bf16":
        raise ValueError(f"half_step: {precision!r}; expected fp16 or bf16")
    exponent = np.frexp(magnitude)[1]  # magnitude = m * 2**exponent, 0.5 <= m < 1; bf16 keeps 8 bits of m
    return np.where(magnitude > 0, np.ldexp(1.0, exponent - 9), 0.0)


def _intrinsic(reference: Reference, rule: Rule, name: str, batch: int) -> np.ndarray:
    if rule.budget_precision is None:
        return np.zeros(batch)
    by_output = reference.intrinsic.get(rule.budget_precision) or {}
    values = by_output.get(name)
    return np.zeros(batch) if values is None else np.asarray(values, np.float64)


def _unusable_reference(reference: Reference, rule: Rule, batch: int) -> Optional[str]:
    """Why this case's reference cannot judge anything (a non-finite output, a budget that is not a finite
    positive number), or None. Each comparison with NaN is false, so a NaN would pass as "within budget"."""
    for name, value in reference.outputs.items():
        if not np.isfinite(np.asarray(value, dtype=np.float64)).all():
            return f"the reference's {name} holds NaN or Inf: nothing can be judged against it"
    if rule.budget_precision is not None and rule.multiple:
        for name in reference.outputs:
            intrinsic = _intrinsic(reference, rule, name, batch)
            if intrinsic.shape == (batch,) and (~np.isfinite(intrinsic)).any():  # found by attacking: unexplained
                rows = np.flatnonzero(~np.isfinite(intrinsic))
                return (f"the model's own {rule.budget_precision.upper()} computation overflows on {len(rows)} of "
                        f"{batch} rows (first: row {int(rows[0])}; an input after normalisation, or an activation, "
                        f"past what {rule.budget_precision.upper()} holds), so no {name} budget exists there")
            if intrinsic.shape != (batch,) or (intrinsic < 0).any():
                return (f"the reference's intrinsic {rule.budget_precision.upper()} error on {name} is not a finite "
                        f"non-negative number per row: no budget can be derived from it")
    floors = (rule.atol, rule.rtol, rule.attention_atol, rule.multiple)
    if any(v is not None and not (np.isfinite(v) and v >= 0) for v in floors):
        return f"the {rule.precision} rule's tolerances are not finite non-negative numbers: {floors}"
    return None


# how far a row's attention may sum from 1: the softmax's own rounding, far below any wrong weighting
ATTENTION_SUM_ATOL = 1e-2


def compare_case(case: SweepCase, reference: Reference, got: Mapping[str, np.ndarray], head: str,
                 rule: Rule) -> CaseResult:
    """Judge one case by ``rule``: every row in the deployment range by its budget, the rest by the stress
    rules; structure (shapes, finite, zero attention on padding) always."""
    problems: List[str] = []
    batch, seq = case.x.shape[:2]
    if head not in reference.outputs or "attention" not in reference.outputs:
        return unmeasured(case, f"the reference holds no {head} and attention for this case: nothing to judge against")
    r = np.asarray(reference.outputs[head], dtype=np.float64)
    g = np.asarray(got[head], dtype=np.float64)
    if r.shape != g.shape:
        return unmeasured(case, f"{head} has shape {g.shape}, reference {r.shape}")
    unusable = _unusable_reference(reference, rule, batch)
    if unusable is not None:  # a NaN reference makes every comparison false: it may only fail
        return unmeasured(case, unusable)
    lengths = np.asarray(case.lengths)
    deploy = np.ones(batch, bool) if rule.deployment_max_seq is None else lengths <= rule.deployment_max_seq
    diff = np.abs(g - r)
    finite = bool(np.isfinite(g).all())
    if not finite:
        problems.append(f"{head} holds NaN or Inf")
        diff = np.where(np.isfinite(diff), diff, np.inf)
    max_abs = float(diff.max())
    norm = float(np.linalg.norm(r) * np.linalg.norm(g)) if finite else 0.0
    cosine = float((r * g).sum() / norm) if norm > 0 else float(np.array_equal(r, g))
    # decisions: a classifier's argmax, a binary head's sign (its logit z as [0, z]); other heads decide nothing
    scores_r, scores_g = (class_logits(r), class_logits(g)) if head == "logits" else (r, g)
    classes = scores_r.shape[1] if scores_r.ndim > 1 else 1
    agree = scores_r.argmax(axis=1) == scores_g.argmax(axis=1) if classes > 1 else np.ones(batch, bool)
    result = CaseResult(batch, seq, case.padded, max_abs, 0.0, cosine, float(agree.mean()), 0.0, False)
    result.rows = [(int(n), float(e), bool(a)) for n, e, a in zip(lengths, diff.reshape(batch, -1).max(axis=1), agree)]
    result.range = "deployment" if deploy.all() else "stress" if not deploy.any() else "mixed"

    if not rule.judged_by_element:
        result.judged_by = "structure"
    else:
        result.judged_by = {"deployment": "budget", "stress": "stress", "mixed": "budget+stress"}[result.range]
        intrinsic = _intrinsic(reference, rule, head, batch)
        budget = _budget(rule, r, intrinsic, None)
        ratio = _ratio(diff, budget).reshape(batch, -1).max(axis=1)
        result.max_rel = float((diff / np.maximum(np.abs(r), rule.atol or 1e-12)).max())
        if not (np.isfinite(budget).all() and (budget > 0).all()):
            problems.append(f"the {head} budget is not a finite positive number on every row (atol {rule.atol}, rtol "
                            f"{rule.rtol}, {rule.multiple} x intrinsic): nothing can pass against it")
        if deploy.any():
            result.budget = float(budget[deploy].max())
            result.ratio = float(ratio[deploy].max())
            if not result.ratio <= 1.0:  # NaN included
                problems.append(_explain(rule, head, np.where(deploy[:, None], diff, 0.0), budget, intrinsic, None))
            judged = deploy & (intrinsic > 0)
            # each element against its row's intrinsic error, floored at half a step of that element (found by
            # attacking: the row's largest output, an exact -1000, set a floor that hid a 0.3 % head error)
            resolved = intrinsic[:, None] if rule.mean_multiple is None else np.maximum(
                intrinsic[:, None], half_step(np.abs(r).reshape(batch, -1), rule.precision))
            ratios = _ratio(diff.reshape(batch, -1), resolved).max(axis=1)
            result.intrinsic_ratios = ratios[judged].tolist()
        if not deploy.all():
            result.stress_ratio = float(ratio[~deploy].max())
            if classes > 1 and finite:
                decisive = top_margin(scores_r) > 2.0 * budget.max(axis=1)
                flips = ~deploy & decisive & ~agree
                if flips.any():
                    problems.append(f"argmax differs on {int(flips.sum())} row(s) beyond the deployment range "
                                    f"(seq > {rule.deployment_max_seq}) whose reference margin exceeds twice "
                                    "their budget")

    ra = np.asarray(reference.outputs["attention"], dtype=np.float64)
    ga = np.asarray(got["attention"], dtype=np.float64)
    if ra.shape != ga.shape:
        problems.append(f"attention has shape {ga.shape}, reference {ra.shape}")
        result.attention_max_abs = float("inf")
    else:
        adiff = np.abs(ga - ra)
        if not np.isfinite(ga).all():
            problems.append("attention holds NaN or Inf")
            adiff = np.where(np.isfinite(adiff), adiff, np.inf)
        result.attention_max_abs = float(adiff.max())
        if rule.judged_by_element and deploy.any():
            intrinsic = _intrinsic(reference, rule, "attention", batch)
            budget = _budget(rule, ra, intrinsic, rule.attention_atol)
            if (_ratio(adiff, budget)[deploy] > 1.0).any():
                problems.append(_explain(rule, "attention", np.where(deploy[:, None], adiff, 0.0), budget,
                                         intrinsic, rule.attention_atol))
        steps = np.arange(ga.shape[1])[None, :]
        if (ga[steps >= lengths[:, None]] != 0).any():
            problems.append("attention on padded steps is not exactly 0")
        # a softmax over each row's steps, whatever the precision (found by attacking: an INT8 graph whose
        # attention was all zeros passed, judged by its decisions alone)
        sums = np.where(steps < lengths[:, None], ga, 0.0).sum(axis=1)
        if np.isfinite(ga).all() and ((ga < 0).any() or (np.abs(sums - 1.0) > ATTENTION_SUM_ATOL).any()):
            worst = int(np.argmax(np.abs(sums - 1.0)))
            problems.append(f"attention is not a softmax over each row's steps: row {worst} sums to "
                            f"{sums[worst]:.4g}{', with negative weights' if (ga < 0).any() else ''} (expected "
                            f"weights >= 0 summing to 1 within {ATTENTION_SUM_ATOL})")
    result.problems = problems
    result.passed = not problems
    return result




def sweep_cases(
    features: int,
    max_seq: int,
    mean: Sequence[float],
    std: Sequence[float],
    typical: int = 16,
    seed: int = 0,
    deploy: Optional[int] = None,
) -> List[SweepCase]:
    """Inputs across the dynamic range: seq 1 and 2, odd and typical lengths, up to ``max_seq``, batch 1
    and larger, and padded mixed-length batches whose padding holds large random values (garbage that
    would show any leak). Values are drawn around the training data's scale (mean + std * N(0, 1)).
    ``deploy``, the deployment range's longest sequence: it and lengths spread up to it are cases, and so are
    lengths spread from it to the longest (found by attacking: with a range to 256, no case lay between 79
    and 301, and an FP16 graph that flipped every decision from 101 to 256 steps passed)."""
    rng = np.random.default_rng(seed)
    mu = np.asarray(mean, dtype=np.float32)
    sigma = np.asarray(std, dtype=np.float32)

    def unpadded(batch: int, seq: int) -> SweepCase:
        x = (mu + sigma * rng.standard_normal((batch, seq, features))).astype(np.float32)
        return SweepCase(x, np.full(batch, seq, dtype=np.int64), False)

    def padded(batch: int, seq: int) -> SweepCase:
        case = unpadded(batch, seq)
        lengths = rng.integers(1, seq + 1, size=batch).astype(np.int64)
        lengths[0] = seq  # one full-length sequence keeps the batch's seq axis honest
        lengths[-1] = 1
        x = case.x.copy()
        for b, n in enumerate(lengths):
            x[b, n:] = rng.uniform(-1e3, 1e3, size=(seq - n, features))
        return SweepCase(x, lengths, True)

    def spread(batch: int, seq: int, low: int) -> SweepCase:
        """A padded batch whose rows' lengths are spread evenly from ``seq`` down to ``low``."""
        case = unpadded(batch, seq)
        # a copy, not the reversed view: one length alone is a view numpy calls contiguous, with a negative
        # stride torch refuses (found by attacking: export stopped with a traceback when low was seq)
        lengths = np.unique(np.linspace(seq, max(1, min(low, seq)), batch).round().astype(np.int64))[::-1].copy()
        x = case.x[: len(lengths)].copy()
        for b, n in enumerate(lengths):
            x[b, n:] = rng.uniform(-1e3, 1e3, size=(seq - n, features))
        return SweepCase(x, lengths, bool(lengths.min() < seq))

    shapes: List[Tuple[int, int]] = [(1, 1), (1, 2), (3, 7), (2, max(typical, 1)), (4, 2 * typical + 1)]
    long = min(max_seq, 2048)
    shapes += [(1, max_seq), (8, long)] if max_seq > 2 * typical + 1 else []
    cases = [unpadded(b, t) for b, t in shapes]
    cases += [padded(6, min(max(3, typical * 2 + 3), max_seq)), padded(5, min(301, max_seq))]
    # the whole deployment range, past max_seq too (found by attacking: with max_seq 64 and a range to 128, no
    # case lay between, and verify said FP16 was held to its budget up to 128), to DEPLOY_CASES_MAX steps
    top = min(deploy or 0, max(max_seq, DEPLOY_CASES_MAX))
    if top > 2 * typical + 1:
        cases += [c for c in (unpadded(1, top), spread(4, top, 2 * typical + 2)) + (
            (spread(4, long, top + 1),) if top + 1 < long else ())
                  if (c.x.shape[:2], c.padded) not in {(k.x.shape[:2], k.padded) for k in cases}]
    return [c for c in cases if c.x.shape[1] <= max(max_seq, top)]
