"""JSON artefacts that are edited, damaged or hostile: a wrong shape, a nesting that would overflow the
parser, a bundle listing that names files outside the archive, and an ONNX input that is not a tensor.
Each is one ``Error:`` line naming the file and the key, exit 2, never a traceback (DESIGN: exit codes).
The shapes are declared once, in ``attn_export.runtime.schema``; these tests go through real files in a real
artefact directory and, where a user meets them, through the command line."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any, Callable

import pytest

from attn_export.errors import DataError
from attn_export.runtime import store, schema
from attn_export.runtime.bundle import BUNDLE_JSON, pack, unpack

from conftest import cli

Edit = Callable[[Any], Any]  # the parsed file -> what to write instead (or the text itself)


def _one_error_line(result: Any, code: int = 2) -> str:
    shown = f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), shown
    assert result.returncode == code, shown
    return lines[0]


def _edit(path: Path, edit: Edit) -> None:
    """Rewrite the JSON file ``path`` with ``edit`` applied (a str result is written as it is)."""
    new = edit(json.loads(path.read_text()))
    path.write_text(new if isinstance(new, str) else json.dumps(new))


def _set(*at: Any, value: Any = None, delete: bool = False) -> Edit:
    def edit(doc: Any) -> Any:
        node = doc
        for key in at[:-1]:
            node = node[key]
        if delete:
            del node[at[-1]]
        else:
            node[at[-1]] = value
        return doc

    return edit


VERIFY_MINIMAL = {"passed": True, "reference": {"backend": "torch-cpu", "precision": "fp32", "source": "model.safetensors"},
                  "sweep": {"cases": 0, "padded": 0, "shapes": []}, "results": []}
BENCH_MINIMAL = {"machine": {"threads": 1}, "method": {"timing": "wall clock", "seconds_per_shape": 0.1},
                 "scaling": {}, "ratios": {"reference": "ort-cpu model.onnx", "by_shape": {}}}

# (file, edit, command, the message's tail after "<DIR>/<file>")
CLI_ROWS = {
    "model-json-is-a-list": ("model.json", lambda d: [], "inspect",
                             ": the top level is []; expected an object"),
    "model-json-without-recipe": ("model.json", _set("recipe", delete=True), "inspect",
                                  ": recipe is missing; expected an object"),
    "model-json-input-size-string": ("model.json", _set("input_size", value="4"), "inspect",
                                     ': input_size is "4"; expected a positive integer'),
    "model-json-labels-short": ("model.json", _set("labels", value=["a", "b"]), "inspect",
                                ': labels is ["a", "b"]; expected 3 labels (strings), one per output (num_outputs 3)'),
    "model-json-labels-empty": ("model.json", _set("labels", value=[]), "inspect",
                                ": labels is []; expected 3 labels (strings), one per output (num_outputs 3)"),
    "metrics-json-is-a-list": ("metrics.json", lambda d: [1], "inspect", ": the top level is [1]; expected an object"),
    "manifest-entry-a-string": ("manifest.json", _set("artifacts", "model.onnx", value="x"), "inspect",
                                ": artifacts['model.onnx'] is \"x\"; expected an object"),
    "manifest-parent-a-number": ("manifest.json", _set("artifacts", "model.onnx", "parent", value=5), "inspect",
                                 ": artifacts['model.onnx'].parent is 5; expected a file name (string)"),
    "manifest-parent-outside": ("manifest.json", _set("artifacts", "model.onnx", "parent", value="/etc/passwd"),
                                "inspect", ": artifacts['model.onnx'].parent is \"/etc/passwd\"; expected a file name (string)"),
    "manifest-nested-100000": ("manifest.json", lambda d: "[" * 100_000, "inspect",
                               " nests deeper than 64 levels; expected an attn-export JSON file"),
    "verify-json-result-a-number": ("verify.json", lambda d: {**VERIFY_MINIMAL, "results": [5]}, "report",
                                    ": results[0] is 5; expected an object"),
    "bench-json-machine-a-list": ("bench.json", lambda d: {**BENCH_MINIMAL, "machine": []}, "report",
                                  ": machine is []; expected an object"),
}


@pytest.mark.parametrize("name", list(CLI_ROWS))
def test_a_json_artefact_of_the_wrong_shape_is_one_line(name: str, tiny_dir: Path, tmp_path: Path) -> None:
    file, edit, command, tail = CLI_ROWS[name]
    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    path = directory / file
    if not path.exists():
        path.write_text("{}")
    _edit(path, edit)
    line = _one_error_line(cli(command, str(directory)))
    assert line == f"Error: {path}{tail}"


def test_a_deeply_nested_file_is_refused_before_parsing(tmp_path: Path) -> None:
    for text in ("[" * 100_000, '{"a": ' * 65 + "1" + "}" * 65, '[{"a": [' * 30):
        path = tmp_path / "manifest.json"
        path.write_text(text)
        with pytest.raises(DataError, match=r"nests deeper than 64 levels; expected an attn-export JSON file"):
            store.read_json(path)
    # brackets inside strings are not nesting, and 64 levels are read
    path.write_text(json.dumps({"a": "[" * 1000 + '\\"{' * 100, "b": [[[1]]]}))
    assert store.read_json(path)["b"] == [[[1]]]
    path.write_text("[" * 64 + "]" * 64)
    value = store.read_json(path)
    for _ in range(63):
        value = value[0]
    assert value == []


def test_json_errors_name_file_and_key_in_process(tiny_dir: Path, tmp_path: Path) -> None:
    """The readers themselves (what the device runs): the store's model.json and manifest, read_manifest,
    and read_json with a kind."""
    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    model, manifest = directory / "model.json", directory / "manifest.json"
    original = model.read_text()
    cases: list[tuple[Path, Edit, Callable[[], Any], str]] = [
        (model, _set("format", value=2), lambda: store.Store(directory).info,
         "format is 2; expected 1 (the model.json format this attn-export reads)"),
        (model, _set("recipe", "model", "head", value="ranking"), lambda: store.Store(directory).info,
         'recipe.model.head is "ranking"; expected one of classification, binary, regression, none'),
        (model, _set("normalization", "mean", value=[0.0]), lambda: store.Store(directory).info,
         "normalization.mean is [0.0]; expected 4 finite numbers, one per input feature (input_size 4)"),
        (model, _set("train_lengths", value={"min": 9, "median": 3, "max": 4}), lambda: store.Store(directory).info,
         'train_lengths is {"min": 9, "median": 3, "max": 4}; expected min <= median <= max'),
        (model, _set("recipe", "verify", "fp16_atol", value="big"), lambda: store.Store(directory).info,
         "the recorded recipe: verify.fp16_atol"),
    ]
    for path, edit, read, message in cases:
        model.write_text(original)
        _edit(path, edit)
        with pytest.raises(DataError) as caught:
            read()
        assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)
    model.write_text(original)
    regression = json.loads(original)
    regression["recipe"]["model"]["head"] = "regression"
    model.write_text(json.dumps(regression))
    with pytest.raises(DataError, match=r"labels is \[\"0\", \"1\", \"2\"\]; expected \[\] \(only a classifier has labels\)"):
        store.Store(directory).info  # noqa: B018
    model.write_text(original)

    _edit(manifest, _set("artifacts", "../model.onnx", value={"sha256": "0"}))
    with pytest.raises(DataError, match=r"manifest.json: artifacts has the key \"../model.onnx\"; expected every key "
                                        r"to be a file name \(string\)"):
        store.Store(directory)
    _edit(manifest, _set("artifacts", "../model.onnx", delete=True))
    _edit(manifest, _set("artifacts", "model.onnx", "sha256", delete=True))
    with pytest.raises(DataError, match=r"artifacts\['model.onnx'\].sha256 is missing; expected a sha256"):
        store.read_manifest(directory)

    for kind, doc, message in [
        (schema.METRICS, {"test": {"accuracy": "high"}}, 'test.accuracy is "high"; expected a number'),
        (schema.VERIFY, {**VERIFY_MINIMAL, "tolerances": {"fp32": {"atol": 1e-5, "min_argmax_agreement": None,
                                                                   "max_accuracy_drop": None}}},
         "tolerances.fp32 is {\"atol\": 1e-05, "),
        (schema.VERIFY, {**VERIFY_MINIMAL, "conformance": [{"runtime": "ort"}]},
         "conformance[0].artifact is missing; expected a string"),
        (schema.VERIFY, {**VERIFY_MINIMAL, "attention_samples": {"indices": [0], "lengths": [3], "labels": [1],
                                                                 "by_target": {"ort-cpu": [[0.5, 0.5]]}}},
         "attention_samples is {"),
        (schema.BENCH, {**BENCH_MINIMAL, "scaling": {"t": {"throughput_by_batch": {"1": "fast"}}}},
         "scaling.t.throughput_by_batch['1'] is \"fast\"; expected a finite number"),
        # a hand-edited time (found by attacking: "-1.00 ms" in the report)
        (schema.BENCH, {**BENCH_MINIMAL, "batches": [1], "seqs": [8],
                        "results": [{"backend": "ort-cpu", "batch": 1, "seq": 8, "latency_ms": {"p50": -1}}]},
         "results[0].latency_ms.p50 is -1; expected a positive finite number of milliseconds"),
        (schema.QUANTIZE, [], "the top level is []; expected an object"),
        (schema.BUNDLE, {"schema": 1, "for": "cpu", "files": {"a": {"sha256": 5}}}, "files.a.sha256 is 5; expected a sha256 (string)"),
    ]:
        path = tmp_path / "some.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(DataError) as caught:
            store.read_json(path, kind)
        assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)


def test_a_value_that_cannot_be_shown_whole_is_cut_to_one_short_line(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "x\n" * 1000}))
    with pytest.raises(DataError) as caught:
        store.read_json(path, schema.MODEL)
    message = str(caught.value)
    assert "\n" not in message and len(message) < len(str(path)) + 160 and '"x\\nx\\n' in message


# --------------------------------------------------------------------------------------------------
# bundle.json: only the archive's own files


@pytest.fixture(scope="module")
def bundle(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle of the tiny model, packed once."""
    work = tmp_path_factory.mktemp("bundle")
    shutil.copytree(tiny_dir, work / "model")
    return pack(work / "model", work / "model.tar.gz").path


