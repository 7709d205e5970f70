"""``reference.npz``: the verification sweep's inputs, PyTorch FP32's outputs on them, and each row's
intrinsic error per precision (the budget's yardstick), so that a device without torch judges parity by
the same numbers. numpy only; Python 3.8-compatible; read without pickle.

Layout: ``meta`` (a JSON string: ``cases``, ``head``, ``source_sha256``, ``io_spec``, ``labels``,
``intrinsic``), then per case ``i``: ``c{i}.x``, ``c{i}.lengths``, ``c{i}.padded``, ``c{i}.out.{output}``
and ``c{i}.intrinsic.{precision}.{output}`` ([batch] float32).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from .compare import Reference, SweepCase
from ..errors import BadInput, MissingPrerequisite

__all__ = ["ReferenceSet", "read_reference", "reference_bytes"]


@dataclass(frozen=True)
class ReferenceSet:
    cases: List[SweepCase]
    references: List[Reference]
    meta: Dict[str, Any]

    def require_intrinsic(self, precision: str, path: Path) -> None:
        """Refuse a reference recorded before budgets existed, or without this precision's."""
        if any(precision not in r.intrinsic for r in self.references):
            raise MissingPrerequisite(f"{path} holds no {precision.upper()} budget (it predates them); "
                                      "re-run attn-export export")


def reference_bytes(cases: Sequence[SweepCase], references: Sequence[Reference], meta: Mapping[str, Any]) -> bytes:
    arrays: Dict[str, np.ndarray] = {"meta": np.array(json.dumps({**meta, "cases": len(cases)}))}
    for i, (case, ref) in enumerate(zip(cases, references)):
        arrays[f"c{i}.x"] = case.x
        arrays[f"c{i}.lengths"] = case.lengths
        arrays[f"c{i}.padded"] = np.array(case.padded)
        for name, value in ref.outputs.items():
            arrays[f"c{i}.out.{name}"] = value
        for precision, by_output in ref.intrinsic.items():
            for name, value in by_output.items():
                arrays[f"c{i}.intrinsic.{precision}.{name}"] = np.asarray(value, np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stubs type **kwds as allow_pickle
    return buffer.getvalue()


def read_reference(path: Path) -> ReferenceSet:
    """The sweep saved by export: cases, the reference outputs and intrinsic errors per case, metadata."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data["meta"]))
        cases, references = [], []
        for i in range(int(meta["cases"])):
            cases.append(SweepCase(data[f"c{i}.x"], data[f"c{i}.lengths"], bool(data[f"c{i}.padded"])))
            outputs, intrinsic = {}, {}  # type: Dict[str, np.ndarray], Dict[str, Dict[str, np.ndarray]]
            for key, value in data.items():
                if key.startswith(f"c{i}.out."):
                    outputs[key[len(f"c{i}.out."):]] = value
                elif key.startswith(f"c{i}.intrinsic."):
                    precision, name = key[len(f"c{i}.intrinsic."):].split(".", 1)
                    intrinsic.setdefault(precision, {})[name] = value
            references.append(Reference(outputs, intrinsic))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path} is not a readable reference.npz: {e}") from None
    return ReferenceSet(cases, references, meta)
