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
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import DataError, MissingPrerequisite
from .compare import Reference, SweepCase
from .readers import npz_arrays
from .store.files import parse_json
from .store.names import REFERENCE, made_by

__all__ = ["ReferenceSet", "read_reference", "reference_bytes"]


@dataclass(frozen=True)
class ReferenceSet:
    cases: List[SweepCase]
    references: List[Reference]
    meta: Dict[str, Any]

    def require_intrinsic(self, precision: str, path: Path, hinted: Optional[Path]) -> None:
        """Refuse a reference recorded before budgets existed, or without this precision's; the hint names
        directory ``hinted`` (``Store.hinted``)."""
        if any(precision not in r.intrinsic for r in self.references):
            raise MissingPrerequisite(f"{path} holds no {precision.upper()} budget (it predates them); "
                                      f"re-run {made_by(REFERENCE, hinted)}")


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


MAX_CASES = 10_000  # export writes about a dozen


def read_reference(data: bytes, where: Path) -> ReferenceSet:
    """The sweep saved by export, from ``reference.npz``'s bytes (the store read them): cases, the reference
    outputs and intrinsic errors per case, metadata. Read like any untrusted ``.npz`` (declared sizes
    against the archive and the memory left, never unpickled), then every array's shape and type checked
    against the cases it belongs to: a damaged file is one DataError naming the array."""
    arrays, _ = npz_arrays(str(where), io.BytesIO(data))
    meta_array = arrays.get("meta")
    if meta_array is None or meta_array.ndim != 0 or meta_array.dtype.kind != "U":
        raise DataError(f"{where}: 'meta' is missing or not a JSON string; expected the reference.npz attn-export "
                        "export wrote")
    meta = parse_json(str(meta_array).encode("utf-8"), f"{where}: meta")
    if not isinstance(meta, dict) or type(meta.get("cases")) is not int or not 1 <= meta["cases"] <= MAX_CASES:
        raise DataError(f"{where}: meta.cases is {str(meta.get('cases') if isinstance(meta, dict) else meta)[:40]}; "
                        f"expected a number of cases in 1..{MAX_CASES}")
    cases, references = [], []
    for i in range(meta["cases"]):
        x = _array(arrays, f"c{i}.x", where, 3, "f")
        lengths = _array(arrays, f"c{i}.lengths", where, 1, "iu")
        padded = _array(arrays, f"c{i}.padded", where, 0, "b")
        batch, seq = x.shape[:2]
        if lengths.shape != (batch,) or batch < 1 or seq < 1 or lengths.min() < 1 or lengths.max() > seq:
            raise DataError(f"{where}: c{i}.lengths has shape {lengths.shape} and values {lengths.min()}..{lengths.max()}; "
                            f"expected [{batch}] lengths in 1..{seq} (c{i}.x is {list(x.shape)})")
        cases.append(SweepCase(x.astype(np.float32, copy=False), lengths.astype(np.int64, copy=False), bool(padded)))
        outputs, intrinsic = {}, {}  # type: Dict[str, np.ndarray], Dict[str, Dict[str, np.ndarray]]
        for key in arrays:
            if key.startswith(f"c{i}.out."):
                value = _array(arrays, key, where, 2, "f")
                if value.shape[0] != batch:
                    raise DataError(f"{where}: {key} has shape {list(value.shape)}; expected [{batch}, ...] (one row per "
                                    f"sequence of c{i}.x)")
                outputs[key[len(f"c{i}.out."):]] = value
            elif key.startswith(f"c{i}.intrinsic."):
                precision, _, name = key[len(f"c{i}.intrinsic."):].partition(".")
                value = _array(arrays, key, where, 1, "f")
                if value.shape != (batch,) or not name:
                    raise DataError(f"{where}: {key} has shape {list(value.shape)}; expected [{batch}] (one per row)")
                intrinsic.setdefault(precision, {})[name] = value
        references.append(Reference(outputs, intrinsic))
    return ReferenceSet(cases, references, meta)


def _array(arrays: Mapping[str, np.ndarray], key: str, where: Path, ndim: int, kinds: str) -> np.ndarray:
    value = arrays.get(key)
    if value is None:
        raise DataError(f"{where}: array {key!r} is missing; expected the reference.npz attn-export export wrote")
    if value.ndim != ndim or value.dtype.kind not in kinds:
        raise DataError(f"{where}: {key} is {value.dtype} of shape {list(value.shape)}; expected rank {ndim} "
                        f"({'numbers' if 'f' in kinds else 'integers' if 'i' in kinds else 'a boolean'})")
    return value
