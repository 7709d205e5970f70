"""The one I/O contract: input and output names, dtypes and dynamic axes, declared once and read by
export, the backends, verify and the runtime. numpy only; Python 3.8-compatible (the device runtime).

    x        float32 [batch, seq, features]   raw features (normalisation is inside the graph)
    lengths  int64   [batch]                  steps at or past a sequence's length are padding
    logits | prediction | context  float32 [batch, outputs]
    attention float32 [batch, seq]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, Mapping, Tuple, Union

import numpy as np

from ..errors import BadInput, WorkFailed

__all__ = ["BATCH", "CLASSIFIERS", "HEAD_OUTPUT", "SEQ", "IOSpec", "TensorSpec", "class_logits", "top_margin"]

BATCH = "batch"
SEQ = "seq"
Dim = Union[str, int]
HEAD_OUTPUT = {"classification": "logits", "binary": "logits", "regression": "prediction", "none": "context"}
CLASSIFIERS = ("classification", "binary")  # heads whose output is logits, decided into labels


def class_logits(logits: np.ndarray) -> np.ndarray:
    """``logits`` [batch, classes] as per-class scores: a binary head's one logit z becomes [0, z], so that
    softmax gives [1 - sigmoid(z), sigmoid(z)], argmax says z > 0 and the top-two margin is |z|. Every
    decision, probability and agreement on logits goes through here (predict, verify, quantize)."""
    logits = np.asarray(logits)
    if logits.ndim == 2 and logits.shape[1] == 1:
        return np.concatenate([np.zeros_like(logits), logits], axis=1)
    return logits


def top_margin(scores: np.ndarray) -> np.ndarray:
    """Per row of ``scores`` [batch, classes] (``class_logits``), the top score's lead over the next."""
    top2 = np.sort(np.asarray(scores), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    dims: Tuple[Dim, ...]

    def to_dict(self) -> Dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}


@dataclass(frozen=True)
class IOSpec:
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]

    @classmethod
    def for_model(cls, features: int, outputs: int, head: str = "classification") -> IOSpec:
        return cls(
            inputs=(TensorSpec("x", "float32", (BATCH, SEQ, features)), TensorSpec("lengths", "int64", (BATCH,))),
            outputs=(TensorSpec(HEAD_OUTPUT[head], "float32", (BATCH, outputs)),
                     TensorSpec("attention", "float32", (BATCH, SEQ))),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> IOSpec:
        def specs(items: object) -> Tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t["name"], t["dtype"], tuple(t["dims"])) for t in items)  # type: ignore

        return cls(specs(d["inputs"]), specs(d["outputs"]))

    @classmethod
    def from_json(cls, text: str) -> IOSpec:
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> Dict[str, object]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def features(self) -> int:
        return int(self.inputs[0].dims[2])

    @property
    def output_names(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def head_output(self) -> str:
        return self.outputs[0].name

    def dynamic_axes(self) -> Dict[str, Dict[int, str]]:
        """torch.onnx's dynamic_axes, from the same declaration as everything else."""
        return {t.name: {i: d for i, d in enumerate(t.dims) if isinstance(d, str)} for t in self.inputs + self.outputs}

    def check_outputs(self, outputs: Mapping[str, np.ndarray], batch: int, seq: int, who: str) -> None:
        """WorkFailed naming ``who`` (the backend) when its outputs are not what a [batch, seq] request
        gives: every output by name, its shape and float32. A runtime under memory pressure has returned
        its previous buffers (OpenVINO: a 1 x 2048 result for a batch of 32); nothing uses those."""
        for t in self.outputs:
            got = outputs.get(t.name)
            want = tuple(batch if d == BATCH else seq if d == SEQ else d for d in t.dims)
            if got is None:
                raise WorkFailed(f"{who} returned no output '{t.name}' (it returned {sorted(outputs)}); expected "
                                 f"{t.name} {list(want)}")
            if got.shape != want or got.dtype != np.float32:
                raise WorkFailed(f"{who} returned {t.name} of shape {list(got.shape)} {got.dtype} for a batch of "
                                 f"{batch} x {seq} steps; expected {list(want)} float32")

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise BadInput naming what is wrong and what was expected; nothing reaches a runtime unchecked."""
        names = [t.name for t in self.inputs]
        if sorted(feeds) != sorted(names):
            raise BadInput(f"inputs {sorted(feeds)} given; expected exactly {names}")
        x, lengths = feeds["x"], feeds["lengths"]
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise BadInput(f"x has shape {getattr(x, 'shape', None)}; expected rank 3 [batch, seq, {self.features}]")
        if x.shape[2] != self.features:
            raise BadInput(f"x has {x.shape[2]} features per step; the model expects {self.features}")
        if x.dtype != np.float32:
            raise BadInput(f"x has dtype {x.dtype}; expected float32")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise BadInput(f"x has shape {x.shape}; batch and seq must be at least 1")
        if not isinstance(lengths, np.ndarray) or lengths.shape != (x.shape[0],):
            raise BadInput(f"lengths has shape {getattr(lengths, 'shape', None)}; expected [{x.shape[0]}] (one per sequence)")
        if lengths.dtype != np.int64:
            raise BadInput(f"lengths has dtype {lengths.dtype}; expected int64")
        if lengths.min() < 1 or lengths.max() > x.shape[1]:
            raise BadInput(f"lengths must lie in 1..{x.shape[1]} (the seq axis); got {lengths.min()}..{lengths.max()}")
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise BadInput(f"x holds a non-finite value at [batch {bad[0]}, step {bad[1]}, feature {bad[2]}]; "
                           "inputs must be finite (see [data] missing in the recipe)")
