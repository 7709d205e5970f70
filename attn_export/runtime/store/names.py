"""Every file name attn-export writes in an artefact directory, and the command that makes each one.
Tensor names live beside them in ``runtime.iospec`` (``x``, ``lengths``, the head's output, ``attention``);
precision variants' file names in ``runtime.precisions``. Nothing else spells a file name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

from ..precisions import ONNX_FILES, ONNX_FP32, PRECISIONS

__all__ = ["ATTENTION_PNG", "BENCH_JSON", "BENCH_STREAM_JSON", "BENCH_STREAM_PNG", "BUILD_COMMAND", "BUNDLE_JSON", "CREATES_DIRECTORY", "DEFAULT_DIR", "DEVICE_MODULE", "build_command", "shipped", "DIRECTORY_FILES",
           "LOCK", "MADE_BY", "MANIFEST", "METRICS", "MODEL_JSON", "ONNX_FILES", "ONNX_FP32", "PLOTS",
           "QUANTIZE_JSON", "REFERENCE", "REPORT_MD", "STREAM_FILES", "STREAM_FP16", "STREAM_ONNX", "TMP_PREFIX", "VERIFY_JSON", "WEIGHTS",
           "directory_word", "is_engine", "made_by"]

DEFAULT_DIR = Path("artifacts")
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
REFERENCE = "reference.npz"
MANIFEST = "manifest.json"
LOCK = ".attn-export.lock"
VERIFY_JSON = "verify.json"
BUNDLE_JSON = "bundle.json"  # an unpacked bundle's listing of what it shipped (``runtime.bundle``)
BENCH_JSON = "bench.json"
BENCH_STREAM_JSON = "bench_stream.json"  # attn-export bench --stream
BENCH_STREAM_PNG = "bench_stream_latency.png"
QUANTIZE_JSON = "quantize.json"
REPORT_MD = "report.md"
ATTENTION_PNG = "attention.png"
# precision -> the chunk-by-chunk form of its graph (runtime.streaming): model.stream.onnx, model.stream.fp16.onnx, ...
STREAM_FILES = {p: "model.stream." + f[len("model."):] for p, f in ONNX_FILES.items()}
STREAM_ONNX = STREAM_FILES["fp32"]  # attn-export export --stream
STREAM_FP16 = STREAM_FILES["fp16"]  # attn-export quantize --fp16, like each variant, after export --stream
PLOTS = {"latency": "bench_latency_vs_seq.png", "throughput": "bench_throughput_vs_batch.png"}
ENGINE_SUFFIX = ".engine"  # engines are named per device (runtime.trt.naming)
# every name attn-export writes in an artefact directory (besides engines)
DIRECTORY_FILES = (MODEL_JSON, WEIGHTS, METRICS, REFERENCE, MANIFEST, LOCK, VERIFY_JSON, BENCH_JSON, QUANTIZE_JSON,
                   REPORT_MD, ATTENTION_PNG, *PLOTS.values(), *ONNX_FILES.values(), *STREAM_FILES.values(),
                   BENCH_STREAM_JSON, BENCH_STREAM_PNG)
CREATES_DIRECTORY = ("train", "load", "run", "unbundle")
# every temporary file attn-export writes in a directory: .attn-export.<pid>.<target>.<random>.tmp; the
# prefix marks it as ours (a user's own .notes.tmp is never touched), the pid says whether its writer lives
TMP_PREFIX = ".attn-export."

# engines are built where they run; the device package's own command needs no attn-export install
# (on a host, `attn-export build` runs the same code)
DEVICE_MODULE = "python3 -m attn_export.runtime"
BUILD_COMMAND = f"{DEVICE_MODULE} build"
AFTER_STREAM = " (after attn-export export --stream)"  # what a stream graph's variant needs made first
# The command that makes each file, for "run X first" messages.
MADE_BY = {
    MODEL_JSON: "attn-export train (or attn-export load CHECKPOINT)",
    MANIFEST: "attn-export train (or attn-export load CHECKPOINT)",  # it starts every artefact directory
    WEIGHTS: "attn-export train (or attn-export load CHECKPOINT)",
    METRICS: "attn-export train",
    REFERENCE: "attn-export export",
    VERIFY_JSON: "attn-export verify",
    BENCH_JSON: "attn-export bench",
    **{p.file: p.made_by for p in PRECISIONS.values() if p.file is not None},
    STREAM_ONNX: "attn-export export --stream",
    **{STREAM_FILES[p.name]: f"{p.made_by}{AFTER_STREAM}" for p in PRECISIONS.values()
       if p.file is not None and p.name != "fp32"},
}


def made_by(name: str, directory: Optional[Union[str, Path]] = None,
            unknown: str = "the command that makes it") -> str:
    """``MADE_BY[name]`` (``unknown`` for a file it does not know), each ``attn-export`` command in it given
    ``directory`` as its DIR: copied as printed, a hint without it had acted on ./artifacts, another model
    (found by attacking)."""
    command = MADE_BY.get(name, unknown)
    if directory is None:
        return command
    if name in STREAM_FILES.values() and name != STREAM_ONNX and (Path(directory) / STREAM_ONNX).is_file():
        command = command.replace(AFTER_STREAM, "")  # the stream graph is there: nothing to do first (attacking)
    where = directory_word(directory)
    return re.sub(r"attn-export (load CHECKPOINT|[a-z]+)", lambda m: f"{m.group(0)} {where}", command)


def directory_word(directory: Union[str, Path]) -> str:
    """``directory`` as a hint's command gives it: quoted for a shell, and a name starting with "-", which
    would read as an option however quoted (found by review), as a relative path."""
    from ...errors import shell_word

    text = str(directory)
    return shell_word(f"./{text}" if text.startswith("-") else text)


def shipped(directory: Path) -> Optional[str]:
    """``PYTHONPATH=...`` for the device package ``directory`` ships (a bundle's ``runtime/``), None when it ships
    none: the one spelling of a device command's prefix (found by review: a predict in a bundle printed the
    device's verify as ``PYTHONPATH=runtime`` in one hint and with the package's path in the next)."""
    from ...errors import shell_word

    package = directory / "runtime"
    return f"PYTHONPATH={shell_word(package)}" if (package / "attn_export").is_dir() else None


def build_command(directory: Path, flag: str = "") -> str:
    """The command that builds ``directory``'s engines with ``flag``: the device package's, with the path to the
    package ``directory`` ships."""
    prefix = shipped(directory)
    return f"{prefix + ' ' if prefix else ''}{BUILD_COMMAND} {directory_word(directory)} {flag}".rstrip()


def is_engine(name: str) -> bool:
    return name.endswith(ENGINE_SUFFIX)