def _relisted(archive: Path, out: Path, edit: Callable[[dict], None]) -> Path:
    """``archive`` packed again with its bundle.json changed by ``edit``."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(out, "w:gz") as tar:
        for member, data in members:
            if member.name == BUNDLE_JSON:
                listing = json.loads(data)
                edit(listing)
                data = json.dumps(listing).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return out


def _listing_edits(secret: Path) -> dict[str, tuple[Callable[[dict], None], str]]:
    digest = {"sha256": hashlib.sha256(secret.read_bytes()).hexdigest(), "size": secret.stat().st_size}
    relative = dict(digest)
    outside = "expected every key to be a relative path inside the bundle (no leading /, no '..')"
    as_written = "expected the bundle as attn-export bundle wrote it"
    return {
        "absolute": (lambda b: b["files"].update({str(secret): digest}),
                     f"{BUNDLE_JSON}: files has the key \"{secret}\"; {outside}"),
        "climbs-out": (lambda b: b["files"].update({"../secret.txt": relative}),
                       f"{BUNDLE_JSON}: files has the key \"../secret.txt\"; {outside}"),
        "a-directory": (lambda b: b["files"].update({"runtime": relative}),  # no member of that name: only its files
                        f"runtime is missing, though {BUNDLE_JSON} lists it (nothing was extracted); {as_written}"),
        "absent": (lambda b: b["files"].update({"extra.onnx": relative}),  # found by a user: it said "not a regular file"
                   f"extra.onnx is missing, though {BUNDLE_JSON} lists it (nothing was extracted); {as_written}"),
        "entry-a-string": (lambda b: b["files"].update({"model.onnx": "deadbeef"}),
                           f"{BUNDLE_JSON}: files['model.onnx'] is \"deadbeef\"; expected an object"),
        "files-a-list": (lambda b: b.update({"files": ["model.onnx"]}),
                         f"{BUNDLE_JSON}: files is [\"model.onnx\"]; expected an object"),
    }


@pytest.mark.parametrize("case", ["absolute", "climbs-out", "a-directory", "absent", "entry-a-string", "files-a-list"])
def test_unbundle_hashes_only_the_archives_own_files(case: str, bundle: Path, tmp_path: Path) -> None:
    """bundle.json names only the archive's own files: an entry naming a file outside it (absolute, ``..``)
    would have unbundle hash any file the user can read and answer whether it holds given bytes; such a
    listing is refused before anything is extracted, and nothing is left behind."""
    secret = tmp_path / "secret.txt"  # beside the target, where '..' from the staging directory leads
    secret.write_text("the user's own file\n")
    edit, message = _listing_edits(secret)[case]
    archive = _relisted(bundle, tmp_path / "hostile.tar.gz", edit)
    target = tmp_path / "unpacked"
    line = _one_error_line(cli("unbundle", str(archive), str(target)))
    assert line == f"Error: {archive}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.tar.gz", "secret.txt"]


def test_an_intact_listing_still_unpacks(bundle: Path, tmp_path: Path) -> None:
    target = unpack(bundle, tmp_path / "ok")
    assert (target / "model.onnx").is_file() and (target / "runtime" / "attn_export" / "errors.py").is_file()


# --------------------------------------------------------------------------------------------------
# inspect of an ONNX file whose input is not a tensor


def test_inspect_describes_graph_io_that_is_not_a_tensor(tmp_path: Path) -> None:
    """inspect describes such a file (exit 0) and says what each odd input or output is, as ``--target`` reads
    it; it refused the whole file before (found by attacking)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, None)
    n = helper.make_tensor_value_info("n", TensorProto.INT64, [])
    odd = helper.make_tensor_value_info("odd", TensorProto.INT64, [2])
    odd.type.tensor_type.elem_type = 99  # a type no onnx names
    graph = helper.make_graph([helper.make_node("SequenceLength", ["x"], ["n"]),
                               helper.make_node("Constant", [], ["odd"], value_ints=[1, 2])], "g", [x], [n, odd])
    path = tmp_path / "sequence.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = cli("inspect", str(path))
    assert result.returncode == 0, result.stderr
    assert "  PROBLEM: graph input 'x' is a sequence, not a tensor; attn-export's commands and TensorRT take " \
           "tensors of the types onnx names" in result.stdout.splitlines()
    assert "  PROBLEM: graph output 'odd' has element type 99, which onnx" in result.stdout
    assert "  PROBLEM: graph output 'n'" not in result.stdout
    described = json.loads(cli("inspect", str(path), "--json").stdout)
    assert described["inputs"] == [{"name": "x", "dtype": "sequence", "dims": [], "problem": "is a sequence, not a "
                                    "tensor"}]
    assert [o.get("problem", "")[:26] for o in described["outputs"]] == ["", "has element type 99, which"]


