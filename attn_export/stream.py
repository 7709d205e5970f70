"""The stream form of an AttentionLSTM: one chunk of steps in, the answer for the prefix seen so far out,
exactly what the whole-sequence model computes on that prefix.

    cell = StreamCell(model)          # model: a unidirectional AttentionLSTM without a Conv1d front-end
    head, context, *state = cell(x, lengths, *state)   # x [batch, chunk, features]; state from zero_state
                                      # (no head: context, *state)

What is carried from chunk to chunk (``runtime.streaming.STATE``, batch first, all zeros at the start):
each layer's LSTM state (h, c), and the attention's online softmax (Milakov & Gimelshein, 2018): the
number of steps seen, the running maximum score m, the running sum s of exp(score - m) and the running
weighted sum acc of the LSTM outputs, each rescaled by exp(m_old - m_new) when the maximum grows; the
context after any prefix is acc / s. A row whose ``lengths`` is 0 keeps its state unchanged.

Exported as plain ONNX (``LSTM`` nodes with an initial state and no ``sequence_lens``, ``MatMul``,
``Where``, ``ReduceMax``): the LSTM node runs the whole chunk, padding included, so the state at a row's
last valid step is not its final state output. h there is picked from the node's per-step output; c is
not an output of the node, so it is recomputed from the gates: with every step's h known, each step's
gates are one matrix product over the chunk, and c after the row's last valid step is
sum_k (prod_{j>k} f_j) i_k g_k + (prod_j f_j) c_0 over the valid steps, the products taken as exp of
suffix sums of log f (a [chunk, chunk] triangular product: no loop, no CumSum, and no division).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from . import __version__
from .errors import BadInput, ParityError, WorkFailed
from .export import quiet_exporter
from .model import MASK_FILL, AttentionLSTM, torch_threads, valid_max
from .portability import make_portable
from .runtime import store
from .runtime.backends.onnxrt import OrtCpuBackend
from .runtime.interrupt import holding
from .runtime.iospec import IOSpec
from .runtime.limits import check_threads
from .runtime.store import Artifact
from .runtime.streaming import SCHEDULES, not_streamable, replay, schedule, stream_spec

__all__ = ["LOG_FLOOR", "StreamCell", "StreamExport", "export_stream"]

LOG_FLOOR = -80.0


class StreamCell(nn.Module):
    """One chunk of the stream; see the module docstring. Shares the model's parameters."""

    def __init__(self, model: AttentionLSTM) -> None:
        super().__init__()
        reason = not_streamable(model.config)
        if reason is not None:
            raise ValueError(reason)
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, acc: torch.Tensor, c: torch.Tensor, h: torch.Tensor,
                peak: torch.Tensor, seen: torch.Tensor, total: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, C)
        mask = steps < lengths.unsqueeze(1)  # (B, C)
        keep = mask.unsqueeze(2)  # (B, C, 1)
        valid = keep.to(x.dtype)
        later = (steps > steps.transpose(0, 1)).to(x.dtype)  # (C, C): [k, j] = 1 where j > k
        is_last = (steps == (lengths - 1).unsqueeze(1)).unsqueeze(2).to(x.dtype)  # (B, C, 1)
        any_new = (lengths > 0).unsqueeze(1)  # (B, 1)
        inp = torch.where(keep, (x - m.mean) / m.std, 0.0)
        hs, cs = [], []
        for layer in range(m.config.num_layers):
            h0, c0 = h[:, layer], c[:, layer]  # (B, H)
            w_ih, w_hh, b_ih, b_hh = (getattr(m.lstm, f"{name}_l{layer}")
                                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            out = torch._VF.lstm(inp, (h0.unsqueeze(0), c0.unsqueeze(0)), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0,
                                 False, False, True)[0]  # (B, C, H)
            hs.append(torch.where(any_new, (out * is_last).sum(1), h0))
            before = torch.cat([h0.unsqueeze(1), out[:, :-1]], 1)  # h_{t-1} for every step
            gates = functional.linear(inp, w_ih, b_ih) + functional.linear(before, w_hh, b_hh)  # (B, C, 4H)
            i, f, g, _ = gates.chunk(4, 2)  # PyTorch's gate order: input, forget, cell, output
            # padding: a forget gate of 1, nothing added; log f floored at -80 (a gate below e^-80 keeps
            # nothing either way), so that no -inf meets a 0 of the triangle in the product below
            log_f = torch.maximum(functional.logsigmoid(f), f.new_tensor(LOG_FLOOR)) * valid
            added = torch.sigmoid(i) * torch.tanh(g) * valid
            decay = torch.exp(torch.matmul(later, log_f))  # (B, C, H): prod_{j>k} f_j
            cs.append((decay * added).sum(1) + torch.exp(log_f.sum(1)) * c0)
            inp = out
        out = inp  # the last layer's outputs, (B, C, H)
        if m.config.attention == "linear":
            scores = m.score(out).squeeze(2)
        else:
            scores = m.energy(torch.tanh(m.key(out) + m.query_proj(m.query.unsqueeze(0)).unsqueeze(1))).squeeze(2)
        had = seen > 0  # (B, 1)
        new = valid_max(scores, mask)  # (B, 1): the chunk's largest valid score, whatever its scale
        top = torch.where(any_new, torch.where(had, torch.maximum(peak, new), new), peak)
        scale = torch.where(had, torch.exp(peak - top), 0.0)  # (B, 1): exp of at most 0 where it is used
        weights = torch.where(mask, torch.exp(torch.where(mask, scores - top, MASK_FILL)), 0.0)  # (B, C)
        new_total = total * scale + weights.sum(1, keepdim=True)
        new_acc = acc * scale + torch.bmm(weights.unsqueeze(1), out).squeeze(1)
        new_seen = seen + lengths.unsqueeze(1).to(seen.dtype)
        started = new_seen > 0
        context = torch.where(started, new_acc / torch.where(started, new_total, 1.0), 0.0)
        state = (new_acc, torch.stack(cs, 1), torch.stack(hs, 1), top, new_seen, new_total)
        if m.config.head == "none":  # the head's output is the context itself: one output, as in stream_spec
            return (context, *state)
        return (m.head(context), context, *state)


# the export's parity cases: batch 3 with rows ending at different steps, at these lengths (the recipe's
# typical length added); each replayed in every schedule, each update judged on every row that has begun
_PARITY_LENGTHS = (1, 9, 33)


def _torch_export(cell: StreamCell, spec: IOSpec, path: Path, opset: int) -> None:
    batch = 2
    example = []
    for t in spec.inputs:
        shape = [batch if d == "batch" else 5 if d == "chunk" else d for d in t.dims]
        example.append(torch.tensor([5, 3]) if t.name == "lengths" else
                       torch.randn(*shape) if t.name == "x" else torch.zeros(*shape))
    axes = {t.name: {i: d for i, d in enumerate(t.dims) if isinstance(d, str)} for t in spec.inputs + spec.outputs}
    with quiet_exporter():
        torch.onnx.export(cell, tuple(example), str(path), opset_version=opset, dynamo=False, verbose=False,
                          input_names=[t.name for t in spec.inputs], output_names=list(spec.output_names),
                          dynamic_axes=axes, do_constant_folding=True)


def _prefix_outputs(model: AttentionLSTM, x: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """PyTorch's whole-sequence head output on each row's prefix of ``seen`` steps (a row at 0: zeros)."""
    top = max(int(seen.max()), 1)
    with torch.inference_mode():
        head, _ = model(torch.from_numpy(np.ascontiguousarray(x[:, :top])), torch.from_numpy(np.maximum(seen, 1)))
    return np.where(seen[:, None] > 0, head.numpy(), 0.0)


@store.writes_directory("export --stream")
def refuse_unstreamable(directory: Path, model: Any = None) -> None:
    """BadInput naming why DIR's model (its recipe's ``[model]``, read from model.json unless given) cannot
    stream exactly; ``export --stream`` asks before it writes anything."""
    if model is None:
        model = store.Store(directory).info.recipe["model"]
    reason = not_streamable(model)
    if reason is not None:
        raise BadInput(f"{directory}'s model cannot stream exactly: {reason}")


def export_stream(directory: Path, opset: int | None = None, threads: int | None = 1) -> StreamExport:
    """DIR/model.stream.onnx from DIR's weights: exported, checked like ``model.onnx`` (ONNX's checker and
    strict shape inference, one LSTM node per layer, no construct runtimes read differently), and replayed
    in ONNX Runtime over every schedule against PyTorch's whole-sequence model on every prefix; written
    only when every update is within the FP32 rule (atol + rtol x |reference|). BadInput naming why when the
    model cannot stream exactly."""
    import onnx

    from .checkpoint import build_model
    from .config import recipe_from_dict
    from .export import _declare_output_shapes, _metadata, _structure_problems

    check_threads(threads)
    weights = store.Store(directory).open(store.WEIGHTS, need="current")
    info = weights.info
    assert info is not None
    refuse_unstreamable(directory, info.recipe["model"])
    model = build_model(info, weights.data, str(weights.path))
    opset = opset or recipe_from_dict(dict(info.recipe)).export.opset
    spec = stream_spec(info)
    cell = StreamCell(model).eval()
    started = time.perf_counter()
    with holding() as hold:
        with store.atomic_path(directory / store.STREAM_ONNX) as tmp, torch_threads(threads):
            _torch_export(cell, spec, tmp, opset)
            seconds = time.perf_counter() - started
            proto = onnx.load(str(tmp))
            actual = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            for key, value in {**_metadata(info, spec, weights.sha256, "torchscript", actual), "stream": "1"}.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            proto.producer_name, proto.producer_version = "attn-export", __version__
            make_portable(proto)
            _declare_output_shapes(proto, spec)
            try:
                onnx.checker.check_model(proto, full_check=True)
                onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
            except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
                raise WorkFailed(f"exported stream graph fails ONNX validation: {str(e).splitlines()[0]}") from None
            problems = _structure_problems(proto, spec, int(info.recipe["model"].get("num_layers", 1)))
            if problems:
                raise WorkFailed("exported stream graph is not what attn-export promises: " + "; ".join(problems))
            onnx.save(proto, str(tmp))
            worst, updates = _parity(model, Artifact.candidate(tmp, spec, "fp32", info), info, threads)
            hold()  # from the rename to the record (``interrupt.holding``)
        store.record(directory, store.STREAM_ONNX, f"export --stream --opset {opset}", parent=store.WEIGHTS,
                     parent_sha256=weights.sha256, versions={"torch": torch.__version__, "onnx": onnx.__version__},
                     opset=actual, export_seconds=round(seconds, 3), threads=threads,
                     parity={"passed": True, "updates": updates, "worst_ratio": worst, "schedules": list(SCHEDULES)})
    return StreamExport(directory / store.STREAM_ONNX, actual, seconds, worst, updates)


def _parity(model: AttentionLSTM, candidate: Artifact, info: Any, threads: int | None) -> tuple[float, int]:
    """(worst |stream - PyTorch on the prefix| / (atol + rtol |PyTorch|), updates judged); ParityError on
    the first update past 1."""
    cfg = info.verify
    rng = np.random.default_rng(0)
    typical = int((info.train_lengths or {}).get("median", 16))
    mean, std = np.asarray(info.mean, np.float32), np.asarray(info.std, np.float32)
    worst, judged = 0.0, 0
    head = candidate.spec.head_output
    with OrtCpuBackend(candidate, threads=threads) as backend:
        for steps in sorted({*_PARITY_LENGTHS, typical}):
            x = (mean + std * rng.standard_normal((3, steps, info.input_size))).astype(np.float32)
            lengths = np.array([steps, max(1, steps // 2), 1], np.int64)
            for name in SCHEDULES:
                for k, update in enumerate(replay(backend.run_feeds, candidate.spec, x, lengths,
                                                  schedule(name, steps))):
                    ref = _prefix_outputs(model, x, update.seen)
                    got = np.asarray(update.outputs[head], np.float64)
                    ratio = np.abs(got - ref) / (cfg.fp32_atol + cfg.fp32_rtol * np.abs(ref))
                    judged += 1
                    worst = max(worst, float(ratio.max()))
                    if ratio.max() > 1.0:
                        raise ParityError(f"the stream graph disagrees with PyTorch on the prefix after chunk {k + 1} "
                                          f"of '{name}' (sequences of {steps} steps): {ratio.max():.2f} x the FP32 "
                                          f"rule (atol {cfg.fp32_atol:g} + rtol {cfg.fp32_rtol:g} x |reference|)")
    return round(worst, 4), judged


@dataclass
class StreamExport:
    path: Path
    opset: int
    seconds: float
    worst_ratio: float  # of the FP32 rule, over every update of every schedule
    updates: int
