"""Which path ``build --fp16 | --int8`` takes on the installed TensorRT, decided from what it has.

TensorRT 11 removed the FP16/INT8 builder flags: every network is strongly typed and precision lives in
the ONNX (``model.fp16.onnx``, ``model.int8-qdq.onnx``). TensorRT 9/10 have ``STRONGLY_TYPED`` as an
opt-in and still have the flags; 8.5/8.6 (JetPack 5/6.0) have only the flags. So every precision builds
from its own graph, strongly typed where the network flag exists, with the builder flag as the fallback
where it does not; a precision neither can honour is an error, never a quiet downgrade.

The decision reads a ``Capability``: the version and which attributes the module has (``hasattr``), not
guesses from the version number. Pure Python; Python 3.8-compatible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...errors import BadInput, NotAvailable
from ..precisions import ENGINE_PRECISIONS, PRECISIONS
from ..store.names import STREAM_FILES

__all__ = ["BuildPlan", "Capability", "decide", "float32_layers", "fp32_layers_reduced", "parse_version", "plan_summary"]


def parse_version(text: str) -> Tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@dataclass(frozen=True)
class Capability:
    """What the installed TensorRT module has, as the build path needs to know it."""

    version: str
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (9.x+; the only mode on 11)
    explicit_batch: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (needed on 8.x; gone in 11)
    fp16_flag: bool  # BuilderFlag.FP16 (gone in 11)
    int8_flag: bool  # BuilderFlag.INT8 (gone in 11)
    int64: bool  # DataType.INT64 (10.0+; 8.x casts INT64 inputs to INT32)
    progress_monitor: bool  # IProgressMonitor (10.0+)
    hardware_compat: bool  # HardwareCompatibilityLevel (8.6+)
    version_compat: bool  # BuilderFlag.VERSION_COMPATIBLE (8.6+)
    # BuilderFlag.OBEY_PRECISION_CONSTRAINTS and ILayer.set_output_type (8.2+; gone in 11 with the flags)
    precision_constraints: bool = True

    @classmethod
    def probe(cls, trt: Any) -> Capability:
        """Read the capability off the imported ``tensorrt`` module."""
        network_flags = trt.NetworkDefinitionCreationFlag
        return cls(
            version=str(trt.__version__),
            strongly_typed=hasattr(network_flags, "STRONGLY_TYPED"),
            explicit_batch=hasattr(network_flags, "EXPLICIT_BATCH"),
            fp16_flag=hasattr(trt.BuilderFlag, "FP16"),
            int8_flag=hasattr(trt.BuilderFlag, "INT8"),
            int64=hasattr(trt.DataType, "INT64"),
            progress_monitor=hasattr(trt, "IProgressMonitor"),
            hardware_compat=hasattr(trt, "HardwareCompatibilityLevel"),
            version_compat=hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE"),
            precision_constraints=(hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS")
                                   and hasattr(trt.ILayer, "set_output_type")),
        )

    @property
    def major_minor(self) -> str:
        v = parse_version(self.version)
        return ".".join(str(p) for p in v[:2])

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BuildPlan:
    """How one precision is built on one TensorRT."""

    precision: str
    source: str  # the ONNX file it builds from
    strongly_typed: bool
    explicit_batch: bool
    builder_flags: Tuple[str, ...]  # BuilderFlag names to set (weak typing only)
    lengths_dtype: str  # what the engine's ``lengths`` input is: int64, or int32 where TensorRT has no INT64
    # weak typing with the FP16 flag lets TensorRT run any layer in FP16, the ones the FP16 graph keeps in FP32
    # (the normalisation, the mask, the softmax) too: those are pinned to FP32 (OBEY_PRECISION_CONSTRAINTS), so
    # the engine computes in the graph's own types, as a strongly typed build does (found by review)
    pin_float32: bool = False

    def describe(self) -> str:
        how = ("strongly typed network (precision from the graph)" if self.strongly_typed
               else "weakly typed network" + (" + builder flag " + "/".join(self.builder_flags)
                                              if self.builder_flags else "")
               + (", the graph's FP32 layers pinned to FP32" if self.pin_float32 else ""))
        lengths = "" if self.lengths_dtype == "int64" else f"; lengths as {self.lengths_dtype}"
        return f"{self.precision}: {self.source}, {how}{lengths}"

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["builder_flags"] = list(self.builder_flags)
        return d

    def recorded(self) -> Dict[str, Any]:
        """What an engine's manifest entry records of this plan, under ``build`` (``fp32_layers_reduced`` reads
        it back); TF32 is always off."""
        return {"strongly_typed": self.strongly_typed, "builder_flags": list(self.builder_flags), "tf32": False,
                "pin_float32": self.pin_float32}


def fp32_layers_reduced(entry: Mapping[str, Any]) -> bool:
    """Whether the engine recorded as ``entry`` may run the layers its graph keeps in FP32 (the normalisation)
    in FP16: built weakly typed with the FP16 flag and not pinned (``BuildPlan.pin_float32``; an engine built
    before attn-export pinned them). Found by review: this was read from the entry's top level, where nothing
    records it, so every FP16 engine had the narrower range."""
    build = entry.get("build")
    build = build if isinstance(build, Mapping) else {}
    return ("FP16" in (build.get("builder_flags") or ()) and not build.get("strongly_typed")
            and not build.get("pin_float32"))


def decide(precision: str, cap: Capability, version_compatible: bool = False,
           hardware_compatible: bool = False, stream: bool = False) -> BuildPlan:
    """The build path for ``precision`` (of the stream graph: ``stream``) on TensorRT ``cap``; NotAvailable
    when it cannot be honoured."""
    if precision not in ENGINE_PRECISIONS:
        raise BadInput(f"precision '{precision}' cannot be built into an engine; expected one of "
                       f"{', '.join(ENGINE_PRECISIONS)} (int8-dynamic is ONNX Runtime's CPU format)")
    source = STREAM_FILES[precision] if stream else str(PRECISIONS[precision].file)
    where = f"TensorRT {cap.version}"
    if version_compatible and not cap.version_compat:
        raise NotAvailable(f"{where} cannot build version-compatible engines (needs TensorRT 8.6 or newer)")
    if hardware_compatible and not cap.hardware_compat:
        raise NotAvailable(f"{where} cannot build hardware-compatible engines (needs TensorRT 8.6 or newer)")
    lengths = "int64" if cap.int64 else "int32"
    if cap.strongly_typed:
        return BuildPlan(precision, source, True, False, (), lengths)
    flags = PRECISIONS[precision].builder_flags  # weak typing: the flag that lets TensorRT take the graph's
    missing = [f for f in flags if not getattr(cap, f"{f.lower()}_flag")]
    if missing:
        raise NotAvailable(f"{where} can build {precision} neither strongly typed (no STRONGLY_TYPED network "
                           f"flag) nor with the builder flag {'/'.join(missing)}: it cannot honour {precision}")
    pin = "FP16" in flags
    if pin and not cap.precision_constraints:
        raise NotAvailable(f"{where} has no OBEY_PRECISION_CONSTRAINTS (TensorRT 8.2 and later have): its --fp16 "
                           f"would let layers the graph keeps in FP32 run in FP16, which verify never judged")
    return BuildPlan(precision, source, False, cap.explicit_batch, flags, lengths, pin)


def float32_layers(network: Any, float32: Any) -> List[Any]:
    """The layers of a parsed, weakly typed ``network`` (TensorRT's ``INetworkDefinition``) whose every output is
    ``float32`` (``trt.float32``): what the graph computes in FP32, which ``BuildPlan.pin_float32`` pins. Parsed
    without strong typing, a tensor's type is still inferred from the graph's (an FP16 initializer is HALF, a
    Cast to float gives FLOAT); the builder flag then only permits other precisions."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    return [layer for layer in layers if layer.num_outputs
            and all(layer.get_output(k).dtype == float32 for k in range(layer.num_outputs))]


def plan_summary(cap: Optional[Capability]) -> Dict[str, str]:
    """Each precision's path on ``cap``, or why it has none (what ``doctor`` shows)."""
    out = {}
    for p in ENGINE_PRECISIONS:
        if cap is None:
            out[p] = "no TensorRT"
            continue
        try:
            out[p] = decide(p, cap).describe()
        except (NotAvailable, BadInput) as e:
            out[p] = f"impossible: {e}"
    return out
