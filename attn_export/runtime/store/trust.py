"""The one place that decides whether an artefact may be used: its bytes, its whole lineage, what
``model.json`` says of it, and the verdict ``verify`` gave those very bytes.

    store = Store(directory)                                   # or Store.load(path): a directory or a bundle
    artifact = store.open("model.fp16.onnx", need="verified")  # or need="current"; raises Untrusted (exit 2)
    artifact.data, artifact.sha256, artifact.spec, artifact.entry, artifact.profile
    store.state("model.fp16.onnx")                             # the same decision as a value (info, report)

An artefact is **current** when
- it is recorded in ``manifest.json`` and its bytes (read once, here) have the recorded sha256;
- its parent is recorded with the sha256 it was made from, and the parent is current in turn, up to
  ``model.safetensors``, the root of every lineage (so retrained weights make ``model.onnx``, every
  precision variant and every engine stale at once). A bundle leaves the weights behind: where they are
  absent, their manifest record is what the chain is checked against;
- ``model.json`` is current too (labels, sizes and normalisation come from it) and, for a graph or an
  engine, agrees with it: input and output names, ranks, dtypes, the feature count and the output width,
  and the labels and training lengths in the graph's metadata;
- it keeps no tensor outside its bytes (ONNX external data is refused: it would escape the hash).

It is **verified** when it is current and ``verify`` passed exactly these bytes (the verdict's sha256, not
the entry's, which is as easy to edit as the file). An engine must also have been built for this GPU and
TensorRT (``trt.compat``: exit 3 otherwise) and, when it embeds host code, be allowed to run it.

The bytes that were hashed are the bytes the runtime gets (``Artifact.data``): a file swapped after the
check is never what runs. What this cannot catch: a directory rewritten consistently (every file and the
manifest) by someone with write access is, to any check, another model; see the README's section on trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

from .. import schema
from ...errors import BadInput, DataError, MissingPrerequisite, NotAvailable, Untrusted
from ..iospec import CLASSIFIERS, IOSpec
from ..modelinfo import ModelInfo
from ..onnxfile import Graph, parse_graph, refuse_external_data
from ..precisions import ONNX_FILES, PRECISIONS, build_flag, moves_verdict
from ..settings import parse_override
from ..trt.compat import HOST_CODE_ENV, Here, foreign_problems, this_machine
from .files import MAX_JSON_BYTES, being_written, made_as, parse_json, read_file
from .manifest import parse_manifest
from . import names
from .names import (BUNDLE_JSON, DEVICE_MODULE, MANIFEST, METRICS, MODEL_JSON, ONNX_FP32, STREAM_FILES, VERIFY_JSON,
                    WEIGHTS, directory_word, is_engine, made_by)

if TYPE_CHECKING:
    from ..bundle import Archive

__all__ = ["MAX_ARTIFACT_BYTES", "NEEDS", "Artifact", "Store", "Trust"]

NEEDS = ("current", "verified")
NEVER_VERIFIED = "has never been verified"
# an INT8 file of a model without classes: verify judges INT8 by its decisions, so it never will be
NEVER_JUDGED = "is never judged by verify: INT8 is judged by its decisions, and a model without classes has none"
VERIFY_COMMANDS = f"attn-export verify {{host}}; on a device, PYTHONPATH=runtime {DEVICE_MODULE} verify {{device}}"
# INT8 is judged by its decisions on the test split, which only the host has: a device's verify judges it by
# structure and records no verdict (runtime.verify), so an INT8 file gets its verdict on the host
REPLACES_FILES = ("train", "load", "export", "export --stream", "quantize", "build", "run")  # ``writes_directory``
INT8_ON_THE_HOST = ("on the host (attn-export verify {host}) and bundle again: a device judges INT8 by structure "
                    "only, which records no verdict")
# the largest artefact the store reads: ONNX Runtime, TensorRT and protobuf stop at 2 GiB anyway
MAX_ARTIFACT_BYTES = 2 << 30
_PRECISION_OF_FILE = {file: precision for files in (ONNX_FILES, STREAM_FILES) for precision, file in files.items()}
_ONNX_TYPES = {"x": "float32", "lengths": "int64"}


def _precision_of(name: str, entry: Mapping[str, Any]) -> Optional[str]:
    """An artefact's precision: by its file name (``model.int8.onnx``, ``model.stream.onnx``), else as its
    manifest entry records it (engines)."""
    return _PRECISION_OF_FILE.get(name) or (str(entry["precision"]) if entry.get("precision") else None)


@dataclass(frozen=True)
class Trust:
    """What the store found for one file. ``state``: ``current``, ``missing``, ``unrecorded``, ``changed``,
    ``stale``, ``damaged`` (not what its name says: not ONNX, external data) or ``contradicts``; ``reason``
    names the file and why (None when current); ``verified``: True when verify passed these bytes, False
    when it failed them, None otherwise; ``verdict`` says which, as words that follow the file's name."""

    name: str
    state: str
    reason: Optional[str] = None
    verified: Optional[bool] = None
    verdict: str = NEVER_VERIFIED

    @property
    def current(self) -> bool:
        return self.state == "current"

    def problems(self) -> List[str]:
        """Every reason not to use it: its state's, and its verdict's where it has one (``info``, ``inspect``)."""
        out = [] if self.reason is None else [self.reason]
        if self.current and self.verified is not True and self.verdict not in (NEVER_VERIFIED, NEVER_JUDGED):
            out.append(f"{self.name} {self.verdict}")
        return out


