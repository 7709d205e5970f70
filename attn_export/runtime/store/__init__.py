"""The artefact store: one directory, its file names, its file system, its manifest, and the one rule that
decides whether an artefact may be used.

    from attn_export.runtime import store
    with store.Store.load("artifacts") as s:        # a directory or a bundle .tar.gz
        artifact = s.open("model.onnx", need="verified")   # checked bytes, entry, precision, spec, profile
    store.MODEL_JSON, store.atomic_path(...), store.locked(...), store.record(...)

- ``names``: every file name attn-export writes, and the command that makes each;
- ``files``: reading a file once within bounds, atomic writes, the directory lock, the sweep of a dead
  writer's temporary files (nothing about what the files mean);
- ``manifest``: reading and writing ``manifest.json`` (entries, lineage, verdicts);
- ``trust``: ``Store``, ``Artifact`` and ``Trust``: the only place that decides trust, host and device
  alike. ``Predictor``, ``verify``, ``bundle``, ``quantize``, ``build``, ``report``, ``info``, ``inspect``
  and every backend take what it returns; none re-reads the directory or re-derives the rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .files import (DIR_MODE, FILE_MODE, MAX_JSON_BYTES, as_directory, atomic_path, fsync_directory, json_bytes, json_text, locked, parse_json, read_file,
                    read_json, read_regular, require, sha256_file, short_name, staging_prefix, sweep, sweep_staging, write_bytes, write_json, writes_directory)
from .manifest import MANIFEST_SCHEMA, forget, read_manifest, record, record_verdicts
from .names import (ATTENTION_PNG, BENCH_JSON, BENCH_STREAM_JSON, BENCH_STREAM_PNG, BUILD_COMMAND, BUNDLE_JSON, CREATES_DIRECTORY, DEFAULT_DIR, DEVICE_MODULE,
                    DIRECTORY_FILES, LOCK,
                    MADE_BY, MANIFEST, METRICS, MODEL_JSON, ONNX_FILES, ONNX_FP32, PLOTS, QUANTIZE_JSON, REFERENCE,
                    REPORT_MD, STREAM_FILES, STREAM_FP16, STREAM_ONNX, TMP_PREFIX, VERIFY_JSON, WEIGHTS, build_command,
                    directory_word, is_engine, made_by, shipped)

# the trust rule needs numpy (the I/O spec, the graph reader's users); the file names and the file system do
# not, and numpy-free modules (trt.profile, trt.compat on JetPack 5's bare Python 3.8) import them
_TRUST = ("MAX_ARTIFACT_BYTES", "NEEDS", "Artifact", "Store", "Trust")
if TYPE_CHECKING:
    from .trust import MAX_ARTIFACT_BYTES, NEEDS, Artifact, Store, Trust

__all__ = [
    "as_directory",
    "ATTENTION_PNG", "BENCH_JSON", "BENCH_STREAM_JSON", "BENCH_STREAM_PNG", "BUILD_COMMAND", "BUNDLE_JSON", "CREATES_DIRECTORY", "DEFAULT_DIR", "DEVICE_MODULE", "DIRECTORY_FILES", "DIR_MODE",
    "FILE_MODE", "LOCK", "MADE_BY", "MANIFEST", "MANIFEST_SCHEMA", "MAX_ARTIFACT_BYTES", "MAX_JSON_BYTES", "METRICS",
    "MODEL_JSON", "NEEDS", "ONNX_FILES", "ONNX_FP32", "PLOTS", "QUANTIZE_JSON", "REFERENCE", "REPORT_MD",
    "STREAM_FILES", "STREAM_FP16", "STREAM_ONNX", "TMP_PREFIX", "VERIFY_JSON", "WEIGHTS", "Artifact", "Store", "Trust", "atomic_path", "build_command", "directory_word", "forget", "fsync_directory", "is_engine", "json_bytes", "json_text", "made_by",
    "locked", "parse_json", "read_file", "read_json", "read_regular", "read_manifest", "record", "record_verdicts", "require", "shipped",
    "sha256_file", "short_name", "staging_prefix", "sweep", "sweep_staging", "write_bytes", "write_json", "writes_directory",
]


def __getattr__(name: str) -> Any:
    if name in _TRUST:
        from . import trust

        return getattr(trust, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
