"""``attn-export build``: a TensorRT engine from the precision-specific ONNX, with the TensorRT Python API.

    attn-export build [DIR] [--fp16 | --int8] [--stream] [--min-seq/--opt-seq/--max-seq N] [--max-batch N]
                      [--workspace MiB] [--timing-cache PATH] [--hardware-compat] [--version-compat]

One code path across TensorRT 8.5, 10.x and 11.x, gated on what the installed module has (precision.py):
the graph carries the precision (``model.fp16.onnx``, ``model.int8-qdq.onnx``), the network is strongly
typed where TensorRT has the flag, and the FP16/INT8 builder flags are the fallback where it does not.
The profile covers ``x`` and ``lengths`` (profile.py); ``--stream`` builds the stream graph of the precision
(``model.stream.onnx``, ...), whose profile has a chunk axis and its state inputs fixed by the batch. The engine is written atomically under a name that
carries precision, GPU and TensorRT version (naming.py) and recorded in the manifest with everything
``compat.py`` checks before it is ever deserialised. Nothing is written unless the build succeeds.

This is the only module that builds with TensorRT; it imports ``tensorrt`` inside functions, after
``require_tensorrt`` said it is there, so the package imports without it.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from .. import store
from ..bundle import made_for
from ..store import Artifact
from ...errors import BadInput, ConfigError, MissingPrerequisite, NotAvailable, WorkFailed
from ..iospec import IOSpec
from ..modelinfo import ModelInfo
from ..settings import BuildConfig
from .compat import platform_of
from .device import Gpu, query_gpus
from .naming import engine_name
from .precision import BuildPlan, Capability, decide, float32_layers, parse_version
from ..streaming import not_streamable, state_dims, stream_spec
from .profile import Profile, derive_profile, stream_profile
from .readiness import refuse_other

MAX_TIMING_CACHE_BYTES = 256 << 20  # a timing cache holds one entry per tactic tried: megabytes

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["BuildOptions", "BuildResult", "ProgressCallback", "build_engine", "hardware_compat_problem", "preflight"]

# (phase name, steps done, steps in the phase, nesting depth); phases nest (TensorRT's parent_phase)
ProgressCallback = Callable[[str, int, int, int], None]
# makes DIR's graph of a precision (the host's attn-export quantize); the device has none
MakeSource = Callable[[Path, str], None]
HARDWARE_LEVELS = {"ampere-plus": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


PROFILE_KEYS = ("min_batch", "opt_batch", "max_batch", "min_seq", "opt_seq", "max_seq", "workspace_mib")


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"  # fp32 | fp16 | int8-qdq
    min_batch: int = 0  # 0: the recipe's [build] value, else the default (profile.py)
    opt_batch: int = 0
    max_batch: int = 0
    min_seq: int = 0
    opt_seq: int = 0
    max_seq: int = 0
    workspace_mib: int = 0  # 0: the recipe's build.workspace_mib
    timing_cache: Optional[Path] = None
    hardware_compat: Optional[str] = None  # None | ampere-plus | same-compute-capability
    version_compat: bool = False
    device: int = 0
    target: Optional[str] = None  # the TensorRT line the caller says this machine is (readiness.TARGETS)
    stream: bool = False  # the stream graph (--stream): the seq flags set its chunk axis

    def check(self) -> None:
        """The profile flags given (non-zero) against the bounds and order of a recipe's [build] table:
        BadInput, before anything is looked for (the recipe's own values join them in ``build_engine``)."""
        given = {key: getattr(self, key) for key in PROFILE_KEYS if getattr(self, key)}
        try:
            BuildConfig(**given)
        except ConfigError as e:
            raise BadInput(f"the build flags: {e}") from None


@dataclass
class BuildResult:
    engine: str
    entry: Dict[str, Any]
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"engine": self.engine, "notes": self.notes, **self.entry}


def preflight(device: int = 0, directory: Optional[Path] = None, target: Optional[str] = None) -> Gpu:
    """The GPU to build on, or NotAvailable with one line naming everything missing and how to get it;
    first, a ``directory`` that is none is MissingPrerequisite, and a bundle in it made for another
    TensorRT line than ``target`` BadInput. Nothing is written."""
    from .importer import tensorrt_missing

    if directory is not None:
        if not directory.is_dir():  # found by a user: a mistyped path said "cannot build here" (exit 3)
            raise MissingPrerequisite(f"{directory} is not a directory; expected the artefact directory or unpacked "
                                      "bundle to build in")
        refuse_other(made_for(directory), target, machine=platform.machine())
    gpus = query_gpus()
    missing = []
    if not gpus.gpus:
        missing.append(str(gpus.reason))
    elif device >= len(gpus.gpus):
        missing.append(f"no CUDA device {device} (this machine has {len(gpus.gpus)})")
    trt_reason = tensorrt_missing()
    if trt_reason:
        missing.append(trt_reason)
    if missing:
        raise NotAvailable("cannot build a TensorRT engine here: " + "; ".join(missing))
    return gpus.gpus[device]