@dataclass(frozen=True)
class Artifact:
    """A checked artefact: the bytes that were hashed (the runtime gets these, never the path), its manifest
    entry, precision, the I/O spec it runs with and the shapes it accepts. ``candidate`` wraps a file a
    writer has just made and not yet recorded (export's and quantize's own checks), trusting nothing."""

    directory: Path
    name: str
    data: bytes = field(repr=False)
    sha256: str
    kind: str  # onnx | engine | torch | file
    precision: Optional[str]
    spec: IOSpec
    info: Optional[ModelInfo] = field(repr=False)
    entry: Mapping[str, Any] = field(default_factory=dict, repr=False)
    graph: Optional[Graph] = field(default=None, repr=False)
    notes: Tuple[str, ...] = ()
    made: bool = False  # a candidate: this process made it, so a runtime refusing it is a failed work (exit 1)

    @property
    def path(self) -> Path:
        return self.directory / self.name

    @property
    def verified(self) -> Optional[Mapping[str, Any]]:
        verdict = self.entry.get("verified")
        return verdict if isinstance(verdict, dict) else None

    @property
    def profile(self) -> Any:
        """An engine's optimisation profile (``trt.profile.Profile``), None for what runs any shape."""
        if "profile" not in self.entry:
            return None
        from ..trt.profile import Profile

        return Profile.from_dict(self.entry["profile"])

    @classmethod
    def candidate(cls, path: Path, spec: IOSpec, precision: Optional[str] = None,
                  info: Optional[ModelInfo] = None) -> "Artifact":
        """The ONNX file a writer just made at ``path`` (a temporary name), read once, checked for external
        data; unrecorded, so nothing may vouch for it but the writer's own checks. It is named as the file it
        will become (found by attacking: errors named ``.attn-export.PID.model.onnx.XXXX.tmp``, gone by then)."""
        path = Path(path)
        name = made_as(path)
        data = read_file(path, MAX_ARTIFACT_BYTES, "ONNX model")
        graph = parse_graph(data, name)
        refuse_external_data(graph, name)
        return cls(path.parent, name, data, hashlib.sha256(data).hexdigest(), "onnx", precision, spec, info,
                   graph=graph, made=True)


