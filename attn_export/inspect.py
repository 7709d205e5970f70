"""Describing artefacts: an ``.onnx`` file or a whole artefact directory.

    attn-export inspect DIR/model.onnx [--json]
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from .runtime import store, schema
from .errors import BadInput, printable
from .portability import divergences
from .runtime.onnxfile import parse_graph
from .runtime.verify import VerifyResult

__all__ = ["describe"]


# what a graph input or output holds when it is not a tensor (onnx.TypeProto's "value")
_NOT_TENSORS = {"sequence_type": "a sequence", "map_type": "a map", "optional_type": "an optional",
                "sparse_tensor_type": "a sparse tensor", None: "untyped"}


def _dims(value: Any) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _tensor(value: Any) -> dict[str, Any]:
    """A graph input or output as inspect shows it. One that is not a tensor of a type onnx can name is
    described, with ``problem`` saying what it is: inspect describes a file, it does not refuse it (found by
    attacking: a sequence output was exit 2 here, while ``--target`` read the same file)."""
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return {"name": value.name, "dtype": kind.removesuffix("_type") if kind else "untyped", "dims": [],
                "problem": f"is {_NOT_TENSORS.get(kind, kind)}, not a tensor"}
    try:
        dtype = str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
    except KeyError:
        return {"name": value.name, "dtype": "unknown", "dims": _dims(value),
                "problem": f"has element type {value.type.tensor_type.elem_type}, which onnx {onnx.__version__} "
                           "cannot name"}
    return {"name": value.name, "dtype": dtype, "dims": _dims(value)}


def _load(path: Path) -> tuple[bytes, Any]:
    """The file's bytes (read once, bounded) and the ``onnx.ModelProto`` they hold; BadInput when they are
    not a model."""
    import onnx

    data = store.read_file(path, store.MAX_ARTIFACT_BYTES, "ONNX model")
    try:
        return data, onnx.load_from_string(data)
    except Exception as e:  # onnx raises DecodeError or OSError for a file that is not a model
        raise BadInput(f"{path} is not a readable ONNX model: {str(e).splitlines()[0]}") from None


def _opsets(proto: Any) -> dict[str, int]:
    """Version by domain, the standard domain named "ai.onnx"; a file declaring it twice, as "" and as
    "ai.onnx", keeps both as written (found by attacking: one of the two versions was shown, and the checker and
    ONNX Runtime accept such a file)."""
    written = [o.domain for o in proto.opset_import]
    both = "" in written and "ai.onnx" in written
    return {(o.domain if both else o.domain or "ai.onnx"): o.version for o in proto.opset_import}


def describe_onnx(path: Path) -> dict[str, Any]:
    data, proto = _load(path)
    metadata = {p.key: p.value for p in proto.metadata_props}
    out: dict[str, Any] = {
        "path": str(path),
        "size_bytes": len(data),
        "ir_version": proto.ir_version,
        "opset": _opsets(proto),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "inputs": [_tensor(v) for v in proto.graph.input],
        "outputs": [_tensor(v) for v in proto.graph.output],
        "dynamic_axes": {v.name: [d for d in _dims(v) if isinstance(d, str)]
                         for v in list(proto.graph.input) + list(proto.graph.output)},
        "nodes": len(proto.graph.node),
        "operators": dict(sorted(Counter(n.op_type for n in proto.graph.node).items(), key=lambda kv: -kv[1])),
        # Python's integers: numpy's int64 product wrapped (a claimed 2^64 read 0) and a negative dim subtracted
        # (found by attacking; onnx's checker, the INVALID line, says what is wrong with them)
        "parameters": sum(math.prod(t.dims) for t in proto.graph.initializer if all(d >= 0 for d in t.dims)),
        "metadata": metadata,
        # constructs independent runtimes are known to read differently (attn_export.portability)
        "divergences": [{"construct": d.construct, "nodes": d.nodes, "runtimes": d.runtimes}
                        for d in divergences(proto)],
        "external_data": [{"tensor": name, "location": location}
                          for name, location in parse_graph(data, path).external],
        "checker": _checker_problem(data, path),  # None: onnx.checker (full check) accepts it
    }
    s = store.Store(path.parent)
    entry = s.entry(path.name)
    if entry is not None:
        out["manifest"] = entry
        out["lineage_problems"] = s.state(path.name).problems()
    return out


# files attn-export writes that are not artefacts: the manifest itself and the results rendered from it
_NOT_ARTEFACTS = {store.MANIFEST: "the manifest", store.VERIFY_JSON: "result", store.BENCH_JSON: "result",
                  store.BENCH_STREAM_JSON: "result", store.BENCH_STREAM_PNG: "result",
                  store.QUANTIZE_JSON: "result", store.REPORT_MD: "result", store.ATTENTION_PNG: "result",
                  **{name: "result" for name in store.PLOTS.values()}}


# the results read back as JSON (report, bundle, bench): one that does not parse is said so, not listed as a
# plain result (found by attacking: a cut verify.json was "result" while report refused it)
_RESULT_JSON: dict[str, Any] = {store.VERIFY_JSON: schema.VERIFY, store.BENCH_JSON: schema.BENCH,
                                store.QUANTIZE_JSON: schema.QUANTIZE, store.BENCH_STREAM_JSON: None}


# the figures drawn from a result, which describe what it describes
_DRAWN_FROM = {store.ATTENTION_PNG: store.REPORT_MD, store.BENCH_STREAM_PNG: store.BENCH_STREAM_JSON,
               **{name: store.BENCH_JSON for name in store.PLOTS.values()}}


def _result_problems(s: store.Store, path: Path) -> list[str]:
    """A result JSON that does not parse; a verify.json no verdict was recorded from, as the report says it
    (found by attacking: inspect listed another directory's copy as a plain result); a bench.json (or
    bench_stream.json, or quantize.json) of bytes that are not here now, as the report marks its rows; a report.md rendered
    from files that changed since; a figure, what its source says. [] for anything else."""
    if path.name in _DRAWN_FROM:
        source = path.parent / _DRAWN_FROM[path.name]
        stale = source.is_file() and _result_problems(s, source)
        return [f"not current: drawn with {source.name}, which is not current"] if stale else []
    if path.name == store.REPORT_MD:
        from .report import not_describing

        return not_describing(s)
    if path.name not in _RESULT_JSON:
        return []
    try:
        data = store.read_json(path, _RESULT_JSON[path.name])
    except BadInput as e:
        return [f"unreadable: {e}"]
    if path.name in (store.BENCH_JSON, store.BENCH_STREAM_JSON):  # timings of bytes no longer here (found by
        # attacking: after a retrain; bench_stream.json after a run that removed the stream graphs)
        timed = data.get("artifacts")
        if not isinstance(timed, dict):
            return ["not current: it records no sha256 of what it timed (made by an older attn-export)"]
        return [f"not current: {why}" for why in dict.fromkeys(s.measured(n, str(sha)) for n, sha in timed.items())
                if why]
    if path.name == store.QUANTIZE_JSON:  # rows of files made again since, or removed (found by attacking)
        made = [r for r in data.values() if isinstance(r, dict) and isinstance(r.get("artifact"), str)]
        return [f"not current: {why}" for why in dict.fromkeys(s.measured(r["artifact"], r.get("sha256"))
                                                              for r in made) if why]
    if path.name != store.VERIFY_JSON:
        return []
    unrecorded = VerifyResult.from_dict(data).unrecorded(s)
    return [unrecorded] if unrecorded else []


def describe_directory(directory: Path) -> dict[str, Any]:
    s = store.Store(directory)
    present = {p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")}
    # a file the manifest records and the directory lacks is listed as what the store finds (found by
    # attacking: a deleted verified graph had no line at all, while inspect --target called it missing)
    # and one recorded whose path holds no regular file (a directory, a FIFO): listed with the store's reason
    # (found by attacking: it stopped inspect for the whole directory)
    files = sorted(present | set(s.lacking()) | set(s.irregular()))
    entries = {}
    for name in files:
        entry = s.entry(name)
        state = s.state(name) if entry is not None else None
        problems = state.problems() if state is not None else []
        entries[name] = {
            "size_bytes": (directory / name).stat().st_size if name in present else None,
            "recorded": entry is not None,
            "role": _NOT_ARTEFACTS.get(name, "artefact"),
            "state": state.state if state is not None else None,
            "verified": state.verified if state is not None else None,
            "parent": entry.get("parent") if entry else None,
            "created_by": entry.get("created_by") if entry else None,
            "problems": problems + (_result_problems(s, directory / name) if name in present else []),
        }
    out: dict[str, Any] = {"path": str(directory), "artifacts": entries,
                           "manifest": (directory / store.MANIFEST).is_file()}
    if (directory / store.MODEL_JSON).is_file():
        info = s.info
        out["model"] = {"model": info.recipe["model"], "input_size": info.input_size, "num_outputs": info.num_outputs,
                        "labels": list(info.labels), "source": info.raw.get("source")}
    if (directory / store.METRICS).is_file():
        out["metrics"] = store.read_json(directory / store.METRICS, schema.METRICS)
    return out


def describe(path: Path) -> dict[str, Any]:
    if path.is_dir():
        return describe_directory(path)
    if not path.exists():
        raise BadInput(f"{path} does not exist; expected an .onnx file or an artefact directory")
    if path.suffix == ".onnx":
        return describe_onnx(path)
    raise BadInput(f"{path} is neither an .onnx file nor an artefact directory")


def render(d: dict[str, Any]) -> str:
    """A short human-readable text of ``describe``'s result."""
    lines = [str(d["path"])]
    if "operators" in d:
        if "" in d["opset"]:
            lines.append(f"  opset: the standard ONNX domain is declared twice, as \"\" (version {d['opset']['']}) "
                         f"and as \"ai.onnx\" (version {d['opset']['ai.onnx']}); which one a runtime reads is not "
                         "defined")
        lines.append(f"  opset {d['opset']}, {d['nodes']} nodes, {d['parameters']:,} parameters, "
                     f"{d['size_bytes']:,} bytes, producer {d['producer']}")
        for io_kind in ("inputs", "outputs"):
            for v in d[io_kind]:
                lines.append(f"  {io_kind[:-1]:6} {v['name']:10} {v['dtype']:8} {v['dims']}")
                if "problem" in v:
                    lines.append(f"  PROBLEM: graph {io_kind[:-1]} '{v['name']}' {v['problem']}; attn-export's "
                                 "commands and TensorRT take tensors of the types onnx names")
        lines.append("  operators: " + ", ".join(f"{k} {v}" for k, v in d["operators"].items()))
        for key in ("exporter", "opset", "source_sha256", "labels"):
            if key in d["metadata"]:
                lines.append(f"  metadata {key}: {d['metadata'][key]}")
        if d["checker"] is not None:
            lines.append(f"  INVALID: onnx.checker refuses it: {d['checker']}")
        if not d["divergences"]:
            lines.append("  portable: no construct that independent ONNX runtimes are known to read differently")
        if d["external_data"]:  # named, never opened: the store refuses such a model before any runtime reads it
            first = d["external_data"][0]
            more = f" and {len(d['external_data']) - 1} more" if len(d["external_data"]) > 1 else ""
            lines.append(f"  EXTERNAL DATA: tensor '{printable(first['tensor'], 80)}'{more} in the file "
                         f"'{printable(first['location'], 120)}': outside "
                         "the bytes attn-export hashes and ships; every command that runs a model refuses it")
        for found in d["divergences"]:
            lines.append(f"  DIVERGES: {found['construct']} ({', '.join(found['nodes'][:3])}): {found['runtimes']}")
        if "manifest" in d:
            m = d["manifest"]
            lines.append(f"  lineage: {m.get('parent')} -> {Path(d['path']).name} ({m.get('created_by')})")
            lines += [f"  PROBLEM: {p}" for p in d["lineage_problems"]]
    else:
        if not d["manifest"]:  # inspect describes; it does not refuse: but it says what the directory is not
            lines.append(f"  no {store.MANIFEST}: attn-export recorded nothing here"
                         + (" (an empty directory)" if not d["artifacts"] else
                            ", so no file is vouched for (not an artefact directory, or its manifest was removed)")
                         + f"; {store.made_by(store.MANIFEST, d['path'])} makes one")
        # one column, whatever the names: measured as they are shown, escaped (found by review)
        width = max((len(printable(name)) for name in d["artifacts"]), default=0) + 1
        for name, e in d["artifacts"].items():
            if e["problems"]:
                state = "; ".join(e["problems"])
            elif e["recorded"]:
                state = "ok, verified" if e["verified"] else "ok"
            else:
                state = e["role"] if e["role"] != "artefact" else "unrecorded"
            parent = f" <- {e['parent']}" if e["parent"] else ""
            size = f"{e['size_bytes']:>12,} B" if e["size_bytes"] is not None else f"{'-':>12}  "
            lines.append(f"  {printable(name):{width}} {size}  {state}{parent}")
        if "metrics" in d:  # of weights no longer here, said (found by attacking: the line read as current)
            stale = (d["artifacts"].get(store.METRICS) or {}).get("state") not in (None, "current")
            lines.append(f"  metrics{' (NOT CURRENT)' if stale else ''}: "
                         + json.dumps({k: d["metrics"].get(k) for k in ("test", "epochs")}))
    # names, metadata and operators are the file's data, never terminal commands (found by attacking: an escape
    # sequence in a producer name set the window title and cleared the screen)
    return "\n".join(printable(line) for line in lines)


