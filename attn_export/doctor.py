"""``attn-export doctor``: what this machine can run, and why not.

Every backend (available, or the reason it is not); the versions of torch, onnx, onnxruntime (and which
package provides it: ``onnxruntime`` and ``onnxruntime-gpu`` install the same module), OpenVINO, tract,
TensorRT and cuda-python; the GPUs with their compute capability (asked of the driver); ONNX Runtime's providers; and the
path ``build`` would take for each precision on the installed TensorRT.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any, Dict, List, Optional

__all__ = ["diagnose", "render"]


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch() -> Dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"version": None, "cuda": None, "cuda_available": False}
    return {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": bool(torch.cuda.is_available())}


def _tensorrt() -> Dict[str, Any]:
    from .runtime.trt.importer import tensorrt_missing
    from .runtime.trt.precision import Capability, plan_summary

    reason = tensorrt_missing()
    out: Dict[str, Any] = {"version": None, "reason": reason, "stubs": _version("tensorrt-stubs"),
                           "capability": None}
    cap = None
    if reason is None:
        import tensorrt as trt

        cap = Capability.probe(trt)
        out["version"] = cap.version
        out["capability"] = cap.to_dict()
    out["build_paths"] = plan_summary(cap)
    return out


def diagnose() -> Dict[str, Any]:
    """Everything ``doctor`` reports, as data."""
    from .backends import REGISTRY
    from .runtime.backends.onnxrt import EXACT_INT8, exact_int8, ort_providers, signs_weights
    from .runtime.backends.ortgpu import ort_distribution
    from .runtime.precisions import ONNX_FILES
    from .runtime.timing import cpu_name
    from .runtime.trt.device import query_gpus
    from .runtime.trt.importer import is_jetson

    gpus = query_gpus()
    # which packages provide the onnxruntime module (onnxruntime and onnxruntime-gpu both do), apart from its
    # version: the JSON said "onnxruntime": "onnxruntime 1.32.0" beside bare versions (found by attacking)
    ort = dict(entry.rsplit(" ", 1) for entry in (ort_distribution() or "").split(", ") if entry)
    backends: List[Dict[str, Any]] = []
    for name, cls in REGISTRY.items():
        reason = cls.available()
        # ``precisions``: the graphs it runs; ``computes``: the precision it computes them in where that is
        # its own (openvino-bf16 runs model.onnx in bf16, and verify.json judges it as bf16), else null
        backends.append({"name": name, "kind": cls.kind, "device": cls.device, "precisions": list(cls.precisions),
                         "computes": cls.computes, "available": reason is None, "reason": reason})
    cpu, isa = cpu_name()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        # the speed of a precision, and how ONNX Runtime adds INT8 products, are the CPU's (``exact_int8``,
        # ``signs_weights``): the option each INT8 graph's sessions get, and those opened with s8 weights
        "cpu": {"name": cpu, "isa": isa,
                "onnxruntime_int8": {ONNX_FILES[p]: "=".join(exact_int8(p) or ()) or None for p in EXACT_INT8},
                "onnxruntime_int8_signed": [ONNX_FILES[p] for p in EXACT_INT8 if signs_weights(p)]},
        "jetson": is_jetson(),
        "packages": {
            "attn-export": _version("attn-export"),
            "numpy": _version("numpy"),
            "onnx": _version("onnx"),
            "onnxruntime": ", ".join(dict.fromkeys(ort.values())) or None,
            "openvino": _version("openvino"),
            "tract": _version("tract"),
            "cuda-python": _version("cuda-python") or _version("cuda-bindings"),
        },
        "onnxruntime_packages": ort,
        "torch": _torch(),
        "tensorrt": _tensorrt(),
        "gpus": gpus.to_dict(),
        "onnxruntime_providers": ort_providers(),
        "backends": backends,
    }


def render(report: Dict[str, Any]) -> List[str]:
    """The report as plain lines for a terminal."""
    from .runtime.backends.onnxrt import VNNI
    from .runtime.precisions import ONNX_FP32

    lines = [f"Python {report['python']} on {report['platform']}" + (" (Jetson)" if report["jetson"] else "")]
    torch = report["torch"]
    packages = dict(report["packages"])
    packages["torch"] = (f"{torch['version']} (CUDA {torch['cuda'] or 'none'})" if torch["version"] else None)
    trt = report["tensorrt"]
    packages["tensorrt"] = trt["version"] or (f"not installed (tensorrt-stubs {trt['stubs']} only)"
                                              if trt["stubs"] else None)
    found = report["onnxruntime_packages"]
    if found:  # {"onnxruntime-gpu": "1.20.0"} -> "1.20.0 (package onnxruntime-gpu)"
        packages["onnxruntime"] = ", ".join(f"{version} (package {dist})" for dist, version in found.items()) + (
            "; both provide the onnxruntime module: keep one" if len(found) > 1 else "")
    lines.append("packages:")
    width = max(len(name) for name in packages)
    for name, version in packages.items():
        lines.append(f"  {name:<{width}} {version or 'not installed'}")
    cpu = report["cpu"]
    lines.append(f"CPU: {cpu['name']}" + (f" ({', '.join(cpu['isa'])})" if cpu["isa"] else ""))
    options, signed = cpu["onnxruntime_int8"], cpu["onnxruntime_int8_signed"]
    why = ("VNNI adds INT8 products exactly, and without AMX its u8 x s8 kernels are the faster ones: the dynamic "
           "graph's u8 weights are given to ONNX Runtime as s8, the same integers" if signed else
           "not x86: its kernels add INT8 products exactly" if not any(options.values()) else
           "ISA flags unknown: every option set" if not cpu["isa"] else
           "VNNI adds INT8 products exactly; with AMX the dynamic graph's u8 x u8 kernels are the faster ones at "
           "batch 1, and its option gives an older graph's s8 weights the u8 form quantize now writes"
           if set(VNNI) & set(cpu["isa"]) else
           "no VNNI: each option keeps its graph's INT8 products exact; the dynamic graph's matters only for an "
           "older graph with s8 weights: quantize now writes u8")
    lines.append("ONNX Runtime INT8 sessions here (stream graphs alike): " + "; ".join(
        f"{name} {'with ' + option if option else 'with its u8 weights as s8' if name in signed else 'as is'}"
        for name, option in options.items()) + f" ({why})")
    gpus = report["gpus"]
    lines.append("GPUs:" + ("" if gpus["gpus"] else f" none ({gpus['reason']})"))
    for g in gpus["gpus"]:
        lines.append(f"  {g['index']}: {g['name']}, compute capability {g['compute_capability']}, "
                     f"{g['memory_mib']} MiB (driver CUDA {gpus['driver_cuda']})")
    providers = report["onnxruntime_providers"]
    lines.append(f"ONNX Runtime providers: {', '.join(providers) if providers is not None else 'onnxruntime not installed'}")
    lines.append("TensorRT build paths" + (f" (TensorRT {trt['version']}):" if trt["version"]
                                           else f": none ({trt['reason']})"))
    if trt["version"]:
        for precision, path in trt["build_paths"].items():
            lines.append(f"  {precision:<9} {path}")
    lines.append("backends:")
    width = max((len(b["name"]) for b in report["backends"]), default=0)  # openvino-bf16 slipped past 10
    for b in report["backends"]:
        state = "available" if b["available"] else f"unavailable: {b['reason']}"
        computes = f"{ONNX_FP32} computed in {b['computes']}; " if b["computes"] else ""
        lines.append(f"  {b['name']:<{width}} {computes}{state}")
    return lines