class Store:
    """One artefact directory as the manifest describes it; every file read at most once."""

    def __init__(self, directory: Union[str, Path], archive: Optional["Archive"] = None) -> None:
        """``directory``: an artefact directory; or, with ``archive`` (a bundle opened by ``Store.load``), the
        bundle's path, whose listed members are read from the archive on demand (nothing is extracted)."""
        self.directory = Path(directory)
        self._archive = archive
        if archive is None and not self.directory.is_dir():
            if self.directory.exists():  # a bundle or another file where a directory is needed
                raise BadInput(f"{self.directory} is a file; expected an artefact directory here (a bundle: "
                               "unbundle it first: attn-export unbundle on the host, python3 -m "
                               "attn_export.runtime unpack on a device, or tar xzf)")
            raise MissingPrerequisite(f"artefact directory {self.directory} does not exist; run "
                                      f"{made_by(MODEL_JSON, self.directory)} first")
        self._bytes: Dict[str, Optional[bytes]] = {}
        self._parsed: Dict[Tuple[str, int], Any] = {}
        self._sha: Dict[str, str] = {}
        self._trust: Dict[str, Trust] = {}
        self._graphs: Dict[str, Graph] = {}
        self._info: Optional[ModelInfo] = None
        data = self.read(MANIFEST)
        if archive is not None and data is None:
            raise DataError(f"{self.directory} holds no {MANIFEST}: not a bundle made by attn-export bundle")
        self.manifest = parse_manifest(data, self.directory / MANIFEST)
        self.entries: Dict[str, Any] = self.manifest["artifacts"]

    # ---- a directory or a bundle

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Store":
        """A directory, or a bundle ``.tar.gz`` read in place (``close`` closes it)."""
        from ..bundle import bundle_target, refuse_triton

        source = Path(path)
        if source.is_dir():
            refuse_triton(source, bundle_target(source))
            return cls(source)
        if not source.exists():
            raise MissingPrerequisite(f"{source} does not exist; expected an artefact directory or a bundle")
        try:  # a gzip stream cut short raises EOFError, not a TarError
            bundle = source.is_file() and tarfile.is_tarfile(str(source))
        except EOFError as e:
            raise DataError(f"{source}: corrupt archive (cut short?): {e}") from None
        if not bundle:
            if source.is_file() and source.name.endswith((".tar.gz", ".tgz", ".tar")):  # said what it is (attacking)
                with open(source, "rb") as fh:
                    head = fh.read(2)
                what = ("an empty file" if not head else "gzip, but no tar archive inside" if head == b"\x1f\x8b"
                        else "not gzip")
                raise DataError(f"{source}: not a readable .tar.gz bundle ({what}); expected a bundle made by "
                                "attn-export bundle")
            raise BadInput(f"{source} is neither an artefact directory nor a bundle (.tar.gz)")
        from ..bundle import Archive

        archive = Archive(source)
        try:
            refuse_triton(source, archive.target)
            return cls(source, archive=archive)
        except BaseException:
            archive.close()
            raise

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading, once

    def read(self, name: str) -> Optional[bytes]:
        """``name``'s bytes (read once per store), None when there is no such file."""
        if name not in self._bytes:
            path = self.directory / name
            if self._archive is not None:
                data = self._archive.read(name)
            elif not os.path.exists(path):  # a link to nothing is missing too (found by attacking: see lacking)
                data = None
            else:
                data = read_file(path, MAX_JSON_BYTES if name.endswith(".json") else MAX_ARTIFACT_BYTES, name)
            self._bytes[name] = data
            if data is not None:
                self._sha[name] = hashlib.sha256(data).hexdigest()
        return self._bytes[name]

    def parsed(self, name: str, kind: schema.Node) -> Any:
        """``name``'s JSON checked against ``kind`` (``schema.VERIFY``, ...), parsed once per store (a large
        verify.json took 32 ms a parse, and a predictor's load read it twice): shared, so read only; None when
        there is no such file."""
        key = (name, id(kind))
        if key not in self._parsed:
            data = self.read(name)
            self._parsed[key] = None if data is None else parse_json(data, self.directory / name, kind)
        return self._parsed[key]

    def sha256(self, name: str) -> Optional[str]:
        return self._sha.get(name) if self.read(name) is not None else None

    def entry(self, name: str) -> Optional[Dict[str, Any]]:
        entry = self.entries.get(name)
        return entry if isinstance(entry, dict) else None

    @property
    def packed(self) -> bool:
        """Read in place from a bundle's archive (whose bytes cannot change under a loaded predictor)."""
        return self._archive is not None

    def hinted(self) -> Optional[Path]:
        """The directory a "run attn-export X" hint names (``names.made_by``): this one, or none in a bundle,
        whose commands are the host's, on a directory the device does not know."""
        return None if self.in_bundle() else self.directory

    def in_bundle(self) -> bool:
        """A bundle (packed, or unpacked with its bundle.json): a device, where no attn-export makes files."""
        from ..bundle import bundle_target

        return self._archive is not None or bundle_target(self.directory) is not None

    def how_to_verify(self, name: str, for_device: bool = False) -> str:
        """Where and how ``name`` gets a verdict (words that follow "verify it"): an INT8 graph in a bundle, or
        bound for one (``for_device``), on the host (``host_judges``); anything else with this directory's
        verify (``VERIFY_COMMANDS``), naming it (found by attacking: "verify DIR" could not run as printed; a
        bundle's commands are the host's, for the directory the device does not know)."""
        where = self.hinted()
        here = "DIR" if where is None else directory_word(where)
        if self.host_judges(name) and (for_device or self.in_bundle()):
            return INT8_ON_THE_HOST.format(host=here)
        shipped = names.shipped(self.directory)
        if shipped and not for_device:  # the package this directory ships, as every other hint here names it
            return f"({shipped} {DEVICE_MODULE} verify {directory_word(self.directory)})"
        # bound for a device (``for_device``): the device's own copy, which this directory is not
        return f"({VERIFY_COMMANDS.format(host=here, device='DIR' if for_device else here)})"

    def host_judges(self, name: str) -> bool:
        """Whether only the host's verify can give ``name`` its verdict: an INT8 graph (judged by its decisions on
        the test split), not an engine, which the device builds and verifies itself."""
        precision = PRECISIONS.get(str(_precision_of(name, self.entry(name) or {})))
        return precision is not None and precision.judged_by == "decisions" and not is_engine(name)

    def _missing(self, name: str) -> MissingPrerequisite:
        """The error for ``name`` missing here: in a bundle, to make it on the host and bundle again; in an
        artefact directory, the command that makes it."""
        if self.in_bundle() and name in (MODEL_JSON, MANIFEST):  # every bundle ships them: unpacked, then lost
            return MissingPrerequisite(f"{self.directory / name} is missing, which every bundle holds; expected the "
                                       "bundle as it was unpacked: unpack its .tar.gz again")
        if self.damaged_since_unpacked([name]):  # lost on the device: the host has nothing to remake (attacking)
            return MissingPrerequisite(f"{self.directory / name} is missing, which this bundle shipped ({BUNDLE_JSON} "
                                       "lists it); expected the bundle as it was unpacked: unpack its .tar.gz again")
        entry = self.entry(name) or {}
        verdict = entry.get("verified")
        if self.in_bundle() and isinstance(verdict, dict) and verdict.get("passed") is False and \
                verdict.get("sha256") == entry.get("sha256"):  # bundle leaves such a graph out (runtime.bundle.pack)
            return MissingPrerequisite(f"{self.directory / name} is not in this bundle: it failed verify on the host, "
                                       "which leaves such a graph out; expected it fixed there (attn-export verify "
                                       "DIR says why) and bundled again")
        cannot = self._cannot_stream(name) if self.entry(name) is not None else None
        if cannot:  # export --stream would refuse (found by attacking): plain export drops the records
            return MissingPrerequisite(f"{self.directory / name} is missing, and the model cannot stream now "
                                       f"({cannot}): {made_by(ONNX_FP32, self.hinted())} removes the stream graphs"
                                       + (" on the host; bundle again" if self.in_bundle() else ""))
        if self.in_bundle():
            return MissingPrerequisite(f"{self.directory / name} is not in this bundle; make it on the host with "
                                       f"{made_by(name)}, and bundle again")
        return MissingPrerequisite(f"{self.directory / name} is missing; run {made_by(name, self.directory)} first")

    def damaged_since_unpacked(self, names: Iterable[str]) -> Optional[str]:
        """The first of ``names`` that an unpacked bundle's ``bundle.json`` lists with other bytes than are here
        now, or that is gone: changed on the device, where the .tar.gz still holds it (the device's verify
        rewrites only the manifest and verify.json). None for anything else, and in an artefact directory."""
        listed = self._listed()
        return next((n for n in names if n in listed and n not in (MANIFEST, VERIFY_JSON)
                     and self.sha256(n) != listed[n]["sha256"]), None)

    def _listed(self) -> Dict[str, Any]:
        """An unpacked bundle's ``bundle.json`` files (name -> sha256 and size); empty elsewhere, or unreadable."""
        if self._archive is not None or self.read(BUNDLE_JSON) is None:
            return {}
        try:
            return dict(self.parsed(BUNDLE_JSON, schema.BUNDLE)["files"])
        except (BadInput, DataError):  # said by what reads it for itself (unpack, info)
            return {}

    def _without_data(self) -> bool:
        """Whether model.json's model was loaded without a recipe's training data (``[data] name = "none"``)."""
        try:
            return self.info.recipe.get("data", {}).get("name") == "none"
        except (BadInput, DataError, MissingPrerequisite):
            return False

    def _cannot_stream(self, name: str) -> Optional[str]:
        """Why ``model.json``'s model cannot stream, where ``name`` is a stream graph (so that a hint never
        sends anyone to ``export --stream``, which refuses); None otherwise, or where model.json cannot say."""
        from ..streaming import not_streamable

        if name not in STREAM_FILES.values():
            return None
        try:
            return not_streamable(self.info.recipe.get("model", {}))
        except (BadInput, DataError, MissingPrerequisite):
            return None

    def made_for(self) -> Optional[str]:
        """The TensorRT line a Jetson bundle was made for (``bundle.json``), read in place or unpacked; None
        for an artefact directory or a CPU bundle."""
        if self._archive is not None:
            return self._archive.made_for
        from ..bundle import made_for

        return made_for(self.directory)

    def present(self) -> List[str]:
        """The recorded artefacts that are in the directory, in the manifest's order."""
        if self._archive is not None:
            return [n for n in self.entries if n in self._archive.listing]
        return [n for n in self.entries if (self.directory / n).is_file()]

    def lacking(self) -> List[str]:
        """The recorded artefacts this store should hold and does not (nothing at their path), the one rule
        verify, inspect, info and the TensorRT readiness list them by: in a directory every one the manifest
        records; in an unpacked bundle those its ``bundle.json`` lists as shipped (the weights stay on the host
        on purpose); none in a packed bundle, whose listing is checked whole when it is opened."""
        if self._archive is not None:
            return []
        from ..bundle import shipped

        listed = shipped(self.directory)
        # a link to nothing counts (found by attacking: neither present nor lacking, a dangling link at
        # model.fp16.onnx was passed over by verify, PASSED, while inspect stopped on it)
        return [n for n in self.entries if not os.path.exists(self.directory / n) and (listed is None or n in listed)]

    def verified_on(self, name: str) -> List[str]:
        """The backends ``name``'s passing verdict on its current bytes records (none without one): a pass on one
        runtime says nothing of another (what predict, bench --stream and a Triton bundle ask)."""
        if self.state(name).verified is not True:
            return []
        verdict = (self.entry(name) or {}).get("verified")
        return [str(b) for b in (verdict.get("backends") or [])] if isinstance(verdict, dict) else []

    def loosened(self, name: str, computes: Optional[str] = None) -> List[str]:
        """The ``--set`` overrides ``name``'s passing verdict on its current bytes was given under that can move
        a verdict on its precision (``computes``, where a backend runs it in one of its own: openvino-bf16);
        none: the recipe's own ``[verify]`` settings, or no such verdict. Said wherever the verdict is (bundle,
        info, predict): found by a user and by attacking, a 100x budget passed like any verdict."""
        if self.state(name).verified is not True:  # a failed verdict, or one on other bytes, vouches for nothing
            return []
        entry = self.entry(name) or {}
        verdict = entry.get("verified")
        if not isinstance(verdict, dict):
            return []
        precision = computes or _precision_of(name, entry)
        return sorted(str(o) for o in verdict.get("overrides") or []
                      if precision is None or moves_verdict(precision, parse_override(str(o))[1]))

    @property
    def info(self) -> ModelInfo:
        """What ``model.json`` says (its bytes read once); whether it may be believed is ``state(MODEL_JSON)``."""
        if self._info is None:
            data = self.read(MODEL_JSON)
            if data is None:
                raise self._missing(MODEL_JSON)
            path = self.directory / MODEL_JSON
            self._info = ModelInfo.parse(parse_json(data, path), path)
        return self._info

    def below_floor(self) -> Optional[str]:
        """What to say where the current ``metrics.json``'s test accuracy is below the recorded recipe's
        ``train.min_test_accuracy`` (train exited 1 and kept the files for inspection); None otherwise."""
        if not self.state(METRICS).current:
            return None
        metrics = parse_json(self.read(METRICS) or b"", self.directory / METRICS, schema.METRICS)
        accuracy = metrics["test"].get("accuracy")
        train = self.info.recipe.get("train")
        floor = train.get("min_test_accuracy") if isinstance(train, dict) else None
        if not isinstance(floor, (int, float)) or isinstance(floor, bool) or accuracy is None or accuracy >= floor:
            return None  # no floor recorded (model.json's schema does not hold the recipe's [train] table)
        return (f"test accuracy {accuracy:.4f} is below the recipe's floor train.min_test_accuracy = {floor} "
                "(train exited 1 and kept these files for inspection): this model did not meet its bar")

    def model(self) -> ModelInfo:
        """``model.json``, refused unless it is current (recorded, unchanged, made from the recorded weights)."""
        trust = self.state(MODEL_JSON)
        if trust.state == "missing":
            raise MissingPrerequisite(str(trust.reason))
        if not trust.current:  # in a bundle, what the host does (found by attacking: the device was told to train)
            raise Untrusted(f"{trust.reason}; {self._fix(MODEL_JSON, trust)}")
        return self.info

    # ---- the rule

    def state(self, name: str) -> Trust:
        """The store's decision on ``name`` (see the module docstring), computed once."""
        return self._decide(name, set())

    def _decide(self, name: str, visiting: Set[str]) -> Trust:
        if name not in self._trust:
            if name in visiting:
                return Trust(name, "stale", f"{MANIFEST} records {name} as its own ancestor")
            visiting.add(name)
            self._trust[name] = self._judge(name, visiting)
        return self._trust[name]

    def _judge(self, name: str, visiting: Set[str]) -> Trust:
        try:
            data = self.read(name)
        except DataError as e:
            if not self._irregular(name):  # a bundle's member that fails its listing stops the command
                raise
            return Trust(name, "damaged", str(e))
        if data is None:
            return Trust(name, "missing", str(self._missing(name)))
        entry = self.entry(name)
        if entry is None:
            return Trust(name, "unrecorded", f"{name} is not recorded in {MANIFEST}: its origin is unknown")
        if self._sha[name] != entry["sha256"]:
            return Trust(name, "changed", f"{name} was changed after it was recorded (its sha256 differs from "
                                          f"{MANIFEST})")
        stale = self._parent_problem(name, entry, visiting)
        if stale is None and name not in (WEIGHTS, MODEL_JSON):
            model = self._decide(MODEL_JSON, visiting)
            if not model.current:
                stale = f"{name} cannot be trusted: {model.reason}"
        if stale is not None:
            return Trust(name, "stale", stale)
        try:
            contradiction = self._contradiction(name, data, entry)
        except BadInput as e:  # not ONNX at all, external data, a model.json that does not parse
            return Trust(name, "damaged", str(e))
        if contradiction is not None:
            return Trust(name, "contradicts", f"{name} contradicts {MODEL_JSON}: {contradiction}")
        return self._verdict(name, entry)

    def _irregular(self, name: str) -> bool:
        """Whether ``name``'s path in this directory holds something other than a regular file (a directory, a
        FIFO): that file's state, said, not every command's error (found by attacking: it stopped inspect for
        the whole directory)."""
        path = self.directory / name
        return self._archive is None and os.path.exists(path) and not path.is_file()

    def irregular(self) -> List[str]:
        """The recorded artefacts whose path holds no regular file (``_irregular``): neither present nor lacking,
        each ``damaged`` with its reason, which inspect lists and bundle refuses (review: bundle dropped one
        without a word)."""
        return [n for n in self.entries if self._irregular(n)]

    def _parent_problem(self, name: str, entry: Mapping[str, Any], visiting: Set[str]) -> Optional[str]:
        parent = entry.get("parent")
        if not parent:
            return None if name == WEIGHTS else f"{name} records no parent in {MANIFEST}: its origin is unknown"
        recorded = self.entry(parent)
        if recorded is None:
            return f"{name} is stale: its parent {parent} is not recorded in {MANIFEST}"
        if recorded["sha256"] != entry.get("parent_sha256"):
            return f"{name} is stale: its parent {parent} changed since {name} was made"
        try:
            gone = self.read(parent) is None
        except DataError as e:
            if not self._irregular(parent):
                raise
            return f"{name} is stale: its parent {parent} cannot be read ({e})"
        if gone:
            if parent == WEIGHTS:  # a bundle leaves the weights behind; their record is the chain's root
                return None
            return f"{name} is stale: its parent {parent} is missing"
        ancestor = self._decide(parent, visiting)
        if not ancestor.current:
            return f"{name} is stale: {ancestor.reason}"
        return None

    def _contradiction(self, name: str, data: bytes, entry: Mapping[str, Any]) -> Optional[str]:
        """How a graph or an engine disagrees with model.json, or None (model.json: BadInput if it is not one)."""
        if name == MODEL_JSON:
            self.info  # noqa: B018  # parsed and checked against its schema, or BadInput
            return None
        if name.endswith(".onnx"):
            graph = self.graph(name, data)
            return _io_mismatch(self.info, {v.name: (v.dtype, v.dims) for v in graph.inputs},
                                {v.name: (v.dtype, v.dims) for v in graph.outputs}, graph.metadata.get("labels"),
                                spec=self._spec_of(name), train_lengths=graph.metadata.get("train_lengths"))
        if is_engine(name):
            spec = entry.get("io_spec")
            if spec is None:
                return "its manifest entry records no io_spec (rebuild it)"
            return _io_mismatch(self.info, {t["name"]: (t["dtype"], tuple(t["dims"])) for t in spec["inputs"]},
                                {t["name"]: (t["dtype"], tuple(t["dims"])) for t in spec["outputs"]}, None,
                                lengths=("int64", "int32"), spec=self._spec_of(name))
        return None

    def is_stream(self, name: str) -> bool:
        """Whether ``name`` is a stream graph, or an engine built from one (its manifest entry's parent)."""
        if name in STREAM_FILES.values():
            return True
        return is_engine(name) and (self.entry(name) or {}).get("parent") in STREAM_FILES.values()

    def _spec_of(self, name: str) -> IOSpec:
        """The I/O spec ``model.json`` gives the graph or engine ``name``: the stream graph's, or the model's."""
        if self.is_stream(name):
            from ..streaming import stream_spec

            return stream_spec(self.info)
        return self.info.spec

    def graph(self, name: str, data: Optional[bytes] = None) -> Graph:
        """An ONNX artefact's parsed graph (once); BadInput when it is not ONNX or keeps external data."""
        if name not in self._graphs:
            data = self.read(name) if data is None else data
            assert data is not None
            graph = parse_graph(data, name)
            refuse_external_data(graph, name)
            self._graphs[name] = graph
        return self._graphs[name]

    def _verdict(self, name: str, entry: Mapping[str, Any]) -> Trust:
        verified = entry.get("verified")
        if isinstance(verified, dict) and verified.get("passed") is True:
            if verified.get("sha256") == self._sha[name]:
                moved = self._settings_moved(name, entry, verified.get("settings"))
                if moved:
                    return Trust(name, "current", verdict=f"passed verify under settings {MODEL_JSON} no longer "
                                                          f"has ({moved})")
                return Trust(name, "current", verified=True, verdict="passed verify")
            return Trust(name, "current", verdict="is not the file attn-export verify passed (its sha256 differs "
                                                  "from the verdict's)")
        if isinstance(verified, dict) and "passed" in verified:
            return Trust(name, "current", verified=False, verdict="failed verification (see verify.json)")
        precision = PRECISIONS.get(str(_precision_of(name, entry)))
        if precision is not None and precision.judged_by == "decisions" and not self.has_classes():
            # said as what it is (found by attacking: "never been verified" sent a user to verify it again)
            return Trust(name, "current", verdict=NEVER_JUDGED)
        return Trust(name, "current")

    def _settings_moved(self, name: str, entry: Mapping[str, Any], recorded: Any) -> Optional[str]:
        """The recipe settings a verdict was judged under (``recorded``) that ``model.json`` now says otherwise,
        "key was -> is"; None when none did, or the verdict records none (an older verify's)."""
        precision = _precision_of(name, entry)
        if not isinstance(recorded, dict) or precision is None:
            return None
        try:
            now = self.info.judged_under(precision)
        except (BadInput, DataError, MissingPrerequisite):  # model.json has its own reason elsewhere
            return None
        moved = [f"{key} {recorded.get(key)} -> {value}" for key, value in now.items() if recorded.get(key) != value]
        return ", ".join(moved) or None

    def has_classes(self) -> bool:
        """Whether the model has classes to decide (``model.json``'s labels); True where model.json cannot be
        read, which has its own reason elsewhere, so that nothing is left unsaid for a classifier."""
        try:
            return bool(self.info.labels)
        except (BadInput, DataError, MissingPrerequisite):
            return True

    # ---- results: verify.json and bench.json speak only of the bytes they measured

    def recorded_from(self, result: str = VERIFY_JSON, names: Optional[Iterable[str]] = None) -> bool:
        """Whether the verdict of a current file (one of ``names``, else any) was recorded from ``result`` as
        it is now (not another directory's copy, not a result since superseded, not only the verdicts of
        files gone stale since)."""
        sha = self.sha256(result)
        if sha is None:
            return False
        candidates = self.entries if names is None else [n for n in names if n in self.entries]
        return any(isinstance(self.entries[n].get("verified"), dict)
                   and self.entries[n]["verified"].get("verify_sha256") == sha and self.state(n).current
                   for n in candidates)

    def measured(self, name: Optional[str], sha256: Optional[str]) -> Optional[str]:
        """Why a result row about ``name``, measured on bytes ``sha256``, no longer describes ``name``; None
        when it still does."""
        if not name:
            return None
        trust = self.state(name)
        if not trust.current:
            return str(trust.reason)
        if sha256 is not None and self.sha256(name) != sha256:
            return f"{name} is not the file this result measured"
        return None

    def judged(self, name: str, result: str = VERIFY_JSON) -> Optional[str]:
        """Why ``name``'s verdict is not one recorded from ``result`` for the bytes here; None when it is."""
        trust = self.state(name)
        if trust.state == "missing":
            return f"{name} is gone since this verification"
        if not trust.current:
            return str(trust.reason)
        verdict = (self.entry(name) or {}).get("verified")
        if not isinstance(verdict, dict) or verdict.get("verify_sha256") != self.sha256(result):
            return f"{name} was recorded again since this verification (no verdict from this {result})"
        if verdict.get("sha256") != self.sha256(name):
            return f"{name} is not the file this verification checked"
        if verdict.get("passed") is True and trust.verified is not True:  # a pass that no longer stands (review:
            return f"{name} {trust.verdict}"  # the report said PASSED under settings model.json no longer has)
        return None

    # ---- opening for a purpose

    def open(self, name: str, need: str = "current", allow_unverified: bool = False,
             allow_host_code: Optional[bool] = None, here: Optional[Here] = None) -> Artifact:
        """``name`` checked for ``need`` (``current``: unchanged, every ancestor current, agrees with
        model.json; ``verified``: also passed by verify, these bytes) and returned with its bytes; else one
        error naming the file and the reason: MissingPrerequisite (no such file), Untrusted (exit 2), or
        NotAvailable (exit 3: an engine built for another GPU or TensorRT than ``here``, this machine by
        default, or no GPU and TensorRT to tell). ``allow_host_code``: load an engine that embeds host code
        (default: ``ATTN_EXPORT_ALLOW_ENGINE_HOST_CODE=1``)."""
        if need not in NEEDS:
            raise ValueError(f"need={need!r}; expected one of {NEEDS}")
        trust = self.state(name)
        path = self.directory / name
        # no model at all: said, not "export" (a missing file) or the root's fix twice, two ways (a stale one:
        # found by attacking)
        if name != MODEL_JSON and self.read(MODEL_JSON) is None:
            raise self._missing(MODEL_JSON)
        if trust.state == "missing":
            if self.in_bundle():
                raise self._missing(name)
            raise MissingPrerequisite(str(trust.reason))
        if not trust.current:
            raise Untrusted(f"{_at(path, name, trust.reason)}; {self._fix(name, trust)}")
        entry = dict(self.entry(name) or {})
        notes: List[str] = []
        if name == WEIGHTS:  # the weights mean a model only with the model.json made from them
            self.model()
        if is_engine(name):
            self._engine_here(name, entry, allow_host_code, here)
        if need == "verified" and trust.verified is not True:
            if trust.verified is False:
                raise Untrusted(f"{path} failed verification (see verify.json); fix it and verify it again "
                                f"{self.how_to_verify(name)} until it passes")
            precision = PRECISIONS.get(str(_precision_of(name, entry)))
            if not allow_unverified and precision and precision.judged_by == "decisions" and not self.info.labels:
                raise Untrusted(f"{path} {NEVER_JUDGED}; expected fp32 or fp16, or load it with "
                                "allow_unverified=True / --allow-unverified")
            if not allow_unverified:
                raise Untrusted(f"{path} {trust.verdict}; verify it {self.how_to_verify(name)}; or load it with "
                                "allow_unverified=True / --allow-unverified")
            notes.append(f"{name} {trust.verdict} (loaded with allow_unverified)")
        if self.read(WEIGHTS) is None and name != WEIGHTS:
            notes.append(f"{WEIGHTS} is not here (a bundle leaves it out): the lineage was checked against its "
                         f"record in {MANIFEST}")
        return self._artifact(name, entry, tuple(notes))

    def remake(self, name: str) -> Optional[str]:
        """What would make ``name`` current again (``re-run attn-export export``, ...), None when it is."""
        trust = self.state(name)
        return None if trust.current else self._fix(name, trust)

    def _fix(self, name: str, trust: Trust) -> str:
        """What would make ``name`` usable again: remake the oldest stale ancestor, then each file after it; or
        wait, where another process is writing into the directory now (``being_written``)."""
        writer = None if self.packed else being_written(self.directory)
        # only a command that replaces recorded files (verify, bench and report write their own results)
        if writer is not None and writer.partition("attn-export ")[2] in REPLACES_FILES:
            return f"{self.directory} is being written now ({writer}): try again when that ends"
        if trust.state == "contradicts":
            return (f"expected the {MODEL_JSON} it was made with: re-run "
                    f"{made_by(name, self.hinted(), 'the command that made it')}")
        if trust.state == "unrecorded" and self.read(MANIFEST) is None and self.in_bundle():
            # the bundle's own manifest deleted: nothing to remake on the host (found by attacking)
            return f"expected the bundle's {MANIFEST}, which is not here: unpack the bundle's .tar.gz again"
        damaged = self.damaged_since_unpacked([name, MODEL_JSON, *self._ancestors(name)])
        if damaged is not None:  # changed on the device: "re-run export on the host" remade nothing (attacking)
            return (f"expected {damaged} as the bundle shipped it ({BUNDLE_JSON} lists other bytes, or none here): "
                    "unpack the bundle's .tar.gz again")
        chain = [name]
        while trust.state == "stale":
            parent = (self.entry(chain[-1]) or {}).get("parent")
            if not parent or parent in chain or self.entry(parent) is None or (
                    parent == WEIGHTS and self.read(parent) is None):
                break
            trust = self.state(parent)
            if trust.current:
                break
            # a parent gone is remade first (found by attacking: "re-run quantize --fp16" with model.onnx deleted,
            # which quantize refuses), and the weights, which a bundle leaves behind, are not gone
            chain.append(parent)
        if name != MODEL_JSON and not self.state(MODEL_JSON).current:  # the root of every chain: remade first
            chain.append(MODEL_JSON)
        cannot = next((why for n in chain if (why := self._cannot_stream(n))), None)
        if cannot:  # export --stream would refuse (found by attacking)
            remove = f"the model cannot stream now ({cannot}): "
            if self.state(name).state != "stale":  # changed by hand, unrecorded: export removes only stale ones
                return remove + f"remove {self.directory / name} (and the other stream graphs) by hand"
            return remove + (f"on the host, {made_by(ONNX_FP32)} removes the stream graphs; bundle again"
                             if self.in_bundle() else
                             f"re-run {made_by(ONNX_FP32, self.hinted())}, which removes the stream graphs")
        calibrated = [n for n in chain if n in (ONNX_FILES["int8-qdq"], STREAM_FILES["int8-qdq"])]
        if calibrated and not self.in_bundle() and self._without_data():  # quantize would refuse (found by attacking)
            return (f"remove {', '.join(str(self.directory / n) for n in calibrated)}: Q/DQ calibration draws on the "
                    "training data, and this model was loaded without a recipe's [data] (attn-export load "
                    "CHECKPOINT DIR --recipe R, with R's [data], makes one that can)")
        if self.in_bundle() and any(not is_engine(n) for n in chain):  # the device has no attn-export to re-run
            return ("on the host, re-run " + ", then ".join(dict.fromkeys(
                made_by(n, None, "the command that made it") for n in reversed(chain) if not is_engine(n)))
                + ", and bundle again")
        # an engine's step runs as printed: its directory, its precision's flag, the package a bundle ships (review)
        return "re-run " + ", then ".join(dict.fromkeys(
            names.build_command(self.directory, build_flag((self.entry(n) or {}).get("precision"))) if is_engine(n)
            else made_by(n, self.hinted(), "the command that made it") for n in reversed(chain)))

    def _ancestors(self, name: str) -> List[str]:
        """The files ``name`` was made from, by its manifest's parents, nearest first."""
        chain: List[str] = []
        parent = (self.entry(name) or {}).get("parent")
        while isinstance(parent, str) and parent not in chain and parent != name:
            chain.append(parent)
            parent = (self.entry(parent) or {}).get("parent")
        return chain

    def _artifact(self, name: str, entry: Dict[str, Any], notes: Tuple[str, ...]) -> Artifact:
        data = self.read(name)
        assert data is not None
        info = self.info if self.read(MODEL_JSON) is not None else None
        if name.endswith(".onnx"):
            assert info is not None
            return Artifact(self.directory, name, data, self._sha[name], "onnx", _precision_of(name, entry) or "fp32",
                            self._spec_of(name), info, entry, self.graph(name, data), notes)
        if is_engine(name):
            assert info is not None
            return Artifact(self.directory, name, data, self._sha[name], "engine", entry.get("precision"),
                            IOSpec.from_dict(entry["io_spec"]), info, entry, None, notes)
        spec = info.spec if info is not None else IOSpec.for_model(1, 1)
        kind = "torch" if name == WEIGHTS else "file"
        return Artifact(self.directory, name, data, self._sha[name], kind, "fp32" if kind == "torch" else None, spec,
                        info, entry, None, notes)

    def _engine_here(self, name: str, entry: Mapping[str, Any], allow_host_code: Optional[bool],
                     here: Optional[Here]) -> None:
        """An engine runs only where it was built for, and embedded host code only on the user's word."""
        allowed = os.environ.get(HOST_CODE_ENV) == "1" if allow_host_code is None else allow_host_code
        if entry.get("host_code") and not allowed:
            raise Untrusted(f"{self.directory / name} embeds host code (a version-compatible engine with its lean "
                            "runtime), which would run in this process; load it only if you trust its origin: set "
                            f"{HOST_CODE_ENV}=1 (or pass allow_host_code=True)")
        problems = foreign_problems(entry, here if here is not None else this_machine())
        if problems:
            rebuild = names.build_command(self.directory, build_flag(entry.get("precision")))
            raise NotAvailable(f"{self.directory / name} is a foreign engine: {'; '.join(problems)}; build the engine "
                               f"on this device ({rebuild})")


