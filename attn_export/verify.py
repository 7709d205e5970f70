"""``attn-export verify`` on the host: the device's verification (``attn_export.runtime.verify``) with what
only the host has: the PyTorch model, live (cases only it can answer: several thousand steps, the training
length range, each engine's profile corners, with their intrinsic errors), the recipe's real test split
(accuracy, argmax agreement, budgets on real data), and the host's backends (``torch-cpu``, ``torch-cuda``,
``onnx-ref``).

    attn-export verify [DIR] [--backends auto|NAMES] [--set verify.key=value] [--json] [--report]

The rules and everything written (``verify.json``, the conformance table, the manifest verdicts) are the
device's, so a directory verified on the host and the same bundle verified on the device agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import REGISTRY
from .runtime.iospec import class_logits
from .runtime import schema, store
from .runtime.compare import Reference, SweepCase
from .runtime.modelinfo import ModelInfo
from .runtime.reference import ReferenceSet
from .runtime.store import Artifact, Store
from .runtime.targets import Target
from .runtime.precisions import PRECISIONS
from .runtime.verify import PREFIX_BATCH, VERIFY_JSON, Augment, TestSplit, VerifyResult, _scatter, deployment_max_seq
from .runtime.verify import verify as verify_directory

__all__ = ["VERIFY_JSON", "VerifyResult", "torch_references", "verify"]

ATTENTION_SAMPLES = 4  # test sequences whose attention every backend reports, for the heatmaps
TEST_BATCH = 32


def _torch_reference(s: Store) -> Artifact | None:
    """The weights, current in the store, where torch can run them (the live reference), else None."""
    from .backends.pyt import TorchCpuBackend

    if TorchCpuBackend.available() is not None or s.read(store.WEIGHTS) is None:
        return None
    return s.open(store.WEIGHTS, need="current")


def _extra_cases(info: ModelInfo, engine_profiles: list[dict[str, Any]], recorded: ReferenceSet) -> list[SweepCase]:
    """Cases only a live PyTorch reference can answer: 4096 steps, the training range, profile corners, and the
    deployment range's longest sequence where the recorded sweep has none (``info.verify``: this verify's
    settings; review: a range moved after export was said judged up to lengths no case had)."""
    rng = np.random.default_rng(11)
    mu, sigma = np.asarray(info.mean, np.float32), np.asarray(info.std, np.float32)
    shapes = {(1, 4096)}
    deploy = deployment_max_seq(info, info.verify)
    if deploy and deploy not in {int(c.x.shape[1]) for c in recorded.cases}:
        shapes.add((1, deploy))
    stats = info.train_lengths or {}
    shapes |= {(1, int(stats[k])) for k in ("min", "max") if stats.get(k)}
    for profile in engine_profiles:
        for corner in ("min", "opt", "max"):
            dims = profile.get("x", {}).get(corner)
            if dims:
                shapes.add((int(dims[0]), int(dims[1])))
    cases = []
    for batch, seq in sorted(shapes):
        x = (mu + sigma * rng.standard_normal((batch, seq, info.input_size))).astype(np.float32)
        cases.append(SweepCase(x, np.full(batch, seq, np.int64), False))
    return cases


def torch_references(weights: Artifact, cases: Sequence[SweepCase], threads: int | None,
                     intrinsic: bool = True) -> list[Reference]:
    """PyTorch FP32's outputs on ``cases`` and each row's intrinsic error per precision (needs torch; not
    measured with ``intrinsic=False``), on verify's ``threads`` like every backend, restored after (torch's
    default OpenMP threads spin while they wait; README, Export, "Threads")."""
    from .backends.pyt import TorchCpuBackend
    from .intrinsic import intrinsic_errors
    from .model import torch_threads

    with torch_threads(threads), TorchCpuBackend(weights, threads=threads) as backend:
        outputs = [backend.infer(c.feeds) for c in cases]
        if not intrinsic:
            return [Reference(o) for o in outputs]
        errors = intrinsic_errors(backend.model, [c.feeds for c in cases], outputs, weights.spec.output_names)
    return [Reference(o, e) for o, e in zip(outputs, errors)]


def _test_split(s: Store, info: ModelInfo, weights: Artifact | None, threads: int | None,
                cut: bool = False) -> tuple[TestSplit | None, str | None]:
    """The recipe's test split, with PyTorch's outputs on it where torch runs the weights (and on it cut
    short, ``cut``: for INT8), else the accuracy training recorded."""
    from .data import pad
    from .quantize import labelled_test_split

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
    head = info.spec.head_output
    if weights is not None:
        references = torch_references(weights, [case for _, case in batches], threads)
        logits = _scatter(test.n, batches, [r.outputs for r in references], head)[head]
        accuracy = float((class_logits(logits).argmax(1) == test.y).mean())
        source = "torch-cpu FP32 on the test split"
    elif s.state(store.METRICS).current:
        accuracy = store.parse_json(s.read(store.METRICS) or b"", s.directory / store.METRICS,
                                    schema.METRICS)["test"]["accuracy"]
    split = TestSplit(batches, test.y, test.lengths, samples, references, accuracy, source)
    if cut and weights is not None:
        split.cut = _cut(test, weights, head, threads)
    return split, None


CUT_STEPS = (1, 2, 3, 4, 5, 7)  # the test split's sequences cut to these steps, and to half its shortest
# how many of the split's sequences are cut (a spread, shortest to longest): each cut row of a file judged one
# sequence at a time is two runs per runtime; 64 x 6 lengths kept it to about 2.5 s of the quickstart's 40 s verify
CUT_SEQUENCES = PREFIX_BATCH


def _cut(test: Any, weights: Artifact, head: str, threads: int | None) -> list[tuple[SweepCase, np.ndarray]]:
    """``CUT_SEQUENCES`` of the split's sequences cut to ``CUT_STEPS`` and half the split's shortest (each
    shorter than it), one case per length, with PyTorch FP32's ``head`` outputs: where INT8 is judged against
    its re-quantisation (``runtime.verify._judge_cut``)."""
    order = np.argsort(test.lengths, kind="stable")
    chosen = [test.sequences[i] for i in dict.fromkeys(order[np.linspace(0, test.n - 1, CUT_SEQUENCES).round().astype(int)])]
    shortest = int(test.lengths.min())
    cases = [SweepCase(np.stack([seq[:k] for seq in chosen]).astype(np.float32), np.full(len(chosen), k, np.int64), False)
             for k in sorted({k for k in (*CUT_STEPS, shortest // 2) if 1 <= k < shortest})]
    return [(case, np.asarray(r.outputs[head])) for case, r in
            zip(cases, torch_references(weights, cases, threads, intrinsic=False))]


def _engine_profiles(s: Store, targets: list[Target]) -> list[dict[str, Any]]:
    return [(s.entry(t.artifact) or {}).get("profile") or {} for t in targets
            if t.skip is None and t.artifact and store.is_engine(t.artifact)]


def _augment(s: Store, info: ModelInfo, targets: list[Target], recorded: ReferenceSet,
             threads: int | None) -> Augment:
    weights = _torch_reference(s)
    reference = recorded
    if weights is not None:
        extra = _extra_cases(info, _engine_profiles(s, targets), recorded)
        references = torch_references(weights, extra, threads)
        reference = ReferenceSet(recorded.cases + extra, recorded.references + references, recorded.meta)
    int8 = {t.artifact: t.precision for t in targets if t.skip is None and t.artifact and t.precision in PRECISIONS
            and PRECISIONS[t.precision].judged_by == "decisions"}
    split, reason = _test_split(s, info, weights, threads, cut=bool(int8))
    requantised: dict[str, Any] = {}
    if split is not None and split.cut:
        from .quantize import requantised as make_again

        requantised = {name: make_again(s, info, name, precision) for name, precision in int8.items()
                       if not store.is_engine(name)}  # an engine's would need a TensorRT build: said by the judge
    return Augment(reference, split, reason, store.WEIGHTS if weights is not None else store.REFERENCE,
                   requantised=requantised)


def verify(
    directory: Path,
    backends: str | list[str] | None = "auto",
    threads: int | None = 1,
    progress: Callable[[str, int, int], None] | None = None,
    overrides: Sequence[str] = (),
) -> VerifyResult:
    """Verify every runnable target in DIR (the host's backends, live references, the test split); write
    verify.json and the manifest verdicts; return the result (``result.passed``: the CLI exits 1 if not)."""
    return verify_directory(directory, backends, threads, progress, overrides, registry=REGISTRY,
                            augment=functools.partial(_augment, threads=threads))
