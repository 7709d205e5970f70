"""Bundles: one ``.tar.gz`` with what a device needs, and an unpacker that trusts nothing in it.

    attn-export bundle [DIR] --out FILE.tar.gz [--for cpu|jetson [--target jetpack5|jetpack6|jetpack7]]
    attn-export unbundle FILE.tar.gz [DIR]

A bundle holds, flat at its root: ``model.json``, ``manifest.json``, every ONNX variant recorded in the
manifest, the TensorRT engines (``--for jetson`` only; on a Jetson the engine is usually built on the
device), ``reference.npz`` and ``verify.json`` where present, ``README.md`` (for the device; a Jetson
bundle's names its JetPack and gives the ``build`` and ``trtexec`` commands of that JetPack's TensorRT for
every file that is ready there, ``trt.readiness``, with the recipe's profile),
``requirements.txt``, ``bundle.json`` (sha256 and size of every other member) and ``runtime/attn_export/``:
the device package (``attn_export.runtime``, ``runtime_files``), so that a device with only numpy and ONNX
Runtime or TensorRT (JetPack 5's Python 3.8 included) can run ``PYTHONPATH=runtime python3 -m
attn_export.runtime verify | predict | build | info .``, and unpack a bundle with the checks below
(``unpack BUNDLE.tar.gz DIR``). Every artefact must pass its manifest check
(unchanged, not stale) before it is packed.

Opening a bundle (``Archive``: ``unbundle``, and ``predict``/``info`` given a ``.tar.gz``) reads every
member's header and refuses, before a byte is written: absolute names, ``..`` components, links and every
member that is not a regular file or directory, duplicate names, a member over ``max_member_bytes``, a
total over ``max_total_bytes`` or over ``MAX_RATIO`` times the archive's own size (a compression bomb is
refused from its header, before it is inflated), more than ``max_members`` members, an archive without
``bundle.json``, and a file that ``bundle.json`` does not list with that size. ``unpack`` extracts the
listed files into a temporary directory (``filter="data"`` where this Python's tarfile has it) and checks
each against its sha256: beside a new target, then renamed into place; inside an existing empty one
(``FILLING``, made by one ``os.mkdir``, so one unbundle wins), then moved into it ``bundle.json`` last.
Either way a refused archive leaves nothing behind; ``Archive.read`` hands one listed member's checked
bytes to the store, so that ``predict BUNDLE`` reads only the files it runs and writes nothing.

Standard library only: the device unpacks too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from .. import __version__
from ..errors import (BadInput, Busy, DataError, MissingPrerequisite, Untrusted, from_os_error, listed, printable,
                      shell_word)
from . import store, schema
from .backends import REGISTRY
from .backends.onnxrt import EXACT_INT8, plain_session_needs
from .inputs import gap_words, named_classes, named_features
from .interrupt import commit_point
from .onnxfile import parse_graph
from .precisions import ENGINE_PRECISIONS, PRECISIONS
from .recommend import (DEFAULT, DEVICE_BACKENDS, cpu_text, current, file_precision, kept_default, other_cpu,
                        overall_ratio, predict_flags, this_cpu, verified_pairs, why_picked)
from .timing import cpu_name
from .settings import not_default
from .precisions import ONNX_FILES as PRECISION_FILES

__all__ = ["BUNDLE_JSON", "DEFAULT_JETPACK", "TARGETS", "Archive", "BundleResult", "artifact_names", "made_for", "pack",
           "not_verified", "refusal", "recommendation", "runtime_files", "unasked", "unpack"]

BUNDLE_JSON = store.BUNDLE_JSON
FILLING = ".unbundle-in-progress"  # what an existing empty target holds while unbundle fills it
TARGETS = schema.BUNDLE_TARGETS
DEFAULT_JETPACK = "jetpack6"  # the JetPack current Orins ship with (TensorRT 10.3)
ONNX_FILES = tuple(PRECISION_FILES.values())
MAX_MEMBER_BYTES = 2 << 30
MAX_TOTAL_BYTES = 8 << 30
MAX_MEMBERS = 10_000
# unpacked bytes per archive byte: attn-export's own bundles are about 1.8 (ONNX weights barely compress);
# the floor lets a small archive of text through
MAX_RATIO = 100
RATIO_FLOOR = 16 << 20
# the picks whose runtime takes a CPU thread count, by the name a bundle's README gives the runtime
_RUNTIMES = {"ort-cpu": "ONNX Runtime", "openvino-cpu": "OpenVINO", "openvino-bf16": "OpenVINO"}

REQUIREMENTS = {
    "cpu": f"numpy\n{DEVICE_BACKENDS['ort-cpu'][0]}\n",
    "triton": "numpy\ntritonclient[http]  # the client; the server is NVIDIA's tritonserver container\n",
    "jetson": ("numpy\n"
               "cuda-python=={cuda}.*  # device buffers for TensorRT engines (the JetPack's CUDA major)\n"
               "# TensorRT's Python bindings come with JetPack (the system python3), not from PyPI:\n"
               "#   sudo apt install python3-libnvinfer\n"
               "# ONNX on the GPU without an engine: onnxruntime-gpu from NVIDIA's Jetson wheels instead.\n"),
}

README = """# attn-export bundle ({target})

Made by attn-export {version} from `{source}` on {date}. `bundle.json` lists every file with its sha256;
`manifest.json` records each artefact's lineage and the verdict `attn-export verify` gave it.

## Files

{files}

{body}"""

DEVICE = """`runtime/` holds the device package (`attn_export.runtime`): no torch and no attn-export install are
needed, only what `requirements.txt` lists. A `verify` run here records its own verdict in `manifest.json`
and `verify.json`, so the folder then no longer matches `bundle.json`: to move the bundle on, copy the
`.tar.gz` it came in, not a re-packed folder.

Unpacked with plain `tar`, only the model files are checked (each command checks them against
`manifest.json`); to check every file against `bundle.json` before anything is written, unpack with the
bundle's own device package instead (or `attn-export unbundle` where attn-export is installed):

    mkdir -p /tmp/ax && tar -xzf BUNDLE.tar.gz -C /tmp/ax runtime requirements.txt
    python3 -m pip install -r /tmp/ax/requirements.txt
    PYTHONPATH=/tmp/ax/runtime python3 -m attn_export.runtime unpack BUNDLE.tar.gz DIR

{steps}
From Python:

    import sys; sys.path.insert(0, "runtime")
    from attn_export.runtime import Predictor
    predictor = Predictor.load(".", {load})
    predictions = predictor.predict(list_of_float32_arrays)   # each [steps, {features}]