def _at(path: Path, name: str, reason: Optional[str]) -> str:
    """The reason, its leading file name made the whole path (``DIR/model.fp16.onnx is stale: ...``)."""
    text = str(reason)
    return f"{path} {text[len(name) + 1:]}" if text.startswith(name + " ") else f"{path}: {text}"


def _io_mismatch(info: ModelInfo, inputs: Mapping[str, Tuple[str, Tuple[Any, ...]]],
                 outputs: Mapping[str, Tuple[str, Tuple[Any, ...]]], labels: Optional[str],
                 lengths: Tuple[str, ...] = ("int64",), spec: Optional[IOSpec] = None,
                 train_lengths: Optional[str] = None) -> Optional[str]:
    """The first way a graph's (or engine's) inputs and outputs disagree with model.json's I/O spec (or the
    ``spec`` it gives that graph: the stream graph's), by name; or its metadata's labels or training lengths
    (which set the range verify judges a reduced precision within) with model.json's."""
    spec = info.spec if spec is None else spec
    want_in, want_out = [t.name for t in spec.inputs], list(spec.output_names)
    if sorted(inputs) != sorted(want_in):
        return f"it takes inputs {sorted(inputs)}, {MODEL_JSON} describes {sorted(want_in)}"
    if sorted(outputs) != sorted(want_out):
        return (f"it gives outputs {sorted(outputs)}, {MODEL_JSON} describes {sorted(want_out)} (head "
                f"{info.head})")
    for t in spec.inputs + spec.outputs:
        dtype, dims = (inputs if t.name in inputs else outputs)[t.name]
        if len(dims) != len(t.dims):
            return f"its {t.name} has rank {len(dims)}, {MODEL_JSON} describes rank {len(t.dims)} {list(t.dims)}"
        accepted = lengths if t.name == "lengths" else (_ONNX_TYPES.get(t.name, t.dtype),)
        if dtype not in accepted:
            return f"its {t.name} is {dtype}, expected {' or '.join(accepted)}"
        for axis, (have, want) in enumerate(zip(dims, t.dims)):
            if isinstance(want, int) and have != want:
                what = "features per step" if t.name == "x" else "outputs"
                return (f"its {t.name} has {have if isinstance(have, int) else repr(have)} {what} (axis {axis}), "
                        f"{MODEL_JSON} describes {want}")
    if labels is not None and info.head in CLASSIFIERS:
        try:
            graph_labels = json.loads(labels)
        except ValueError:
            return "its metadata 'labels' is not a JSON list"
        if graph_labels != list(info.labels):
            return f"its labels are {_short(graph_labels)}, {MODEL_JSON} has {_short(list(info.labels))}"
    if train_lengths is not None:  # found by attacking: model.json's edited to 1 step made verify judge FP16 by
        try:                       # its stress rules alone, and a graph that failed passed, the range unsaid
            graph_lengths = json.loads(train_lengths)
        except ValueError:
            return "its metadata 'train_lengths' is not JSON"
        if graph_lengths != info.train_lengths:
            return (f"its training lengths are {_short(graph_lengths)}, {MODEL_JSON} has "
                    f"{_short(info.train_lengths)} (they set the range verify judges within)")
    return None


def _short(values: Any) -> str:
    text = json.dumps(values)
    return text if len(text) <= 60 else text[:57] + "..."