def hardware_compat_problem(level: Optional[str], gpu: Gpu) -> Optional[str]:
    """Why TensorRT would not build a hardware-compatible engine (``level``) on ``gpu``, None when it would: not
    on a Jetson, and AMPERE_PLUS only from an Ampere or later GPU (TensorRT's Hardware Compatibility section;
    found by review: a late build error before)."""
    if not level:
        return None
    if gpu.integrated:
        return (f"--hardware-compat {level}: TensorRT builds hardware-compatible engines only for discrete GPUs, "
                f"not on JetPack ({gpu.name}); build without it")
    if level == "ampere-plus" and parse_version(gpu.compute_capability) < (8, 0):
        return (f"--hardware-compat ampere-plus builds only on an Ampere or later GPU (compute capability 8.0+); "
                f"{gpu.name} is {gpu.compute_capability}")
    return None


def _resolve(options: BuildOptions, info: ModelInfo) -> BuildOptions:
    """Flags over the recipe's [build] table; zeros left for profile.py to derive."""
    values: Dict[str, int] = {}
    for key in PROFILE_KEYS:
        values[key] = getattr(options, key) or getattr(info.build, key)
    try:  # the bounds and order a recipe's [build] table is held to (a flag is a recipe value given late)
        BuildConfig(**values)
    except ConfigError as e:
        raise BadInput(f"the build profile (flags over the recipe's [build] table): {e}") from None
    return replace(options, min_batch=values["min_batch"], opt_batch=values["opt_batch"],
                   max_batch=values["max_batch"], min_seq=values["min_seq"], opt_seq=values["opt_seq"],
                   max_seq=values["max_seq"], workspace_mib=values["workspace_mib"] or 1024)


def _source(directory: Path, plan: BuildPlan, say: Callable[[str], None], make: Optional[MakeSource]) -> Artifact:
    """The ONNX this precision builds from, as the store vouches for it (its bytes are what TensorRT parses);
    ``make`` (the host's quantize) makes model.fp16.onnx when it is missing or stale; the device has no
    converter and says where to make it."""
    s = store.Store(directory)
    s.open(store.ONNX_FP32, need="current")
    if s.is_stream(plan.source):  # the stream graph first, which attn-export export --stream makes
        s.open(store.STREAM_ONNX, need="current")
    if plan.precision == "fp32":
        return s.open(plan.source, need="current")
    trust = s.state(plan.source)
    if trust.current:
        return s.open(plan.source, need="current")
    reason = "missing" if trust.state == "missing" else f"not usable ({trust.reason})"
    path = directory / plan.source
    if make is None:  # the device's: it has no quantiser, nor the training data Q/DQ calibrates on (review)
        raise MissingPrerequisite(f"{path} is {reason}: make it on the host ({store.made_by(plan.source)}) and bring "
                                  "it in the bundle")
    if plan.precision == "int8-qdq":
        raise MissingPrerequisite(f"{path} is {reason}: run {store.made_by(plan.source, s.hinted())} first; it "
                                  "calibrates on the training data")
    say(f"{plan.source} is {reason}: making it (attn-export quantize --fp16)")
    make(directory, plan.precision)
    return store.Store(directory).open(plan.source, need="current")


