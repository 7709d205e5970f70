"""The precision variants, in one table: each one's ONNX file, the command that makes it, how TensorRT
builds it, and how verify judges it. Everything else reads this table; nothing spells a precision again.

    PRECISIONS["fp16"].file          # "model.fp16.onnx"
    ONNX_FILES                       # precision -> file, FP32 first (the order results are reported in)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ["ENGINE_PRECISIONS", "ONNX_FILES", "ONNX_FP32", "PRECISIONS", "Precision", "QUANTIZED", "build_flag",
           "engine_precision", "moves_verdict", "rule_keys"]

ONNX_FP32 = "model.onnx"


@dataclass(frozen=True)
class Precision:
    name: str
    file: Optional[str]  # its ONNX graph in DIR; None: it runs another precision's graph (bf16 runs model.onnx)
    made_by: str  # the command that makes the file (or the execution)
    build_flag: Optional[str]  # attn-export build's flag for its engine; None: TensorRT cannot build it
    builder_flags: Tuple[str, ...]  # TensorRT BuilderFlag names on a weakly typed network (TensorRT 8.x)
    judged_by: str  # "budget": each output against the model's own error at this precision; "decisions"
    reduced: bool  # reduced precision: budget inside the deployment range, the stress rules beyond it
    verify_keys: Tuple[str, ...]  # the [verify] keys that move its verdict
    # the largest magnitude its graph holds where the input enters it, after the normalisation (which runs in
    # float32 in every graph): beyond it the value is inf there. None: float32's own range
    largest: Optional[float] = None
    # its graph takes one quantisation scale over the whole batch (ONNX Runtime's DynamicQuantizeLinear and
    # DynamicQuantizeLSTM), so a row's answer moves with its batch-mates (found by a user: one glitch of 1e4 in
    # one sequence changed the classes of the others): it runs one sequence at a time, in predict, verify and
    # bench, and a stream of several rows runs each row alone (streaming.stream_run)
    per_row: bool = False


PRECISIONS: Dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", ONNX_FP32, "attn-export export", "", (), "budget", False,
              ("fp32_atol", "fp32_rtol", "budget_multiple")),
    Precision("fp16", "model.fp16.onnx", "attn-export quantize --fp16", "--fp16", ("FP16",), "budget", True,
              ("fp16_atol", "fp16_rtol", "budget_multiple", "mean_budget_multiple", "deployment_max_seq"), 65504.0),
    Precision("bf16", None, "OpenVINO's bf16 execution of model.onnx (openvino-bf16)", None, (), "budget", True,
              ("bf16_atol", "bf16_rtol", "budget_multiple", "mean_budget_multiple", "deployment_max_seq")),
    Precision("int8-dynamic", "model.int8.onnx", "attn-export quantize --int8", None, (), "decisions", False,
              ("int8_min_argmax_agreement", "int8_max_accuracy_drop", "budget_multiple"), per_row=True),
    Precision("int8-qdq", "model.int8-qdq.onnx", "attn-export quantize --int8 --method qdq", "--int8", ("INT8",),
              "decisions", False,
              ("int8_min_argmax_agreement", "int8_max_accuracy_drop", "budget_multiple")),
)}
ONNX_FILES: Dict[str, str] = {p.name: p.file for p in PRECISIONS.values() if p.file is not None}
# what TensorRT builds engines from (dynamic INT8 uses ONNX Runtime's own operators, which it cannot parse)
ENGINE_PRECISIONS: Tuple[str, ...] = tuple(p.name for p in PRECISIONS.values() if p.build_flag is not None)
# what attn-export quantize makes
QUANTIZED: Dict[str, str] = {n: f for n, f in ONNX_FILES.items() if n != "fp32"}


# the [verify] keys each precision's rule reads (``compare.rule_for``, and the deployment range INT8's sweep
# decisions are cut to): wider than ``verify_keys``, the ones its failure hint names
_RULE_KEYS = {
    "fp32": ("fp32_atol", "fp32_rtol", "fp32_gpu_atol", "fp32_gpu_rtol", "attention_atol_fp32", "budget_multiple"),
    **{p: (f"{p}_atol", f"{p}_rtol", f"{p}_min_argmax_agreement", "budget_multiple", "mean_budget_multiple",
           "deployment_max_seq") for p in ("fp16", "bf16")},
    **{p: ("int8_min_argmax_agreement", "int8_max_accuracy_drop", "budget_multiple", "deployment_max_seq")
       for p in ("int8-dynamic", "int8-qdq")},
}


def rule_keys(precision: str) -> Tuple[str, ...]:
    """The ``[verify]`` keys ``precision``'s rule reads (none for a precision without one)."""
    return _RULE_KEYS.get(precision, ())


def moves_verdict(precision: str, key: str) -> bool:
    """Whether the ``[verify]`` setting ``key`` can move a verdict on ``precision``: one its rule reads, or a
    key no rule claims (said rather than hidden); found by attacking, an FP16 tolerance given to verify was
    said beside every file's verdict as if it had loosened it."""
    claimed = {k for keys in _RULE_KEYS.values() for k in keys}
    return precision not in _RULE_KEYS or key in _RULE_KEYS[precision] or key not in claimed


def one_by_one(precision: Optional[str]) -> bool:
    """Whether ``precision`` runs one sequence at a time (``Precision.per_row``); an unknown one does not."""
    return precision in PRECISIONS and PRECISIONS[str(precision)].per_row


def build_flag(precision: Optional[str]) -> str:
    """``build``'s flag for an engine of ``precision``: none for FP32, or a precision no engine has."""
    known = PRECISIONS.get(str(precision))
    return (known.build_flag if known is not None else None) or ""


def engine_precision(flags: Dict[str, bool]) -> str:
    """The precision ``build``'s flags ask for (``{"--fp16": True}`` -> fp16; none -> fp32)."""
    asked = [p.name for p in PRECISIONS.values() if p.build_flag and flags.get(p.build_flag)]
    return asked[0] if asked else "fp32"
