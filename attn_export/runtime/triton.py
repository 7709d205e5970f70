"""Triton Inference Server model configurations (``config.pbtxt``) for a bundle made with ``--for triton``.

    model_repository/attention_lstm/config.pbtxt          model.onnx, dynamic batching
    model_repository/attention_lstm/1/model.onnx
    model_repository/attention_lstm_stream/config.pbtxt   model.stream.onnx, sequence batching, implicit state
    model_repository/attention_lstm_stream/1/model.onnx

Both run on Triton's ONNX Runtime backend (``platform: "onnxruntime_onnx"``). A per-sequence ``lengths``
input is ``dims: [ 1 ]`` reshaped to the graph's ``[batch]``. The stream model keeps its state inside
Triton (``sequence_batching.state``): every ``state_in_<name>`` / ``state_out_<name>`` pair of the stream
graph (``streaming.STATE``), whose names sort alike in and out, with an ``initial_state`` of zeros, which
Triton applies at the start of each sequence (``sequence_start``): the zero state is the stream graph's
start state, so that is the reset, and no control input is fed to the graph. Both pin their instances to the
CPU, one instance (``instance_group``; Triton's default is two, each with ONNX Runtime's threads on every
core): verify judged the graphs on ONNX Runtime's CPU execution provider, and Triton would
otherwise put one instance on each GPU it sees, on the CUDA provider, which nothing verified (and which runs
FP32 as TF32 on Ampere and later unless told not to). Text written here, checked in the tests by parsing it
into tritonclient's own ``ModelConfig`` message; no Triton server ran here.
"""

from __future__ import annotations

from typing import List

from .iospec import IOSpec, TensorSpec
from .streaming import STATE, state_name

__all__ = ["MODEL_NAME", "REPOSITORY", "STREAM_MODEL_NAME", "model_config"]

# what runs Triton's models here: its ONNX Runtime backend on the CPU (instance_group KIND_CPU), whose pass
# verify must have recorded for each graph a Triton bundle ships
JUDGED_BY = "ort-cpu"
REPOSITORY = "model_repository"
MODEL_NAME = "attention_lstm"
STREAM_MODEL_NAME = "attention_lstm_stream"
IDLE_MICROSECONDS = 60_000_000  # a stream silent for a minute is dropped and its state slot freed
_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "int32": "TYPE_INT32", "float16": "TYPE_FP16"}


def _dims(t: TensorSpec) -> List[int]:
    """The tensor's dimensions past the batch, a symbolic one as -1."""
    return [d if isinstance(d, int) else -1 for d in t.dims[1:]]


def _tensor(t: TensorSpec) -> str:
    dims = _dims(t)
    if not dims:  # [batch]: one value per request, reshaped to the graph's rank-1 tensor
        return f'  {{ name: "{t.name}" data_type: {_TYPES[t.dtype]} dims: [ 1 ] reshape: {{ shape: [ ] }} }}'
    return f'  {{ name: "{t.name}" data_type: {_TYPES[t.dtype]} dims: [ {", ".join(str(d) for d in dims)} ] }}'


def model_config(name: str, spec: IOSpec, max_batch: int, stream: bool = False) -> str:
    """``config.pbtxt`` for the graph ``spec`` describes: the whole-sequence model with dynamic batching,
    or (``stream``) the stream graph with sequence batching and its state kept by Triton."""
    inputs = [t for t in spec.inputs if not t.name.startswith("state_in_")]
    outputs = [t for t in spec.outputs if not t.name.startswith("state_out_")]
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch}",
             "input [", ",\n".join(_tensor(t) for t in inputs), "]",
             "output [", ",\n".join(_tensor(t) for t in outputs), "]",
             # what verify judged, one instance: Triton's default is two on the CPU, each with ONNX Runtime's threads
             # on every core (found by attacking; module docs)
             "instance_group [ { count: 1 kind: KIND_CPU } ]"]
    if not stream:
        return "\n".join(lines + ["dynamic_batching { }", ""])
    by_name = {t.name: t for t in spec.inputs}
    states = []
    for n in STATE:
        t = by_name[state_name(n, "in")]
        dims = ", ".join(str(d) for d in _dims(t))
        states.append(f'    {{\n      input_name: "{t.name}"\n      output_name: "{state_name(n, "out")}"\n'
                      f"      data_type: {_TYPES[t.dtype]}\n      dims: [ {dims} ]\n"
                      f'      initial_state: {{ name: "zeros" data_type: {_TYPES[t.dtype]} dims: [ {dims} ] '
                      "zero_data: true }\n    }")
    lines += ["sequence_batching {", f"  max_sequence_idle_microseconds: {IDLE_MICROSECONDS}", "  state [",
              ",\n".join(states), "  ]", "}", ""]
    return "\n".join(lines)