def _logger() -> Tuple[trt.ILogger, List[str]]:
    """A TensorRT logger that keeps every warning and error, and the list it keeps them in (the class is
    made here, after TensorRT was found, so that this module imports without it)."""
    import tensorrt as trt

    class Collecting(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: List[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(f"[{str(severity).split('.')[-1]}] {' '.join(msg.split())}")

    logger = Collecting()
    return logger, logger.messages


def _monitor(callback: ProgressCallback) -> trt.IProgressMonitor:
    import tensorrt as trt

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: Dict[str, int] = {}
            self.depth: Dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            self.depth[phase_name] = self.depth.get(parent_phase or "", -1) + 1
            callback(phase_name, 0, num_steps, self.depth[phase_name])

        def step_complete(self, phase_name: str, step: int) -> bool:
            callback(phase_name, step + 1, self.steps.get(phase_name, 0), self.depth.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            n = self.steps.pop(phase_name, 0)
            callback(phase_name, n, n, self.depth.pop(phase_name, 0))

    return Monitor()


def _numpy_dtype(dtype: trt.DataType) -> str:
    import tensorrt as trt

    names = {trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16", trt.DataType.INT32: "int32"}
    if hasattr(trt.DataType, "INT64"):
        names[trt.DataType.INT64] = "int64"
    return names.get(dtype, str(dtype))


def _errors(parser: trt.OnnxParser) -> List[str]:
    return [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]


@store.writes_directory("build")
def build_engine(directory: Path, options: Optional[BuildOptions] = None, say: Callable[[str], None] = lambda s: None,
                 progress: Optional[ProgressCallback] = None, make: Optional[MakeSource] = None) -> BuildResult:
    """Build DIR's ONNX into an engine (``options``: FP32 on the recipe's profile when None); see the module
    docstring. A bundle made for another TensorRT line than ``options.target`` is BadInput, before anything
    else; then NotAvailable (exit 3) when this machine has no GPU or no TensorRT, or a TensorRT of another line
    than the bundle's, before anything is written."""
    options = BuildOptions() if options is None else options
    if not isinstance(options, BuildOptions):  # found by attacking: a dict was an AttributeError from inside
        raise BadInput(f"options = {options!r} is of type {type(options).__name__}; expected a BuildOptions or None")
    info = store.Store(directory).model()  # what was asked is checked first: bad input is exit 2 on any machine
    options = _resolve(options, info)
    if options.hardware_compat and options.hardware_compat not in HARDWARE_LEVELS:
        raise BadInput(f"hardware compatibility '{options.hardware_compat}' is unknown; expected one of "
                       f"{', '.join(HARDWARE_LEVELS)}")
    if options.stream:
        reason = not_streamable(info.recipe["model"])
        if reason is not None:
            raise BadInput(f"{directory} holds a model that cannot stream: {reason}")
    gpu = preflight(options.device, directory, options.target)
    problem = hardware_compat_problem(options.hardware_compat, gpu)
    if problem is not None:
        raise NotAvailable(problem)
    if options.device:  # the builder builds on the current device: device 0 unless selected
        from .memory import select_device

        select_device(options.device)
    import tensorrt as trt

    cap = Capability.probe(trt)
    refuse_other(made_for(directory), None, cap.version, platform.machine())
    plan = decide(options.precision, cap, options.version_compat, bool(options.hardware_compat), options.stream)
    level = HARDWARE_LEVELS.get(options.hardware_compat or "")
    if level and not hasattr(trt.HardwareCompatibilityLevel, level):  # 8.6 has AMPERE_PLUS only
        raise NotAvailable(f"TensorRT {cap.version} has no hardware compatibility '{options.hardware_compat}' "
                           "(TensorRT 10 added same-compute-capability)")
    spec = stream_spec(info) if options.stream else info.spec
    if options.stream:
        profile, notes = stream_profile(spec.features, info.train_lengths, state_dims(spec), options.min_batch,
                                        options.opt_batch, options.max_batch, options.min_seq, options.opt_seq,
                                        options.max_seq)
    else:
        profile, notes = derive_profile(spec.features, info.train_lengths, options.min_batch,
                                        options.opt_batch, options.max_batch, options.min_seq, options.opt_seq,
                                        options.max_seq)
    source = _source(directory, plan, say, make)
    name = engine_name(plan.precision, gpu.name, cap.version, options.hardware_compat, options.version_compat,
                       options.stream)
    say(f"building {name}: {plan.describe()}; profile {profile}; workspace {options.workspace_mib} MiB")

    started = time.perf_counter()
    plan_bytes, io_spec, host_code = _build(cap, plan, source, spec, profile, options, progress)
    seconds = time.perf_counter() - started

    target = directory / name
    with store.atomic_path(target) as tmp:
        tmp.write_bytes(plan_bytes)
    build_options = {
        "workspace_mib": options.workspace_mib, "timing_cache": str(options.timing_cache) if options.timing_cache
        else None, "hardware_compat": options.hardware_compat, "version_compat": options.version_compat,
        **plan.recorded(),
    }
    entry = store.record(
        directory, name, f"build {plan.precision}", parent=plan.source, parent_sha256=source.sha256,
        versions={"tensorrt": cap.version}, tensorrt=cap.version, gpu=gpu.name,
        compute_capability=gpu.compute_capability, platform=platform_of(gpu), precision=plan.precision,
        profile=profile.to_dict(),
        io_spec=io_spec.to_dict(), build=build_options, build_seconds=round(seconds, 3),
        hardware_compatibility=(options.hardware_compat or "none").replace("-", "_"),
        version_compatible=options.version_compat, host_code=host_code,
    )
    return BuildResult(name, entry, notes)


def _build(cap: Capability, plan: BuildPlan, source: Artifact, declared: IOSpec, profile: Profile,
           options: BuildOptions, progress: Optional[ProgressCallback]) -> Tuple[bytes, IOSpec, bool]:
    """The serialized plan, the engine's I/O spec (``declared``'s names and dims, dtypes as TensorRT made
    them) and whether it embeds host code."""
    import tensorrt as trt

    logger, messages = _logger()
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif plan.explicit_batch:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.data, str(source.path)):  # the bytes the store hashed
        raise WorkFailed(f"TensorRT {cap.version} cannot parse {source.name}: "
                         + " | ".join(_errors(parser) + messages[-5:]))

    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    if sorted(inputs) != sorted(profile.shapes()):
        raise WorkFailed(f"{source.name} has inputs {sorted(inputs)}; attn-export expects {sorted(profile.shapes())}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    for flag in plan.builder_flags:
        if flag == "FP16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif flag == "INT8":
            config.set_flag(trt.BuilderFlag.INT8)
    config.clear_flag(trt.BuilderFlag.TF32)  # TensorRT's default; every layer the graph keeps in FP32 is FP32
    if plan.pin_float32:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for layer in float32_layers(network, trt.float32):
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
    optimisation = builder.create_optimization_profile()
    for input_name, (mn, opt, mx) in profile.shapes().items():
        optimisation.set_shape(input_name, trt.Dims(list(mn)), trt.Dims(list(opt)), trt.Dims(list(mx)))
    config.add_optimization_profile(optimisation)
    host_code = False
    if options.version_compat:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        host_code = True  # the plan embeds the lean runtime (EXCLUDE_LEAN_RUNTIME is not set)
    if options.hardware_compat:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                      HARDWARE_LEVELS[options.hardware_compat])
    cache = None
    if options.timing_cache is not None:
        old = store.read_file(options.timing_cache, MAX_TIMING_CACHE_BYTES, "TensorRT timing cache") \
            if os.path.lexists(options.timing_cache) else b""
        cache = config.create_timing_cache(old)
        if cache is None or not config.set_timing_cache(cache, False):  # before the build, not after it (review)
            raise BadInput(f"{options.timing_cache}: TensorRT {cap.version} refused this timing cache; expected one "
                           "made by this TensorRT on this GPU, or a new path (it is written after the build)")
    monitor = None
    if progress is not None and cap.progress_monitor:
        monitor = _monitor(progress)  # kept referenced until the build returns, as TensorRT requires
        config.progress_monitor = monitor

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = [m for m in messages if m.startswith(("[ERROR]", "[INTERNAL_ERROR]"))] or messages[-10:]
        raise WorkFailed(f"TensorRT {cap.version} failed to build {source.name}: "
                         + (" | ".join(errors) or "no message from the builder"))
    plan_bytes = bytes(memoryview(serialized))
    timing = config.get_timing_cache() if cache is not None else None
    if options.timing_cache is not None and timing is not None:
        store.write_bytes(options.timing_cache, bytes(memoryview(timing.serialize())))

    io_inputs: List[Dict[str, Any]] = [
        {"name": t.name, "dtype": _numpy_dtype(inputs[t.name].dtype), "dims": list(t.dims)} for t in declared.inputs
    ]
    io_outputs: List[Dict[str, Any]] = []
    for tensor in outputs:
        shape = [int(tensor.shape[i]) for i in range(len(tensor.shape))]
        dims = [d if d >= 0 else ("batch" if i == 0 else profile.axis) for i, d in enumerate(shape)]
        io_outputs.append({"name": tensor.name, "dtype": _numpy_dtype(tensor.dtype), "dims": dims})
    lengths = next(t for t in io_inputs if t["name"] == "lengths")
    if lengths["dtype"] not in ("int64", "int32") or (plan.lengths_dtype == "int32" and lengths["dtype"] != "int32"):
        raise WorkFailed(f"the engine's lengths input is {lengths['dtype']}; expected {plan.lengths_dtype}")
    del monitor
    return plan_bytes, IOSpec.from_dict({"inputs": io_inputs, "outputs": io_outputs}), host_code