def not_current(directory: Path) -> list[str]:
    """Why each recorded ONNX file of ``directory`` is not current (missing, changed, stale, damaged, ...)."""
    s = store.Store(directory)
    return [str(t.reason) for t in (s.state(n) for n in s.entries if n.endswith(".onnx")) if not t.current]


def readiness(path: Path, names: list[str]) -> dict[str, Any]:
    """Each ONNX file at ``path`` (one file, or every recorded one of a directory) against each TensorRT
    target in ``names`` (``runtime.trt.readiness``): what it builds there, or why not, and every finding."""
    from .runtime.precisions import ONNX_FILES
    from .runtime.trt import readiness as trt

    for name in names:
        trt.target(name)
    if path.is_dir():
        s = store.Store(path)
        graphs = trt.graphs_of(s)
        if not graphs:
            raise BadInput(f"{path} holds no recorded ONNX file; run {store.made_by(store.ONNX_FP32, path)} first")
    elif path.suffix == ".onnx" and path.is_file():
        data = store.read_file(path, store.MAX_ARTIFACT_BYTES, "ONNX model")
        graph = parse_graph(data, path)
        # a file named as attn-export names it is offered as that precision (the check says if it is not)
        precision = {file: p for p, file in ONNX_FILES.items()}.get(path.name) or trt.carried_precision(graph)
        r = trt.readiness({path.name: (precision, graph)}, names)
        invalid = _checker_problem(data, path)
        for name, t in r.items():  # a file of any name and any inputs: the plan's words for its own
            row = t["files"][path.name]
            row["how"] = row["how"].replace(ONNX_FILES[precision], path.name, 1)
            if "lengths" not in {v.name for v in graph.inputs}:
                row["how"] = row["how"].split("; lengths as ")[0]
            if invalid is not None and row["builds"]:  # the parser reads only what the checker accepts
                row["findings"].insert(0, trt.Finding("graph", f"onnx.checker refuses it: {invalid}", name,
                                                      "a graph onnx.checker accepts").to_dict())
                row["ready"] = False
        return r
    else:
        raise BadInput(f"{path} is neither an .onnx file nor an artefact directory")
    return trt.readiness(graphs, names, trt.not_current(s))


def _checker_problem(data: bytes, path: Path) -> str | None:
    """The first line of what ``onnx.checker`` (full check: shape inference too) says of a model, or None when
    it accepts it, or when the model keeps tensors in external data: the checker would open that file (a FIFO
    there blocks it), and from the bytes alone it said the file was not there (found by attacking); the
    EXTERNAL DATA line says why such a model is refused."""
    import onnx

    if parse_graph(data, path).external:
        return None
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as e:  # ValidationError, InferenceError, or a file that is not a model at all
        return printable(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 300)
    return None