INPUT is an `.npz` (`x` [N, T, F] + `lengths`), a `.ts` or a `.csv` file. The model's {features} features
per step: {named}. Its classes: {classes}. A gap in INPUT is {gaps}; `Predictor.predict` refuses one. The
runtime refuses an
artefact changed since it was recorded, a stale one, one that failed verification, one never verified
(`--allow-unverified` runs that one anyway) and an engine built for another GPU or TensorRT version.
"""

# the device README's words for the packed files of a precision run one sequence at a time (Precision.per_row),
# said once for all of them; OpenVINO's part only where the graph holds a bidirectional LSTM with sequence
# lengths (a bidirectional model's): found by attacking, twice and ungrammatical on a one-direction model
ONE_BY_ONE = """
{names} {verb} one sequence at a time: `predict` and `Predictor` do that for you. Run by hand (a plain
`InferenceSession`), give {them} one sequence per run: the quantisation scale is taken over the whole batch,
so a sequence's answer would move with its batch-mates.{openvino}
"""
# the device README's words for the packed INT8 graphs that a plain session needs an option for on an x86 CPU
# without VNNI (``plain_session_needs``), and for those that need none
EXACT_PRODUCTS = """
On an x86 CPU without VNNI (AVX2, or AVX-512 without VNNI), ONNX Runtime's default INT8 kernels add pairs of
u8 x s8 products in 16 bits and saturate, so {names} would not give the answers verify judged. There
`predict` and `Predictor` open {them} with the session option that keeps {its} products exact (a CPU with
VNNI or AMX, and ARM, need none). A plain `InferenceSession` there needs the same: make
`options = onnxruntime.SessionOptions()`, call `options.add_session_config_entry(KEY, "1")` and pass
`sess_options=options`, with KEY
{keys}
"""
UNSIGNED_PRODUCTS = """
{names} {verb} {its} weights as u8, so ONNX Runtime multiplies u8 x u8, which it adds exactly on every CPU
(u8 x s8 it saturates on an x86 CPU without VNNI): a plain `InferenceSession` of {them} needs no session
option for {its} integer products to be the ones verify's CPU computed.
"""
# a bundle's note on a dynamic INT8 graph quantize wrote before it stored the weights as u8
OLDER_DYNAMIC = ("{names} {were} made before attn-export stored a dynamic INT8 graph's weights as u8: a plain "
                 "InferenceSession of {them} needs a session option on an x86 CPU without VNNI (the README says which)"
                 "{conv}; attn-export quantize DIR --int8 remakes {them} (then verify DIR and bundle again)")
OLDER_CONV = ", and ONNX Runtime 1.19.2 (the last for Python 3.8) cannot load {its} ConvInteger"
OPENVINO_PADDED = (" OpenVINO also computes a padded batch of {them} wrongly for this bidirectional model (not of "
                   "its other graphs, which verify judged on padded batches).")

TRITON = """{steps}
The graph does not check its input: each length of `attention_lstm` must lie in 1..steps of its row, and
values must be finite. A 0, a negative length or one past the steps gives numbers that mean nothing, and
can read another row of the batch (under dynamic batching, another client's request) or fail the run of
every request batched with it: check each length before sending. A request holds at most {max_batch} rows (`max_batch_size`; more are refused). {columns}

Triton serves a graph without checking it, so this bundle holds only graphs that `attn-export verify`
passed (their verdicts are in `manifest.json`), and no device package: `bundle.json` has each file's
sha256, to check what you deploy.
"""

# the Triton README's words for the stream model, where the bundle ships one: after the one-request model, and
# its client code
TRITON_STREAM = (""", and
`attention_lstm_stream` serves `model.stream.onnx` with the sequence batcher: its state stays in Triton
(implicit state, `state_in_*` / `state_out_*`, zeros at each sequence's start), so a client sends only
each chunk and its valid steps, under the sequence's own id (`push` below). A stream request holds one
row, one sequence (the sequence batcher refuses more); `max_batch_size` there is how many sequences Triton
batches together (its slots: a new sequence waits for a live one to end, or to be dropped as idle). A chunk's length must lie in 0..steps of that chunk (0 keeps
the state as it was): the graph does not check it, and a larger or negative one spoils the state Triton
keeps, and every later answer of that sequence, while its own answer looks right; so does a value in a
valid step that is not finite, or that the model's normalisation takes past float32 (a NaN, an inf, 3e38):
check both before sending (the device package's `Stream.push` refuses them). A chunk should stay near
{piece} steps: the graph's memory grows with the square of a chunk (one of 40,000 steps asked ONNX Runtime
for 6.4 GB). Triton batches only chunks of one width together (its direct sequence batcher forms no ragged
batch): to have sequences batched, send chunks of one width, the last one padded and `valid` its real
steps. A sequence that sends nothing for {idle} seconds is ended by Triton and its state dropped:
the next chunk must start it again (`start=True`), from the beginning.""", """
    def push(sequence_id, chunk, valid, start=False, end=False):   # chunk: float32 [1, steps, {features}]
        x = http.InferInput("x", list(chunk.shape), "FP32"); x.set_data_from_numpy(chunk)
        n = http.InferInput("lengths", [1, 1], "INT64"); n.set_data_from_numpy(np.array([[valid]], np.int64))
        return client.infer("attention_lstm_stream", [x, n], sequence_id=sequence_id, sequence_start=start,
                            sequence_end=end).as_numpy("{head}")   # the answer for the prefix so far

    chunks = [np.zeros((1, 16, {features}), np.float32)] * 3      # one sequence, in chunks as they arrive
    for i, chunk in enumerate(chunks):                            # ids: one per live sequence, never 0
        answer = push(7, chunk, chunk.shape[1], start=(i == 0), end=(i == len(chunks) - 1))
""")

STEPS = {  # the README's run steps per target; jetson's take the build commands
    "triton": """## Serve with Triton Inference Server

`model_repository/` is a Triton model repository (ONNX Runtime backend): `attention_lstm` serves
`model.onnx` (one request: `x` [batch, steps, {features}], `lengths` [batch, 1]; dynamic batching, which
joins only requests of one `steps`: pad a client's sequences to a few common widths){stream_intro}
The models here run on the CPU (`instance_group [ {{ count: 1 kind: KIND_CPU }} ]`), where `verify` judged them. On a GPU
(`KIND_GPU`) they would run on ONNX Runtime's CUDA provider, which nothing verified here, and on Ampere and
later its FP32 is TF32 unless the server runs with `NVIDIA_TF32_OVERRIDE=0`.

One instance of each (`count: 1`): ONNX Runtime's threads take every core; raise `count` to serve more
requests at once, each instance with threads of its own.

    mkdir DIR && tar -xzf BUNDLE.tar.gz -C DIR && cd DIR
    TRITON=24.08                      # a Triton release (nvcr.io), YY.MM: none was run where this bundle was made
    docker run -d --rm --name attn-triton -p 8000:8000 -v "$PWD/model_repository:/models" \\
        "nvcr.io/nvidia/tritonserver:$TRITON-py3" tritonserver --model-repository=/models
    python3 -m pip install -r requirements.txt
    for i in $(seq 60); do curl -sf localhost:8000/v2/health/ready && break; sleep 2; done   # up to 2 min
    curl -sf localhost:8000/v2/health/ready || echo "Triton is not ready after 2 min: docker logs attn-triton"

    # in Python (docker stop attn-triton when done):

    import numpy as np, tritonclient.http as http
    client = http.InferenceServerClient("localhost:8000")
    def infer(batch, lengths):                           # batch: float32 [n, steps, {features}], lengths: [n]
        x = http.InferInput("x", list(batch.shape), "FP32"); x.set_data_from_numpy(batch)
        n = http.InferInput("lengths", [len(lengths), 1], "INT64")
        n.set_data_from_numpy(np.asarray(lengths, np.int64).reshape(-1, 1))
        result = client.infer("attention_lstm", [x, n])
        return result.as_numpy("{head}"), result.as_numpy("attention")
{stream_example}
Each `config.pbtxt` was checked by parsing it into Triton's own `ModelConfig` message; no Triton server
ran where this bundle was made.
""",
    "cpu": """## Run (a CPU with Python {python} or newer)

    cd DIR                                                         # the bundle, unpacked as above
    python3 -m pip install -r requirements.txt                     # {packages}
    PYTHONPATH=runtime python3 -m attn_export.runtime verify .     # check every ONNX file here, record the verdict
{named}    PYTHONPATH=runtime python3 -m attn_export.runtime predict . INPUT.npz {choice}   # --json for JSON
{stream}    PYTHONPATH=runtime python3 -m attn_export.runtime info .       # what is here and what this machine can run
{why}""",
    "jetson": """## Run on the Jetson: {device}, TensorRT {tensorrt}

This bundle was made for `{target}`: its files were checked, statically, against what the ONNX parser for
TensorRT {tensorrt} documents; `info` shows the findings. The rules were read from: {parser}. No TensorRT, GPU or
`trtexec` ran for those checks, and attn-export's own tests never ran the commands below on a Jetson. `build`
refuses to run on another TensorRT line. An engine is
tied to its GPU and TensorRT version, so it is built here, on the device, from the ONNX files in this
bundle, with JetPack's TensorRT (no attn-export install: `runtime/` is the package), for batch
{batch} and {seq} steps (the recipe's profile).{stream}

    cd DIR                                                         # the bundle, unpacked as above
    sudo apt install python3-libnvinfer                            # JetPack's TensorRT bindings, if missing
    python3 -m pip install -r requirements.txt                     # numpy and cuda-python
{builds}    PYTHONPATH=runtime python3 -m attn_export.runtime verify .     # the engines against reference.npz, recorded
    PYTHONPATH=runtime python3 -m attn_export.runtime predict . INPUT.npz --precision {first}
{withdrawn}
The same engines with TensorRT's own `trtexec` (for Triton, DeepStream or your own code; `predict` runs
only the engines `build` recorded and `verify` judged):

{trtexec}{unpinned}
Without TensorRT, the ONNX files run on ONNX Runtime instead: on the Jetson's GPU with NVIDIA's
onnxruntime-gpu wheel for your JetPack (from NVIDIA's Jetson Zoo, not PyPI), or on its CPU for a first
check with `python3 -m pip install onnxruntime`; then `verify` and `predict` as above.
""",
}


@dataclass(frozen=True)
class _Jetson:
    """What a Jetson bundle says about its target: the build commands of the files ready there, and why
    the others build nothing."""

    target: Any  # trt.readiness.Target
    ready: List[str]  # engine precisions, in ENGINE_PRECISIONS order
    withdrawn: Dict[str, str]  # file -> why it builds nothing there, or its first problem
    profile: Any  # trt.profile.Profile
    workspace_mib: int
    stream_ready: List[str]  # the precisions whose stream graph is ready there
    stream_profile: Any  # the stream graph's profile (None when no stream graph is ready)


def _jetson(s: store.Store, name: str) -> _Jetson:
    from .streaming import state_dims, stream_spec
    from .trt.profile import recipe_profile
    from .trt.readiness import TARGETS as LINES
    from .trt.readiness import graphs_of, readiness, summary, target

    jetsons = ", ".join(n for n, x in LINES.items() if x.jetson)
    if name not in LINES:  # the Jetson lines only (found by attacking: the list named trt11, then refused it)
        raise BadInput(f"--target {name!r} is unknown; --for jetson takes one of {jetsons}")
    t = target(name)
    if not t.jetson:
        raise BadInput(f"--target {name} is a TensorRT line for discrete GPUs; --for jetson takes one of {jetsons}")
    report = readiness(graphs_of(s), [name])
    rows = report[name]["files"]
    ready = [p for p in ENGINE_PRECISIONS if rows.get(str(PRECISIONS[p].file), {}).get("ready")]
    stream_ready = [p for p in ENGINE_PRECISIONS if rows.get(store.STREAM_FILES[p], {}).get("ready")]
    lines = summary(report)[name]
    withdrawn = {f: lines[f] for f, row in rows.items() if not row["ready"]}
    info = s.model()
    streaming = recipe_profile(info, state_dims(stream_spec(info)))[0] if stream_ready else None
    return _Jetson(t, ready, withdrawn, recipe_profile(info)[0], info.build.workspace_mib, stream_ready, streaming)


def _build_command(precision: str, jetson: _Jetson, stream: bool = False) -> str:
    """The device's build command for ``precision`` (its stream graph: ``stream``) on the bundle's target,
    with the recipe's profile."""
    p = jetson.stream_profile if stream else jetson.profile
    flags = [PRECISIONS[precision].build_flag, "--stream" if stream else None,
             f"--target {jetson.target.name} --max-batch {p.batch.max} --min-seq {p.seq.min} --opt-seq {p.seq.opt} "
             f"--max-seq {p.seq.max}"]
    return "PYTHONPATH=runtime python3 -m attn_export.runtime build . " + " ".join(filter(None, flags))


def _steps(target: str, jetson: Optional[_Jetson], info: Any = None, chosen: Optional[Dict[str, Any]] = None,
           why_not: str = "", streams: bool = False) -> str:
    """The bundle README's run steps; a Jetson's take the build commands of the files ready on its target, a
    CPU bundle's predict the pair bench recommended (``chosen``, from ``recommend.current``), or say why there
    is none (``why_not``), and stream it where its stream graph ships (``streams``); a Triton one's client
    code serves ``attention_lstm``, and the stream model too where it ships (``streams``)."""
    if target == "triton":
        from .streaming import PIECE
        from .triton import IDLE_MICROSECONDS

        return STEPS[target].format(features=info.input_size, head=info.spec.head_output,
                                    stream_intro=TRITON_STREAM[0].format(piece=PIECE, idle=IDLE_MICROSECONDS // 10**6)
                                    if streams else ".",
                                    stream_example=TRITON_STREAM[1].format(features=info.input_size,
                                                                           head=info.spec.head_output)
                                    if streams else "")
    if target == "cpu":
        stream = ("    PYTHONPATH=runtime python3 -m attn_export.runtime predict . INPUT.npz --stream 16 {choice}   # the "
                  "answer so far, every 16 steps\n") if streams else ""
        if chosen is None:
            why = f"\nThe examples run FP32: no recommended default ({why_not}).\n" if why_not else ""
            return STEPS[target].format(packages="numpy and onnxruntime", choice="--precision fp32", why=why,
                                        python="3.8", stream=stream.format(choice="--precision fp32"), named="")
        where = f"{chosen['cpu']} ({', '.join(chosen.get('isa') or [])})"
        ratio = "" if chosen["ratio"] is None else f"; {overall_ratio(chosen)}"
        passed_over = f" ({chosen['note']})" if chosen.get("note") else ""
        beyond = f" Verified, but {chosen['beyond_judged']}." if chosen.get("beyond_judged") else ""
        vs_default = (f"{chosen['vs_default']:.2f}x {DEFAULT[0]} {DEFAULT[1]}"
                      if (chosen["backend"], chosen["artifact"]) != DEFAULT
                      else f"the default: {kept_default(chosen)}")
        why = (f"\n`{chosen['backend']}` on `{chosen['artifact']}` is what {chosen['by']} recommended among the "
               f"pairs `verify` passed (timed at {', '.join(chosen['shapes'])}{ratio}; "
               f"{vs_default}, threads {chosen.get('threads') or 'default'}, "
               f"on {where}){passed_over}.{beyond} Another CPU may rank them differently: `attn-export bench --against torch` "
               "on the model's directory (bench is not in this bundle) measures it there."
               + (f" `--threads 1` runs it as it was timed; without it {_RUNTIMES[chosen['backend']]} takes its own "
                  "default (every core), which may rank the pairs otherwise."
                  if chosen.get("threads") == 1 and chosen["backend"] in _RUNTIMES else "") + "\n")
        requirement, python = DEVICE_BACKENDS[chosen["backend"]]
        packages = "numpy and onnxruntime" + ("" if chosen["backend"] == DEFAULT[0] else f" (the default), {requirement}")
        choice = predict_flags(chosen)
        computes = REGISTRY[chosen["backend"]].computes
        named = ""
        if computes is not None:  # a precision of the backend's own: verify judges it only when named, and no stream
            named = (f"    PYTHONPATH=runtime python3 -m attn_export.runtime verify . --backends {chosen['backend']}   "
                     "# the recommended pair, which verify runs only when named\n")
            why += (f"`{chosen['backend']}` computes `{chosen['artifact']}` in {computes}: it runs only on a CPU with "
                    f"{computes} arithmetic (elsewhere predict says why, exit 3), and only while a verify that named it "
                    f"passed it on the bytes here (the host's did; a `verify .` here judges again without it, hence "
                    f"the line after it)." + (" Streams run the FP32 stream graph on the default backend." if streams
                                              else "") + "\n")
        return STEPS[target].format(packages=packages, why=why, python=".".join(map(str, python)), choice=choice,
                                    stream=stream.format(choice="--precision fp32" if computes else choice),
                                    named=named)
    if jetson is None:
        return STEPS[target]
    from .trt.readiness import trtexec, unpinned_by_trtexec

    p, t = jetson.profile, jetson.target
    unpinned = unpinned_by_trtexec([*jetson.ready, *jetson.stream_ready], t)
    builds = "".join(f"    {_build_command(q, jetson)}\n" for q in jetson.ready)
    builds += "".join(f"    {_build_command(q, jetson, stream=True)}\n" for q in jetson.stream_ready)
    commands = [trtexec(q, t, p, jetson.workspace_mib) for q in jetson.ready]
    commands += [trtexec(q, t, jetson.stream_profile, jetson.workspace_mib) for q in jetson.stream_ready]
    sp = jetson.stream_profile
    stream = "" if sp is None else (f"\nA `--stream` engine is the stream graph's: chunks of {sp.seq.min}..{sp.seq.max}"
                                    f" steps (opt {sp.seq.opt}), its state fixed by the batch.")
    withdrawn = "".join(f"\n- `{f}` on {t.name}: {why}" for f, why in jetson.withdrawn.items())
    shown = "fp16" if "fp16" in jetson.ready else (jetson.ready or ["fp32"])[0]
    return STEPS[target].format(
        builds=builds, first=shown, target=t.name, device=t.device, tensorrt=t.tensorrt, parser=t.parser.source,
        batch=f"{p.batch.min}..{p.batch.max} (opt {p.batch.opt})", seq=f"{p.seq.min}..{p.seq.max} (opt {p.seq.opt})",
        stream=stream,
        withdrawn=("\nNo engine from these files on " + t.name + ":" + withdrawn + "\n") if withdrawn else "",
        trtexec="".join(f"    {c}\n" for c in commands if c) or "    (no file here is ready for this target)\n",
        unpinned=f"\n{unpinned}\n" if unpinned else "")


def _notes(target: str, names: List[str], jetson: Optional[_Jetson]) -> List[str]:
    """What the device must do with what this bundle holds (printed by ``attn-export bundle``)."""
    if jetson is None:
        return []
    notes = []
    if not any(n.endswith(".engine") for n in names) and jetson.ready:
        first = "fp16" if "fp16" in jetson.ready else jetson.ready[0]
        notes.append("no TensorRT engine in the bundle: the Jetson builds one from the ONNX files with "
                     f"{jetson.target.name}'s TensorRT ({_build_command(first, jetson)}; the bundle's README has "
                     "each)")
    missing = [p for p in ENGINE_PRECISIONS if PRECISIONS[p].file not in names]
    for p in missing:
        notes.append(f"no {PRECISIONS[p].file}: {p.upper()} engines need it; run {PRECISIONS[p].made_by} on this "
                     "machine and bundle again")
    notes += [f"{f} builds no engine on {jetson.target.name}: {why}" for f, why in jetson.withdrawn.items()]
    return notes


@dataclass
class BundleResult:
    path: Path
    target: str
    files: Dict[str, int]  # member name -> bytes
    size_bytes: int
    notes: List[str]  # what the device must do with what the bundle holds
    tensorrt_target: Optional[str] = None  # the JetPack a Jetson bundle was made for


def output_columns(head: str, labels: Sequence[str]) -> str:
    """What the graph's output columns mean, as a Triton bundle's README says it (found by attacking: a binary
    model's one column, a logit, was "the class labels[0]", its negative class)."""
    if head == "binary":
        return (f"A binary model's one output column is a logit z: sigmoid(z) is the probability of "
                f"{printable(labels[1], 40)!r} (`labels[1]` of `model.json`, the positive class), and z > 0 decides "
                "it.")
    if labels:
        return "A classifier's output column i is the class `labels[i]` of `model.json`."
    return ""


def artifact_names(s: store.Store, target: str) -> List[str]:
    """The artefacts here that a ``target`` bundle packs (each must be current to be packed)."""
    present = s.present()
    if target == "triton":  # Triton serves the FP32 graphs: a recorded model.onnx missing is refused, not left out
        return [n for n in (store.ONNX_FP32, store.STREAM_ONNX)
                if n in present or (n == store.ONNX_FP32 and n in s.entries)]
    names = [n for n in (*ONNX_FILES, *store.STREAM_FILES.values()) if n in present]
    if target == "jetson":
        names += sorted(n for n in present if store.is_engine(n))
    return names


def refusal(s: store.Store, target: str) -> Optional[str]:
    """Why ``bundle --for target`` refuses ``s`` for what it would pack (a file not current, ``model.json`` or
    ``reference.npz`` included), None when it would pack them: what ``pack`` and the report both say (found by
    attacking: the report said bundle ships a pair where bundle refused the directory)."""
    names = [store.MODEL_JSON, *artifact_names(s, target), *s.irregular()]
    if target != "triton" and store.REFERENCE not in names and s.read(store.REFERENCE) is not None:
        names.append(store.REFERENCE)
    problems = [str(t.reason) for t in (s.state(n) for n in names) if not t.current]
    return "; ".join(problems) if problems else None


def runtime_files() -> Dict[str, Path]:
    """The device package, as a bundle ships it: every module of ``attn_export.runtime``, and the
    ``attn_export`` package's ``__init__`` and ``errors`` it imports (name in the package -> file)."""
    package = Path(__file__).resolve().parent
    root = package.parent
    files = {f"attn_export/{name}": root / name for name in ("__init__.py", "errors.py")}
    for path in sorted(package.rglob("*.py")):
        files["attn_export/" + path.relative_to(root).as_posix()] = path
    return files


def pack(directory: Union[str, Path], out: Union[str, Path], target: str = "cpu",
         tensorrt_target: Optional[str] = None) -> BundleResult:
    """Pack DIR for a ``target`` (``cpu``, ``jetson`` or ``triton``) into the ``.tar.gz`` file ``out``; a Jetson
    bundle is made for one JetPack (``tensorrt_target``, ``DEFAULT_JETPACK`` when None)."""
    directory, out = Path(directory), Path(out)
    if target not in TARGETS:
        raise BadInput(f"bundle target '{target}' is unknown; expected one of {', '.join(TARGETS)}")
    if target != "jetson" and tensorrt_target is not None:
        raise BadInput(f"--target {tensorrt_target} names a TensorRT line, which only --for jetson bundles build "
                       "for; expected --for jetson, or no --target")
    refuse_triton(directory, bundle_target(directory))  # said as every command says it (found by attacking)
    store.require(directory, store.MANIFEST)
    s = store.Store(directory)
    if out.resolve().parent == directory.resolve() and (out.name in s.entries or out.name.startswith(".")
                                                          or out.name in store.DIRECTORY_FILES):
        raise BadInput(f"--out {out} would replace {out.name} in the directory being packed; expected a bundle "
                       "path outside it, or a new name (e.g. model.tar.gz)")
    if not out.name.lower().endswith((".tar.gz", ".tgz")) or out.name.lower() in (".tar.gz", ".tgz"):
        raise BadInput(f"--out {out}: a bundle is a gzip-compressed tar; expected a name ending in .tar.gz or .tgz")
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: {out.parent} is not a directory; expected the bundle's path in an existing one")
    names = artifact_names(s, target)
    if not any(n.endswith(".onnx") for n in names):
        raise MissingPrerequisite(f"{directory} holds no recorded ONNX model; run "
                                  f"{store.made_by(store.ONNX_FP32, directory)} first")
    untrusted = refusal(s, target)  # first: a directory at reference.npz is its reason, not an error reading it
    if untrusted:
        raise Untrusted(f"not bundling an untrustworthy directory: {untrusted}; expected every file current (re-run "
                        "the command that made it, or remove a file the model no longer makes)")
    if s.read(store.REFERENCE) is not None and target != "triton":
        names.append(store.REFERENCE)
    failed = [n for n in names if n.endswith(".onnx") and s.state(n).verified is False] if target == "cpu" else []
    if store.ONNX_FP32 in failed or (failed and len(failed) == sum(n.endswith(".onnx") for n in names)):
        raise Untrusted(f"not bundling for a CPU: {listed(failed)} failed verify, which leaves no FP32 graph to run or "
                        f"derive from; expected {store.ONNX_FP32} passed (attn-export verify {shell_word(directory)} "
                        "says why it failed)")
    names = [n for n in names if n not in failed]
    if target == "triton":  # Triton serves what it is given: only what verify passed goes in
        from . import triton

        unproven = [f"{t.name} {t.verdict}" for t in (s.state(n) for n in names) if t.verified is not True]
        if unproven:
            raise Untrusted(f"not bundling for Triton, which serves a graph without checking it: "
                            f"{'; '.join(unproven)}; expected graphs that attn-export verify passed (run "
                            f"attn-export verify {shell_word(directory)})")
        # Triton runs them on ONNX Runtime's CPU provider: a pass on another runtime alone is not a pass there
        # (found by attacking: verify --backends tract-cpu, and the README said verify judged them where they run)
        judged = {n: s.verified_on(n) for n in names if n.endswith(".onnx")}
        elsewhere = [f"{n} on {', '.join(b) + ' only' if b else 'no backend it records'}" for n, b in judged.items()
                     if triton.JUDGED_BY not in b]
        if elsewhere:
            raise Untrusted(f"not bundling for Triton, whose ONNX Runtime backend serves these graphs on the CPU: "
                            f"{'; '.join(elsewhere)}; expected a pass on {triton.JUDGED_BY} (run attn-export "
                            f"verify {shell_word(directory)} --backends {triton.JUDGED_BY})")
    info = s.model()
    jetson = _jetson(s, tensorrt_target or DEFAULT_JETPACK) if target == "jetson" else None
    notes = [f"BELOW THE RECIPE'S ACCURACY FLOOR: {below}"] if (below := s.below_floor()) else []
    if failed:  # found by attacking: shipped, each failed the device's first `verify .` again, and ran nowhere
        many = len(failed) > 1
        notes.append(f"left out, failed verify: {listed(failed)}; a device refuses {'them' if many else 'it'}, and "
                     f"its `verify .` would fail on {'them' if many else 'it'} again (attn-export verify "
                     f"{shell_word(directory)} says why; fix {'them' if many else 'it'} and bundle again)")
    loosened = sorted({o for n in names for o in s.loosened(n)})
    if loosened:  # found by a user: a 100x budget passed like any verdict, said nowhere past verify.json
        notes.append(f"verified with --set {', '.join(loosened)}, not the recipe's own [verify] settings")
    settings = not_default(info.verify)
    if settings and any(s.state(n).verified for n in names):  # as verify's headline says it (found by review)
        notes.append(f"verified under the recipe's [verify] {', '.join(settings)}")
    if target == "triton" and store.STREAM_ONNX not in names:  # said, not left to be noticed (found by attacking)
        from .streaming import not_streamable

        cannot = not_streamable(info.recipe.get("model", {}))
        notes.append(f"no attention_lstm_stream: {'the model cannot stream exactly: ' + cannot if cannot else 'no '}"
                     + ("" if cannot else f"{store.STREAM_ONNX} here (run {store.made_by(store.STREAM_ONNX, directory)}, "
                                          f"then attn-export verify {shell_word(directory)})"))
    chosen, why_not = None, ""
    if target == "cpu":
        chosen, why_not = current(s, "DIR")  # said in the bundle's README: the host's directory, unnamed
        if chosen is not None and (chosen["artifact"] not in names or chosen["backend"] not in DEVICE_BACKENDS):
            why_not = f"bench's pick {chosen['backend']} {chosen['artifact']} is not something a CPU bundle runs"
            chosen = None
        notes.append(f"recommended: {chosen['backend']} {chosen['artifact']} ({why_picked(chosen)}), in the README's "
                     "predict line; predict without --backend and --precision runs FP32"
                     if chosen else f"no recommended default, predict's example runs FP32: {why_not}")
        if chosen is not None and not this_cpu(str(chosen["cpu"]), chosen.get("isa") or []):  # (found by attacking)
            notes.append(f"bench.json's pick was measured on {cpu_text(str(chosen['cpu']), chosen.get('isa') or [])}, "
                         f"not this machine's {cpu_text(*cpu_name())}: the bundle ships it as measured there")
    if target == "cpu":  # a CPU device runs these files and refuses what was not verified: said now, where it
        # can be fixed (a Jetson builds its engines from them and verifies those itself)
        refused: Dict[str, List[str]] = {}
        unjudged = []
        for t in (s.state(n) for n in names if n.endswith(".onnx")):
            if t.verified is True:
                continue
            if s.host_judges(t.name) and not info.labels:
                unjudged.append(t.name)
                continue
            refused.setdefault(s.how_to_verify(t.name, for_device=True), []).append(t.name)
        notes += [f"never verified, so the device refuses {'them' if len(files) > 1 else 'it'} until verify passes: "
                  f"{', '.join(files)}; verify {'them' if len(files) > 1 else 'it'} {fix}"
                  for fix, files in refused.items()]
        if unjudged:
            notes.append(f"never judged, so the device refuses {'them' if len(unjudged) > 1 else 'it'}: "
                         f"{', '.join(unjudged)}: INT8 is judged by its decisions, which a model without classes has "
                         "none of; run FP32 or FP16 there, or load it with --allow-unverified")
    if s.recorded_from(store.VERIFY_JSON, names):
        names.append(store.VERIFY_JSON)
    elif s.read(store.VERIFY_JSON) is not None:
        notes.append(f"{store.VERIFY_JSON} left out: no packed file's verdict in {store.MANIFEST} was recorded from it")
    # the bytes the store checked, never re-read from the directory
    contents: Dict[str, bytes] = {n: s.read(n) or b"" for n in [store.MODEL_JSON, store.MANIFEST] + names}
    sources = {f"runtime/{name}": path for name, path in runtime_files().items()}
    if target == "triton":
        contents, sources = _repository(contents, info), {}

    listing = "\n".join(f"- `{n}`" for n in contents)
    load = f'precision="{file_precision(chosen)}", backend="{chosen["backend"]}"' if chosen else 'precision="fp32"'
    from .triton import REPOSITORY, STREAM_MODEL_NAME

    streams = (f"{REPOSITORY}/{STREAM_MODEL_NAME}/config.pbtxt" in contents if target == "triton" else
               store.STREAM_FILES[file_precision(chosen) if chosen else "fp32"] in contents)  # the example's stream graph
    body = (TRITON if target == "triton" else DEVICE).format(
        steps=_steps(target, jetson, info, chosen, why_not, streams), features=info.input_size, load=load,
        named=named_features(info.feature_names), gaps=gap_words(info.missing, info.imported),
        classes=named_classes(info.labels, info.head == "binary") if info.labels else f"none (a {info.head} head)",
        columns=output_columns(info.head, info.labels),
        max_batch=_triton_batch(info))
    per_row = [f"`{f}`" for p in PRECISION_FILES if PRECISIONS[p].per_row
               for f in (PRECISION_FILES[p], store.STREAM_FILES[p]) if f in contents]
    if per_row:
        body += ONE_BY_ONE.format(names=" and ".join(per_row), verb="run" if len(per_row) > 1 else "runs",
                                  them="them" if len(per_row) > 1 else "it",
                                  openvino=OPENVINO_PADDED.format(them="them" if len(per_row) > 1 else "it")
                                  if info.recipe.get("model", {}).get("bidirectional") else "")
    if target == "cpu":  # a Jetson is ARM; a Triton bundle ships no INT8 graph
        int8 = {f: p for p in EXACT_INT8 for f in (PRECISION_FILES[p], store.STREAM_FILES[p]) if f in contents}
        graphs = {f: parse_graph(contents[f], f) for f in int8}
        needs = {f: plain_session_needs(p, graphs[f]) for f, p in int8.items()}
        for words, shipped in ((EXACT_PRODUCTS, [f for f, key in needs.items() if key]),
                               (UNSIGNED_PRODUCTS, [f for f, key in needs.items() if not key])):
            if shipped:
                body += words.format(
                    names=listed(f"`{f}`" for f in shipped), them="them" if len(shipped) > 1 else "it",
                    its="their" if len(shipped) > 1 else "its", verb="store" if len(shipped) > 1 else "stores",
                    keys="\n".join(f"- `{key}` for {listed(f'`{f}`' for f in shipped if needs[f] == key)}"
                                   for key in dict.fromkeys(needs[f] for f in shipped)))
        older = [f for f, p in int8.items() if p == "int8-dynamic" and needs[f]]
        if older:
            many = len(older) > 1
            conv = any(n.op_type == "ConvInteger" for f in older for n in graphs[f].nodes)
            notes.append(OLDER_DYNAMIC.format(names=listed(older), were="were" if many else "was",
                                              them="them" if many else "it",
                                              conv=OLDER_CONV.format(its="their" if many else "its") if conv else ""))
    if target == "triton" and notes:  # a CPU or Jetson device's info says them from the manifest; Triton has no
        # info to ask, and a loosened verdict was said on the host's console only (found by attacking)
        body += "\n## Said when this bundle was made\n\n" + "".join(f"- {note}\n" for note in notes)
    readme = README.format(target=target, version=__version__, source=directory.resolve().name,
                           date=time.strftime("%Y-%m-%d"), files=listing, body=body)
    requirements = REQUIREMENTS[target]
    if jetson is not None:
        requirements = requirements.replace("{cuda}", jetson.target.cuda.split(".")[0])
    if chosen is not None and DEVICE_BACKENDS[chosen["backend"]][0] not in requirements.split():
        requirement, python = DEVICE_BACKENDS[chosen["backend"]]
        requirements += f"{requirement}  # the recommended backend (Python {'.'.join(map(str, python))} or newer)\n"
    generated = {"README.md": readme.encode(), "requirements.txt": requirements.encode()}
    files: Dict[str, Dict[str, object]] = {}
    for name, data in contents.items():
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    for name, path in sources.items():
        files[name] = {"sha256": store.sha256_file(path), "size": path.stat().st_size}
    for name, data in generated.items():
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    made = f"attn-export {__version__} bundle --for {target}" + (f" --target {jetson.target.name}" if jetson else "")
    record: Dict[str, Any] = {"schema": schema.BUNDLE_FORMAT, "for": target, "created_by": made, "files": files}
    if jetson is not None:
        record.update(target=jetson.target.name, tensorrt=jetson.target.tensorrt)
    if chosen is not None:
        record["recommended"] = chosen
    generated[BUNDLE_JSON] = store.json_bytes(record)

    now = int(time.time())
    sizes: Dict[str, int] = {}
    # a killed bundle's temporary file beside the same name: no lock takes that folder, which may be anyone's, so
    # nothing else removes it (found by attacking: one per SIGKILL, each up to the archive's size)
    with contextlib.suppress(OSError):  # best effort: a folder one may write but not list, another user's file
        store.sweep(Path(out).parent, made=Path(out).name)
    with store.atomic_path(out, commit=True) as tmp:  # the bundle in place: a Ctrl-C from then on changes nothing
        with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name, data in contents.items():
                tar.addfile(_info(name, len(data), now), io.BytesIO(data))
                sizes[name] = len(data)
            for name, path in sources.items():
                sizes[name] = path.stat().st_size
                with open(path, "rb") as f:
                    tar.addfile(_info(name, sizes[name], now), f)
            for name, data in generated.items():
                tar.addfile(_info(name, len(data), now), io.BytesIO(data))
                sizes[name] = len(data)
    return BundleResult(out, target, sizes, out.stat().st_size, notes + _notes(target, names, jetson),
                        jetson.target.name if jetson else None)


def _triton_batch(info: Any) -> int:
    """The rows a Triton request may hold (``max_batch_size``): the recipe's ``build.max_batch``, else 32."""
    return int(info.build.max_batch or 32)


def _repository(contents: Dict[str, bytes], info: Any) -> Dict[str, bytes]:
    """A Triton model repository (``triton``) in place of the flat ONNX files: each graph as
    ``model_repository/<model>/1/model.onnx`` beside its ``config.pbtxt``."""
    from .streaming import stream_spec
    from .triton import MODEL_NAME, REPOSITORY, STREAM_MODEL_NAME, model_config

    out = {n: data for n, data in contents.items() if not n.endswith(".onnx")}
    max_batch = _triton_batch(info)
    for file, model, stream in ((store.ONNX_FP32, MODEL_NAME, False), (store.STREAM_ONNX, STREAM_MODEL_NAME, True)):
        if file not in contents:
            continue
        spec = stream_spec(info) if stream else info.spec
        out[f"{REPOSITORY}/{model}/config.pbtxt"] = model_config(model, spec, max_batch, stream).encode()
        out[f"{REPOSITORY}/{model}/1/model.onnx"] = contents[file]
    return out


def refuse_triton(path: Union[str, Path], target: Optional[str]) -> None:
    """A Triton bundle (``target``: its ``bundle.json`` "for") is a model repository with no device package
    and no top-level graph: one line saying so, not "model.onnx is missing"."""
    if target == "triton":
        raise BadInput(f"{path} is a Triton bundle: a model repository for tritonserver (its README.md says how to "
                       "serve it), which the device package does not run; expected an artefact directory, or a "
                       "bundle made with --for cpu or --for jetson")


def bundle_target(directory: Union[str, Path]) -> Optional[str]:
    """What an unpacked bundle in ``directory`` was made for (cpu, jetson, triton); None for an artefact
    directory."""
    path = Path(directory) / BUNDLE_JSON
    return store.read_json(path, schema.BUNDLE).get("for") if path.is_file() else None


def recommendation(s: store.Store) -> Optional[Dict[str, Any]]:
    """The pair bench recommended for a CPU bundle (its ``bundle.json``), from the store's own bytes; None for
    an artefact directory or a bundle made without one."""
    data = s.read(BUNDLE_JSON)
    return None if data is None else store.parse_json(data, s.directory / BUNDLE_JSON, schema.BUNDLE).get("recommended")


def unasked(s: store.Store, backend: str, precision: str) -> Optional[str]:
    """What ``predict`` says when it was given no --backend or --precision and ran ``backend`` on
    ``precision`` where its CPU bundle recommends another pair (found by attacking: the device ran FP32 while
    the bundle's note had called the pick its "default"); None when it ran the pick, or there is none."""
    pick = recommendation(s)
    if pick is None or (pick["backend"], pick["precision"]) == (backend, precision):
        return None
    refused = not_verified(s, pick)
    return (f"this ran {precision} on {backend}, predict's default; this bundle recommends "
            f"{predict_flags(pick)} ({pick['artifact']}, {why_picked(pick)})" + (f"; {refused}" if refused else ""))


def not_verified(s: store.Store, pick: Mapping[str, Any]) -> Optional[str]:
    """Why predict would refuse ``pick`` here now: its file's verdict on the bytes here is not a pass (found by
    attacking: a verify on the device failed it, and info still recommended it), or, for a pair verify judges
    as its own (openvino-bf16: a ``verify .`` on the device judges again without it, found by a review), verify
    has not passed that pair; None otherwise."""
    name = str(pick.get("artifact"))
    trust = s.state(name)
    if trust.verified is not True:  # a file not current has no verdict to say, but why it is not (review)
        return f"predict refuses it here now: {trust.reason if not trust.current else f'{name} {trust.verdict}'}"
    cls = REGISTRY.get(str(pick.get("backend")))
    pair = (str(pick.get("backend")), str(pick.get("artifact")))
    if cls is None or cls.computes is None or pair in verified_pairs(s)[0]:
        return None
    from .dispatch import verify_by_name

    elsewhere = other_cpu(s).get(pair)
    said = f"its pass does not hold here: {elsewhere}" if elsewhere else \
        "verify has not passed that pair on the bytes here now"
    return f"{said} (verify it by name: {verify_by_name(s, cls.name)})"


def shipped(directory: Union[str, Path]) -> Optional[List[str]]:
    """The files an unpacked bundle in ``directory`` was shipped with (its ``bundle.json`` listing); None for
    an artefact directory."""
    path = Path(directory) / BUNDLE_JSON
    return list(store.read_json(path, schema.BUNDLE)["files"]) if path.is_file() else None


def made_for(directory: Union[str, Path]) -> Optional[str]:
    """The TensorRT target an unpacked Jetson bundle in ``directory`` was made for (its ``bundle.json``);
    None for an artefact directory or a bundle made for a CPU."""
    path = Path(directory) / BUNDLE_JSON
    if not path.is_file():
        return None
    made = store.read_json(path, schema.BUNDLE).get("target")
    return made if isinstance(made, str) else None


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _member_path(member: tarfile.TarInfo, archive: Path) -> Optional[PurePosixPath]:
    """The member's safe relative path, None for the archive's root directory (``tar czf b.tgz .`` writes
    ``./``: nothing to extract), or DataError saying why it is refused."""
    name = member.name
    what = f"{archive}: member {name!r}"
    if not name or "\x00" in name or "\\" in name:
        raise DataError(f"{what} has an unusable name; refused")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{what} is an absolute path; refused (nothing was extracted)")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{what} climbs out of the target with '..'; refused (nothing was extracted)")
    if member.issym() or member.islnk():
        raise DataError(f"{what} is a {'symbolic' if member.issym() else 'hard'} link "
                        f"(to {member.linkname!r}); refused (nothing was extracted)")
    if not (member.isreg() or member.isdir()):
        raise DataError(f"{what} is not a regular file or directory; refused (nothing was extracted)")
    if not parts and member.isdir():
        return None
    if not parts:
        raise DataError(f"{what} names the archive root; refused")
    return PurePosixPath(*parts)


class Archive:
    """A bundle opened for reading, every header and the listing checked (see the module docstring);
    ``read`` returns one listed member's bytes, checked against their sha256."""

    def __init__(self, path: Union[str, Path], max_member_bytes: int = MAX_MEMBER_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES, max_members: int = MAX_MEMBERS) -> None:
        self.path = Path(path)
        try:
            self._tar = tarfile.open(self.path, "r:*")
        except FileNotFoundError:
            raise DataError(f"{self.path}: no such file") from None
        except (tarfile.TarError, OSError, EOFError) as e:  # EOFError: a gzip stream cut short
            raise DataError(f"{self.path}: not a readable .tar.gz bundle: {e}") from None
        try:
            limit = min(max_total_bytes, max(MAX_RATIO * self.path.stat().st_size, RATIO_FLOOR))
            self.members = self._headers(max_member_bytes, limit, max_members)
            self.listing = self._listing()
        except BaseException:
            self._tar.close()
            raise

    def _headers(self, max_member_bytes: int, max_total_bytes: int, max_members: int) -> Dict[str, tarfile.TarInfo]:
        """Every member's header, checked before its data is read past (so inflated only when it fits)."""
        archive, members, total, count = self.path, {}, 0, 0
        try:
            for member in self._tar:
                count += 1
                if count > max_members:
                    raise DataError(f"{archive}: more than {max_members} members; refused")
                path = _member_path(member, archive)
                if path is None:
                    continue
                name = path.as_posix()
                if name in members:
                    raise DataError(f"{archive}: member {member.name!r} appears twice; refused")
                if member.size > max_member_bytes:
                    raise DataError(f"{archive}: member {member.name!r} is {member.size:,} bytes, over the "
                                    f"{max_member_bytes:,}-byte limit; refused")
                total += member.size
                if total > max_total_bytes:
                    raise DataError(f"{archive}: members add up to over {max_total_bytes:,} bytes (at most "
                                    f"{MAX_RATIO} times the archive's {archive.stat().st_size:,}); refused")
                member.name = name
                members[name] = member
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{archive}: corrupt archive: {e}") from None
        return members

    def _listing(self) -> Dict[str, Dict[str, Any]]:
        member = self.members.get(BUNDLE_JSON)
        if member is None or not member.isreg():
            raise DataError(f"{self.path} holds no {BUNDLE_JSON}: not a bundle made by attn-export bundle; expected "
                            f"its listing of every file with sha256 and size")
        if member.size > store.MAX_JSON_BYTES:
            raise DataError(f"{self.path}: {BUNDLE_JSON} is {member.size:,} bytes; expected at most "
                            f"{store.MAX_JSON_BYTES:,}")
        self._record = self._bytes(member)  # what read(BUNDLE_JSON) gives: the listing, checked here
        record = _check_listing(self._record, self.members, self.path)
        made = record.get("target")
        self.made_for: Optional[str] = made if isinstance(made, str) else None  # a Jetson bundle's TensorRT line
        self.target = record.get("for")  # cpu, jetson or triton
        return dict(record["files"])

    def _bytes(self, member: tarfile.TarInfo) -> bytes:
        try:
            f = self._tar.extractfile(member)
            assert f is not None  # a regular file, checked
            with f:
                return f.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{self.path}: cannot read {member.name}: {e}") from None

    def read(self, name: str) -> Optional[bytes]:
        """A listed member's bytes, checked against ``bundle.json``'s sha256, or ``bundle.json`` itself (which
        lists no sha256 of its own; found by attacking: a packed bundle never named its pick); None when it is
        not listed."""
        if name == BUNDLE_JSON:
            return self._record
        if name not in self.listing:
            return None
        data = self._bytes(self.members[name])
        self._matches(name, hashlib.sha256(data).hexdigest())
        return data

    def _matches(self, name: str, sha256: str) -> None:
        if sha256 != self.listing[name]["sha256"]:
            raise DataError(f"{self.path}: {name} does not match its sha256 in {BUNDLE_JSON} (changed or corrupt); "
                            "expected the bundle as attn-export bundle wrote it (make it again on the host)")

    def extract(self, staging: Path) -> None:
        """The listed files (and the listing) into ``staging``, each checked against its sha256."""
        wanted = sorted((self.members[n] for n in [*self.listing, BUNDLE_JSON]), key=lambda m: m.offset)
        _extract(self._tar, wanted, staging, self.path)
        for name in self.listing:
            self._matches(name, store.sha256_file(staging.joinpath(*name.split("/"))))

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bytecode_cache(name: str) -> bool:
    """Python's bytecode cache of the device package (``runtime/.../__pycache__/*.pyc``), which running the
    bundle's README commands writes: an archive re-packed from that folder was refused for it (found by
    attacking). Such a member is never extracted nor read (``extract`` takes the listed files only), so a
    .pyc someone slipped in never runs: Python writes its own."""
    parts = name.split("/")
    return parts[0] == "runtime" and len(parts) > 2 and parts[-2] == "__pycache__" and name.endswith(".pyc")


def _check_listing(data: bytes, members: Dict[str, tarfile.TarInfo], archive: Path) -> Dict[str, Any]:
    """``bundle.json`` (its bytes ``data``), whose files are each one of the archive's regular ``members`` with
    the size it declares, and every regular member listed. A name is a relative path without ``..``
    (``schema.BUNDLE``), so that no listing names a file outside the archive."""
    where = f"{archive}: {BUNDLE_JSON}"
    record = store.parse_json(data, where, schema.BUNDLE)
    files = record["files"]
    for name, entry in files.items():
        found = members.get(name)
        if found is None:  # found by a user: a deleted file was "not a regular file of the archive"
            raise DataError(f"{archive}: {name} is missing, though {BUNDLE_JSON} lists it (nothing was extracted); "
                            "expected the bundle as attn-export bundle wrote it")
        if not found.isreg():
            raise DataError(f"{where}: files[{name!r}] is not a regular file of the archive; expected only the "
                            "names of the archive's own files")
        if found.size != entry["size"]:
            raise DataError(f"{archive}: {name} is {found.size:,} bytes, {BUNDLE_JSON} says {entry['size']:,} "
                            "(nothing was extracted); expected the bundle as attn-export bundle wrote it")
    unlisted = [n for n, m in members.items() if m.isreg() and n != BUNDLE_JSON and n not in files
                and not _bytecode_cache(n)]
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise DataError(f"{archive}: member {unlisted[0]!r} is not listed in {BUNDLE_JSON}{more} (nothing was "
                        "extracted); expected the bundle as attn-export bundle wrote it")
    return dict(record)


def unpack(
    archive: Union[str, Path],
    target: Union[str, Path],
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
) -> Path:
    """Unpack a bundle into ``target`` (absent or empty); see the module docstring for what is refused."""
    archive, target = Path(archive), Path(target)
    if target.is_symlink():  # an empty directory behind a link, or a dangling one: never unpacked through
        raise BadInput(f"{target} is a symbolic link (to {os.readlink(target)}); expected a new directory or an "
                       "empty one, not a link")
    if target.exists() and not target.is_dir():
        raise BadInput(f"{target} exists and is not a directory; expected a new directory or an empty one")
    held = sorted(p.name for p in target.iterdir()) if target.exists() else []
    if held:  # name what is there: an interrupted unbundle's FILLING looked like an empty directory to ls
        # what to remove: everything an interrupted fill left, not the marker alone (found by attacking: that
        # left a half-bundle, without its bundle.json, that predict and verify took as a directory)
        why = (f"{FILLING}, an unbundle's that is running or was interrupted: if none runs, empty the directory "
               "and unbundle again"
               if FILLING in held else f"{held[0]}{f' and {len(held) - 1} more' if len(held) > 1 else ''}")
        raise BadInput(f"{target} exists and is not empty (it holds {why}); expected a new directory or an empty "
                       "one")
    with Archive(archive, max_member_bytes, max_total_bytes, max_members) as source:
        blocker = next((p for p in reversed(target.parents) if os.path.lexists(p) and not p.is_dir()), None)
        if blocker is not None:  # "File exists" is what mkdir would say: name the path that is in the way
            what = f"a symbolic link to {os.readlink(blocker)}, not a directory" if blocker.is_symlink() else "a file"
            raise BadInput(f"{blocker} is {what}; expected a directory to unpack {target.name} into")
        # an empty directory that exists is filled in place: it may be a mount point (a volume, an SD card),
        # which no rename can replace, and its mode and group are the user's (found by attacking)
        inside = target.is_dir()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if inside:  # one fixed name: of two unbundles into one empty directory, one makes it and goes on
                staging = target / FILLING
                os.mkdir(staging, 0o700)
            else:  # named by this process, so that the next unbundle beside it removes it if it is killed
                prefix = f".{store.short_name(target.name)}.unbundle-"
                store.sweep_staging(target.parent, prefix)
                staging = Path(tempfile.mkdtemp(prefix=store.staging_prefix(prefix), dir=target.parent))
        except OSError as e:
            if e.errno == errno.EEXIST:
                raise Busy(f"another unbundle is filling {target} (its {FILLING} is there); expected one unbundle "
                           "per target directory") from None
            raise from_os_error(e, target) from None
        try:
            source.extract(staging)
            try:
                with commit_point():  # the target filled: a Ctrl-C from then on must not say "nothing changed"
                    if inside:
                        _fill(staging, target)
                    else:
                        os.replace(staging, target)
                store.fsync_directory(target if inside else target.parent)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another unbundle renamed its copy there first
                    raise Busy(f"another unbundle is writing {target} (it put its copy there first); expected one "
                               "unbundle per target directory") from None
                raise from_os_error(e, target) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _fill(staging: Path, target: Path) -> None:
    """Move what was unpacked into ``staging`` (``FILLING`` inside the empty ``target``) into ``target``,
    ``bundle.json`` last, so that a target holding it holds everything; on any failure or interruption, each
    name gone from ``staging`` is removed from ``target`` again (a name moved just before an interruption
    included)."""
    other = next((p.name for p in target.iterdir() if p != staging), None)
    if other is not None:
        raise BadInput(f"{other} appeared in {target} while the bundle was unpacked; expected the directory left "
                       "empty until unbundle is done")
    names = sorted(os.listdir(staging), key=lambda n: n == BUNDLE_JSON)
    try:
        for name in names:
            os.replace(staging / name, target / name)
        staging.rmdir()
    except BaseException:
        for name in names:
            path = target / name
            if not os.path.lexists(staging / name) and os.path.lexists(path):
                with contextlib.suppress(OSError):  # the first error is the one to tell
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
        raise


def _extract(tar: tarfile.TarFile, members: List[tarfile.TarInfo], staging: Path, archive: Path) -> None:
    try:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(staging, members=members, filter="data")
        else:  # Python without extraction filters: members are already vetted
            tar.extractall(staging, members=members)
        # the modes a plain copy would have (the umask's), whatever the archive says; the staging
        # directory itself is mkdtemp's 0o700
        os.chmod(staging, store.DIR_MODE)
        for root, dirs, files in os.walk(staging):
            for d in dirs:
                os.chmod(os.path.join(root, d), store.DIR_MODE)
            for f in files:
                os.chmod(os.path.join(root, f), store.FILE_MODE)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):  # the disk, not the archive: exit 1, named
            raise from_os_error(e, staging.parent) from None
        raise DataError(f"{archive}: cannot extract: {e}") from None
    except (tarfile.TarError, EOFError) as e:
        raise DataError(f"{archive}: cannot extract: {e}") from None
    # each file's data and each directory's names on disk before anything is renamed into the target, as every
    # artefact's are before its rename; a failure is the disk's, not the archive's
    try:
        for root, _, files in os.walk(staging, topdown=False):
            for f in files:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            store.fsync_directory(Path(root))
    except OSError as e:
        raise from_os_error(e, staging.parent) from None