def _strict(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_every_json_attn_export_writes_is_strict_even_with_a_ratio_to_a_budget_of_zero(tiny_dir: Path,
                                                                                        tmp_path: Path) -> None:
    """Found by attacking: with every tolerance 0 a row's ratio to its budget is infinite, and verify.json and
    ``verify --json`` held bare ``Infinity``, which strict parsers (JavaScript's) refuse. A non-finite number is
    written as null, in the files and on stdout."""
    assert _strict(store.json_text({"a": float("inf"), "b": [float("nan"), 1.5, (2, float("-inf"))]})) == {
        "a": None, "b": [None, 1.5, [2, None]]}
    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    zero = [a for key in ("budget_multiple", "fp32_atol", "fp32_rtol", "attention_atol_fp32")
            for a in ("--set", f"verify.{key}=0")]
    result = cli("verify", str(directory), "--backends", "ort-cpu", "--json", *zero)
    assert result.returncode == 1, result.stderr  # nothing passes a budget of 0
    on_stdout = _strict(result.stdout)
    written = _strict((directory / "verify.json").read_text())
    assert on_stdout == written and "Infinity" not in result.stdout
    ratios = [r["budget"]["worst_ratio"] for r in written["results"] if r.get("budget")]
    assert None in ratios, ratios  # the infinite one, as null
    assert cli("report", str(directory)).returncode == 0  # and read back
