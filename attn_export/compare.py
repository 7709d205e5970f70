"""Comparing a backend's outputs with the reference, and the sweep of inputs every comparison uses.

numpy only; Python 3.8-compatible (the device checks parity against ``reference.npz`` with it).
An elementwise check passes when ``|got - ref| <= atol + rtol * |ref|`` everywhere (both tolerances,
as numpy.allclose), on the head output and on ``attention``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CaseResult", "SweepCase", "compare_case", "sweep_cases"]


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

    def to_dict(self) -> Dict[str, object]:
        """As a JSON-ready dict: a value that could not be measured (inf: shapes differ, no output) is None."""
        return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in asdict(self).items()}

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        pad = " padded" if self.padded else ""
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.problems)
        return f"batch {self.batch} seq {self.seq}{pad}: max_abs {self.max_abs:.2e} {verdict}"


def _max_rel(ref: np.ndarray, diff: np.ndarray, floor: float) -> float:
    return float((diff / np.maximum(np.abs(ref), floor)).max()) if diff.size else 0.0


def compare_case(
    case: SweepCase,
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    head: str,
    atol: float,
    rtol: float,
    attention_atol: Optional[float] = None,
    min_argmax_agreement: Optional[float] = None,
) -> CaseResult:
    """Compare one case. ``min_argmax_agreement`` set: judge by argmax agreement, not element error."""
    problems: List[str] = []
    attention_atol = atol if attention_atol is None else attention_atol
    r = np.asarray(ref[head], dtype=np.float64)
    g = np.asarray(got[head], dtype=np.float64)
    if r.shape != g.shape:
        problems.append(f"{head} has shape {g.shape}, reference {r.shape}")
        return CaseResult(case.x.shape[0], case.x.shape[1], case.padded, float("inf"), float("inf"), 0.0, 0.0,
                          float("inf"), False, problems)
    diff = np.abs(g - r)
    finite = bool(np.isfinite(g).all())
    if not finite:
        problems.append(f"{head} holds NaN or Inf")
    max_abs = float(diff.max())
    norm = float(np.linalg.norm(r) * np.linalg.norm(g))
    cosine = float((r * g).sum() / norm) if norm > 0 else float(np.array_equal(r, g))
    agreement = float((r.argmax(axis=1) == g.argmax(axis=1)).mean()) if r.shape[1] > 1 else 1.0
    if min_argmax_agreement is None:
        if not (diff <= atol + rtol * np.abs(r)).all():
            problems.append(f"{head} max_abs {max_abs:.3g} exceeds atol {atol:g} + rtol {rtol:g} * |ref|")
    elif agreement < min_argmax_agreement:
        problems.append(f"argmax agreement {agreement:.4f} below {min_argmax_agreement}")

    ra = np.asarray(ref["attention"], dtype=np.float64)
    ga = np.asarray(got["attention"], dtype=np.float64)
    if ra.shape != ga.shape:
        problems.append(f"attention has shape {ga.shape}, reference {ra.shape}")
        attention_max = float("inf")
    else:
        adiff = np.abs(ga - ra)
        attention_max = float(adiff.max())
        if min_argmax_agreement is None and not (adiff <= attention_atol + rtol * np.abs(ra)).all():
            problems.append(f"attention max_abs {attention_max:.3g} exceeds atol {attention_atol:g} + rtol {rtol:g}")
        steps = np.arange(ga.shape[1])[None, :]
        if (ga[steps >= case.lengths[:, None]] != 0).any():
            problems.append("attention on padded steps is not exactly 0")
    return CaseResult(case.x.shape[0], case.x.shape[1], case.padded, max_abs, _max_rel(r, diff, atol),
                      cosine, agreement, attention_max, not problems, problems)


def sweep_cases(
    features: int,
    max_seq: int,
    mean: Sequence[float],
    std: Sequence[float],
    typical: int = 16,
    seed: int = 0,
) -> List[SweepCase]:
    """Inputs across the dynamic range: seq 1 and 2, odd and typical lengths, up to ``max_seq``, batch 1
    and larger, and padded mixed-length batches whose padding holds large random values (garbage that
    would show any leak). Values are drawn around the training data's scale (mean + std * N(0, 1))."""
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

    shapes: List[Tuple[int, int]] = [(1, 1), (1, 2), (3, 7), (2, max(typical, 1)), (4, 2 * typical + 1)]
    long = min(max_seq, 2048)
    shapes += [(1, max_seq), (8, long)] if max_seq > 2 * typical + 1 else []
    cases = [unpadded(b, t) for b, t in shapes]
    cases += [padded(6, min(max(3, typical * 2 + 3), max_seq)), padded(5, min(301, max_seq))]
    return [c for c in cases if c.x.shape[1] <= max_seq]
