"""A verify run on some backends adds to the standing verification (``runtime.verify.carry``), through the
real CLI on real artefact directories (ONNX Runtime, OpenVINO, tract).

Found by running the README's commands as a user would: ``verify DIR`` then ``verify DIR --backends
openvino-bf16`` left a verify.json of the bf16 row alone, the report said verification was NOT CURRENT and
``bundle --for cpu`` left verify.json out. Earlier rows are carried only when the store says they still
describe the directory (same bytes, a verdict recorded from that file) and the reference and the settings
that decide pass or fail are this run's; anything else is dropped, and said so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import onnx
import pytest

from attn_export.backends import REGISTRY
from attn_export.runtime import store

from conftest import ROOT, cli, rerecord

FILES = ("model.safetensors", "model.onnx", "model.fp16.onnx", "model.int8.onnx")


@pytest.fixture(scope="module")
def verified_once(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with FP16 and dynamic INT8 variants, verified once on every backend (``auto``)."""
    directory = tmp_path_factory.mktemp("carry") / "d"
    shutil.copytree(tiny_dir, directory)
    for args in (("quantize", str(directory), "--fp16", "--int8"), ("verify", str(directory))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


def copy(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "d"
    shutil.copytree(directory, target)
    return target


def document(directory: Path) -> dict:
    return json.loads((directory / store.VERIFY_JSON).read_text())


def rows(doc: dict, ran_only: bool = True) -> dict[tuple[str, str | None], dict]:
    return {(r["backend"], r["artifact"]): r for r in doc["results"] if not ran_only or r["status"] != "skipped"}


def verdicts(directory: Path) -> dict[str, dict]:
    entries = store.read_manifest(directory)["artifacts"]
    return {name: entries[name].get("verified") for name in FILES}


def tract_off(directory: Path, *args: str) -> str:
    """A verify of ``directory`` with ``args`` in a process where tract computes logits 0.5 off (in that
    process only): the code to run with ``python -c``."""
    return ("import sys\n"
            "from attn_export.runtime.backends.tract_cpu import TractCpuBackend\n"
            "run = TractCpuBackend._run\n"
            "def off(self, feeds):\n"
            "    out = dict(run(self, feeds))\n"
            "    out['logits'] = out['logits'] + 0.5\n"
            "    return out\n"
            "TractCpuBackend._run = off\n"
            "from attn_export.cli import main\n"
            f"sys.exit(main(['verify', {str(directory)!r}, *{list(args)!r}]))\n")


def needs(backend: str) -> None:
    reason = REGISTRY[backend].available()
    if reason is not None:
        pytest.skip(f"needs {backend}: {reason}")


def test_a_subset_run_keeps_the_other_rows_and_the_report_and_bundle_stand_on_them(
        verified_once: Path, tmp_path: Path) -> None:
    """The README's sequence: verify, then verify --backends openvino-bf16. Every earlier row stays, marked
    carried_from the first run and unchanged otherwise; every verdict is recorded from the new verify.json;
    the report says PASSED with the carried rows marked; bundle --for cpu packs verify.json. A later full
    verify carries the bf16 row in turn (auto does not run an opt-in backend) instead of "name it"."""
    needs("openvino-bf16")
    directory = copy(verified_once, tmp_path)
    first = document(directory)
    assert first["created"] and first["reference"]["sha256"] == store.sha256_file(directory / store.REFERENCE)
    result = cli("verify", str(directory), "--backends", "openvino-bf16")
    assert result.returncode == 0, result.stderr
    assert "carried (not re-run now; same bytes, reference and settings) from the verify of " \
           f"{first['created']}" in " ".join(result.stderr.split())
    second = document(directory)
    before, after = rows(first), rows(second)
    assert set(after) == set(before) | {("openvino-bf16", "model.onnx")}
    for pair, row in before.items():  # carried whole: the row the first run wrote, marked
        assert after[pair] == {**row, "carried_from": first["created"]}, pair
    bf16 = after[("openvino-bf16", "model.onnx")]
    assert bf16["status"] == "passed" and bf16["carried_from"] is None
    assert ("openvino-bf16", None) not in rows(second, ran_only=False)  # no "opt-in: name it" beside its result
    assert second["passed"] is True and second["not_carried"] == []
    sha = store.sha256_file(directory / store.VERIFY_JSON)
    for name, verdict in verdicts(directory).items():
        assert verdict["passed"] is True and verdict["verify_sha256"] == sha, name
        assert verdict["carried_backends"] == verdict["backends"], name  # none of them ran now: bf16 judges no file

    report = cli("report", str(directory))
    assert report.returncode == 0, report.stderr
    text = (directory / store.REPORT_MD).read_text()
    assert "**Verification PASSED**" in text and "NOT CURRENT" not in text, text[:1500]
    assert f"{len(before)} of {len(after)} results carried over from earlier verifies" in text
    assert "| ort-cpu | model.onnx | fp32 | **passed** (carried) |" in text
    assert "| openvino-bf16 | model.onnx | bf16 | **passed** |" in text
    assert f"- from the verify of {first['created']}: torch-cpu `model.safetensors`, ort-cpu `model.onnx`" in text

    out = tmp_path / "cpu.tar.gz"
    bundled = cli("bundle", str(directory), "--for", "cpu", "--out", str(out))
    assert bundled.returncode == 0, bundled.stderr
    assert "verify.json left out" not in bundled.stderr
    with tarfile.open(out) as tar:
        assert store.VERIFY_JSON in {m.name.split("/", 1)[-1] for m in tar.getmembers()}

    again = cli("verify", str(directory), "--json")  # auto: every backend but the opt-in one runs
    assert again.returncode == 0, again.stderr
    third = json.loads(again.stdout)
    assert third == document(directory)
    kept = rows(third)[("openvino-bf16", "model.onnx")]
    assert kept == {**bf16, "carried_from": second["created"]}
    assert all(r["carried_from"] is None for pair, r in rows(third).items() if pair[0] != "openvino-bf16")
    assert [r for r in third["results"] if r["backend"] == "openvino-bf16"] == [kept]
    cell = next(c for c in third["conformance"] if c["runtime"] == "openvino-bf16")
    assert (cell["status"], cell["carried_from"]) == ("passed", second["created"])


@pytest.mark.parametrize("how", ["rewritten", "recorded-again"])
def test_a_row_of_an_artefact_changed_since_is_not_carried(verified_once: Path, tmp_path: Path, how: str) -> None:
    """model.int8.onnx rewritten (other bytes, recorded again: current, but not what the rows measured), or
    recorded again with no verdict (as quantize did before it kept the verdict of identical bytes): its
    earlier rows are dropped and named, the other files' rows carried; it gets no verdict from the new
    verify.json."""
    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    first = document(directory)
    name = "model.int8.onnx"
    entry = store.read_manifest(directory)["artifacts"][name]
    kept = {k: v for k, v in entry.items() if k not in ("sha256", "parent", "parent_sha256", "created_by",
                                                        "versions", "verified")}
    if how == "rewritten":
        proto = onnx.load(str(directory / name))
        proto.doc_string = "rewritten"
        onnx.save(proto, str(directory / name))
        said: tuple[str, ...] = (f"{name} is not the file this result measured",)
    else:
        said = (f"{name} was recorded again since this verification (no verdict from this verify.json)",)
    manifest = store.read_manifest(directory)
    del manifest["artifacts"][name]["verified"]
    store.write_json(directory / store.MANIFEST, manifest)
    rerecord(directory, name, parent=entry["parent"], command="quantize int8-dynamic", **kept)
    result = cli("verify", str(directory), "--backends", "tract-cpu")  # tract does not read model.int8.onnx
    assert result.returncode == 0, result.stderr
    doc = document(directory)
    after = rows(doc)
    dropped = {pair for pair in rows(first) if pair[1] == name}
    assert ("ort-cpu", name) in dropped and not dropped & set(after)
    order = list(rows(first))
    assert [line.split(" not carried: ")[0] for line in doc["not_carried"]] == [
        f"{b} {a}" for b, a in sorted(dropped, key=order.index)]
    for line in doc["not_carried"]:
        assert line.split(" not carried: ")[1] in said and line in " ".join(result.stderr.split())
    assert after[("ort-cpu", "model.onnx")]["carried_from"] == first["created"]
    assert after[("tract-cpu", "model.onnx")]["carried_from"] is None
    assert "verified" not in store.read_manifest(directory)["artifacts"][name]
    assert verdicts(directory)["model.onnx"]["verify_sha256"] == store.sha256_file(directory / store.VERIFY_JSON)
    assert cli("report", str(directory)).returncode == 0
    assert f"- {doc['not_carried'][0]}" in (directory / store.REPORT_MD).read_text()


def test_a_file_quantized_again_to_the_same_bytes_keeps_its_rows_and_verdict(verified_once: Path,
                                                                              tmp_path: Path) -> None:
    """quantize re-run on unchanged weights writes the same bytes: what was measured is still what is there,
    so its rows are carried into the next verify and its verdict stands."""
    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    first = document(directory)
    assert cli("quantize", str(directory), "--int8").returncode == 0
    assert verdicts(directory)["model.int8.onnx"]["passed"] is True
    assert cli("verify", str(directory), "--backends", "tract-cpu").returncode == 0
    doc = document(directory)
    assert doc["not_carried"] == []
    assert rows(doc)[("ort-cpu", "model.int8.onnx")]["carried_from"] == first["created"]
    assert verdicts(directory)["model.int8.onnx"]["passed"] is True


@pytest.mark.parametrize("how", ["tolerances", "reference"])
def test_nothing_is_carried_across_other_settings_or_another_reference(
        verified_once: Path, tmp_path: Path, how: str) -> None:
    """Rows judged with other tolerances (a --set) or against another reference (the device's verify, from
    reference.npz alone, after the host's, from the live PyTorch model) are not carried: one line says so.
    On the device the host's INT8 rows, judged on the test split that only the host has, are the exception:
    the host's verdict stands (``test_the_hosts_int8_verdict_stands_over_a_devices_pass_on_structure``)."""
    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    first = document(directory)
    if how == "tolerances":
        result = cli("verify", str(directory), "--backends", "tract-cpu", "--set", "verify.fp32_atol=2e-5")
        said = "it was judged with other settings than this run's: tolerances, --set overrides"
    else:
        result = subprocess.run([sys.executable, "-m", "attn_export.runtime", "verify", str(directory),
                                 "--backends", "tract-cpu"], capture_output=True, text=True, cwd=ROOT, timeout=600)
        said = "it was judged with other settings than this run's: reference (reference.npz, its source or the " \
               "test split), sweep, test split"
    assert result.returncode == 0, result.stderr
    doc = document(directory)
    stands = {k for k, r in rows(first).items() if how == "reference" and r["precision"].startswith("int8")
              and k[0] != "tract-cpu"}
    assert stands or how == "tolerances"
    assert set(rows(doc)) == {k for k in rows(first) if k[0] == "tract-cpu"} | stands
    assert all((r["carried_from"] is not None) == ((r["backend"], r["artifact"]) in stands) for r in doc["results"])
    earlier = list(dict.fromkeys(b for b, a in rows(first) if b != "tract-cpu" and (b, a) not in stands))
    measured = sum(1 for k in rows(first) if k[0] != "tract-cpu" and k not in stands)
    assert doc["not_carried"] == [f"{measured} earlier result(s) of {', '.join(earlier)} not carried: {said}"]
    assert doc["not_carried"][0] in " ".join(result.stderr.split())


def test_a_failing_subset_row_fails_the_verdict_and_a_later_subset_does_not_launder_it(
        verified_once: Path, tmp_path: Path) -> None:
    """tract made to compute logits 0.5 off (in the verify process only): verify --backends tract-cpu fails,
    and the files tract ran get failed verdicts although every carried row passed. A later verify of
    another backend carries tract's failed rows and still fails, saying they were carried."""
    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    first = document(directory)
    code = tract_off(directory, "--backends", "tract-cpu")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 1, result.stderr
    doc = document(directory)
    after = rows(doc)
    assert doc["passed"] is False
    assert {pair for pair, r in after.items() if r["status"] == "failed"} == {("tract-cpu", "model.onnx"),
                                                                              ("tract-cpu", "model.fp16.onnx")}
    assert all(r["carried_from"] == first["created"] for (b, _), r in after.items() if b != "tract-cpu")
    verdict = verdicts(directory)
    assert verdict["model.onnx"]["passed"] is False and verdict["model.onnx"]["failed_backends"] == ["tract-cpu"]
    assert verdict["model.fp16.onnx"]["passed"] is False
    assert verdict["model.int8.onnx"]["passed"] is True  # tract does not read it: its rows, all carried, passed
    assert "ort-cpu" in verdict["model.onnx"]["carried_backends"]

    later = cli("verify", str(directory), "--backends", "ort-cpu")
    assert later.returncode == 1, later.stderr
    said = " ".join(later.stderr.split())
    assert "tract-cpu model.onnx: " in said and f"(carried from the verify of {doc['created']}, not re-run now)" in said
    assert verdicts(directory)["model.onnx"]["passed"] is False
    assert document(directory)["passed"] is False
    assert rows(document(directory))[("tract-cpu", "model.onnx")]["carried_from"] == doc["created"]
    assert cli("report", str(directory)).returncode == 0
    text = (directory / store.REPORT_MD).read_text()
    assert "**Verification FAILED**" in text and "| tract-cpu | model.onnx | fp32 | **failed** (carried) |" in text


def test_an_opt_in_backend_not_named_reads_as_not_run_in_the_conformance_table(verified_once: Path) -> None:
    """openvino-bf16 under auto: the conformance table said "reads it; openvino-bf16 is not judged on fp32".
    It did not run at all: "not run", with the opt-in reason, in verify.json and the report."""
    needs("openvino-bf16")
    doc = document(verified_once)
    assert not any(r["backend"] == "openvino-bf16" and r["status"] != "skipped" for r in doc["results"])
    cells = [c for c in doc["conformance"] if c["runtime"] == "openvino-bf16"]
    assert cells and all(c["status"] == "not run" and c["detail"].startswith("opt-in") for c in cells), cells
    assert "--backends openvino-bf16" in cells[0]["detail"]
    assert cli("report", str(verified_once)).returncode == 0
    text = (verified_once / store.REPORT_MD).read_text()
    table = text[text.index("## One graph, every runtime"):text.index("Budgets")]
    assert "| openvino-bf16 |" not in table and "reads it" not in table
    assert "openvino-bf16 (opt-in" in table.split("Not run: ", 1)[1]


def test_a_failure_stands_across_other_settings_until_its_backend_runs_again(
        verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: a verify with a --set failed a file on tract, then a verify of ort-cpu alone with
    the default settings dropped every earlier row ("other settings") and the file passed on ort-cpu alone;
    predict served it. A failure on the same bytes now stands whatever the settings, carried, until tract
    runs the file again; the passes judged with other settings are still dropped."""
    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    code = tract_off(directory, "--set", "verify.fp32_atol=2e-5")
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert failed.returncode == 1, failed.stderr
    first = document(directory)
    later = cli("verify", str(directory), "--backends", "ort-cpu")  # default settings, tract not asked
    assert later.returncode == 1, later.stderr
    doc = document(directory)
    after = rows(doc)
    assert after[("tract-cpu", "model.onnx")]["status"] == "failed"
    assert after[("tract-cpu", "model.onnx")]["carried_from"] == first["created"]
    assert ("openvino-cpu", "model.onnx") not in after  # a pass judged with other settings: dropped
    assert any("not carried: it was judged with other settings" in line for line in doc["not_carried"])
    assert "carried failures (not re-run now; same bytes, whatever the settings" in " ".join(later.stderr.split())
    assert verdicts(directory)["model.onnx"]["passed"] is False
    again = cli("verify", str(directory), "--backends", "ort-cpu,tract-cpu")  # tract runs it again: cleared
    assert again.returncode == 0, again.stderr
    assert verdicts(directory)["model.onnx"]["passed"] is True


def test_a_failure_judged_on_the_test_split_is_not_cleared_by_a_pass_on_structure() -> None:
    """Found by attacking: the host failed INT8 on its decisions on the test split; the device's verify
    (which never has the data) passed it on structure and predict served it. merge keeps the earlier
    failure over a new pass without an accuracy, and says so; a new row judged on data replaces it."""
    from attn_export.runtime.targets import Target
    from attn_export.runtime.verify import TargetResult, merge

    def row(status: str, accuracy: float | None, carried: str | None = None) -> TargetResult:
        r = TargetResult(Target("ort-cpu", "model.int8.onnx", "int8-dynamic"), status)
        r.accuracy, r.carried_from = accuracy, carried
        return r

    host = row("failed", 0.91, "2026-12-04T10:00:00Z")
    kept, notes = merge([row("passed", None)], [host], list(REGISTRY))
    assert kept == [host] and notes == ["ort-cpu model.int8.onnx: its failure on the test split (from the verify of "
                                        "2026-12-04T10:00:00Z) stands: this run judged it without the test split"]
    fresh = row("passed", 0.95)
    assert merge([fresh], [host], list(REGISTRY)) == ([fresh], [])
    refail = row("failed", 0.90)
    assert merge([refail], [host], list(REGISTRY)) == ([refail], [])


def test_a_runtime_with_only_carried_rows_did_not_judge_a_new_file(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: after a Q/DQ graph was made and only ort-cpu verified, the conformance table said
    "reads it; openvino-cpu is not judged on int8-qdq" for OpenVINO, which does judge int8-qdq: it did not
    run at all (its rows were carried). Such a cell is now "not run", saying why."""
    needs("openvino-cpu")
    directory = copy(verified_once, tmp_path)
    assert cli("quantize", str(directory), "--int8", "--method", "qdq").returncode == 0
    result = cli("verify", str(directory), "--backends", "ort-cpu")
    assert result.returncode == 0, result.stderr
    cells = {(c["runtime"], c["artifact"]): c for c in document(directory)["conformance"]}
    cell = cells[("openvino-cpu", "model.int8-qdq.onnx")]
    assert cell["status"] == "not run" and "did not run in this verify" in cell["detail"], cell
    assert cells[("openvino-cpu", "model.onnx")]["carried_from"] is not None
    assert cells[("ort-cpu", "model.int8-qdq.onnx")]["status"] == "passed"


def test_a_hand_edited_verify_json_cannot_launder_a_failure(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: tract's failed rows flipped to "passed" in verify.json, and each manifest verdict's
    verify_sha256 set to the edited file's (its passed: false and failed_backends left alone), were carried
    by a verify of ort-cpu, and the file passed. A pass that the manifest's verdict contradicts is not
    carried, and a failure the verdict records that no row answers keeps the file failed."""
    import hashlib

    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    code = tract_off(directory, "--backends", "tract-cpu")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=600).returncode == 1
    doc = document(directory)
    for r in doc["results"]:
        if r["backend"] == "tract-cpu" and r["status"] == "failed":
            r["status"], r["problems"] = "passed", []
    doc["passed"] = True
    data = json.dumps(doc).encode()
    (directory / store.VERIFY_JSON).write_bytes(data)
    manifest = store.read_manifest(directory)
    for entry in manifest["artifacts"].values():
        if "verified" in entry:
            entry["verified"]["verify_sha256"] = hashlib.sha256(data).hexdigest()
    (directory / store.MANIFEST).write_text(json.dumps(manifest))
    later = cli("verify", str(directory), "--backends", "ort-cpu")
    assert later.returncode == 1, later.stderr
    verdict = verdicts(directory)["model.onnx"]
    assert verdict["passed"] is False and "tract-cpu" in verdict["failed_backends"]
    said = " ".join(later.stderr.split())
    assert "tract-cpu model.onnx not carried: it says passed, but the verdict in manifest.json recorded it failed" in said
    assert "stays failed until tract-cpu judges it again" in said
    # not installed here: why is said beside the failure it leaves standing
    skipped = device_verify(directory, unavailable="tract-cpu")
    assert skipped.returncode == 1, skipped.stderr
    assert ("stays failed until tract-cpu judges it again (tract-cpu did not judge it now: not installed "
            "(simulated))") in " ".join(skipped.stderr.split()), skipped.stderr


def device_verify(directory: Path, *args: str, unavailable: str | None = None,
                  prelude: str = "") -> subprocess.CompletedProcess:
    """The device's verify (``python -m attn_export.runtime verify``: reference.npz alone, no test split), with
    the backend ``unavailable`` reported as not installed in that process only, after the code ``prelude``."""
    code = ("import sys\n" + prelude
            + (f"from attn_export.runtime.backends import get\n"
               f"get({unavailable!r}).available = classmethod(lambda cls: 'not installed (simulated)')\n"
               if unavailable else "")
            + "from attn_export.runtime.cli import main\n"
            + f"sys.exit(main(['verify', {str(directory)!r}, *{list(args)!r}]))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)


# ONNX Runtime as 1.11 (JetPack 5's older wheels) met every graph: "opset 17 is under development"
OLD_ORT = ("import onnxruntime\n"
           "onnxruntime.__version__ = {version!r}\n"
           "def refuses(*args, **kwargs):\n"
           "    raise RuntimeError('[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Failed to load model with error: "
           "Current official support for domain ai.onnx is till opset 16.')\n"
           "onnxruntime.InferenceSession = refuses\n")


def test_an_onnx_runtime_older_than_the_floor_judges_nothing_and_records_nothing(verified_once: Path,
                                                                                 tmp_path: Path) -> None:
    """Found by attacking on Python 3.8: ONNX Runtime 1.11 refused every graph (opset 17), verify recorded
    failures, and after an upgrade the INT8 Q/DQ files stayed failed (the host's verdict was gone). Now a
    runtime older than ORT_MIN that cannot load a file is "not available here" (exit 3, one line, nothing
    recorded), while the same refusal from a current ONNX Runtime stays a failure of the file. A stand-in: the
    version string and the refusal are 1.11's, set in the child process; it does not prove what a real 1.11
    does with other graphs."""
    from attn_export.runtime.backends.onnxrt import ORT_MIN

    directory = copy(verified_once, tmp_path)
    before = (store.read_manifest(directory), document(directory))
    old = device_verify(directory, "--backends", "ort-cpu", prelude=OLD_ORT.format(version="1.11.1"))
    lines = old.stderr.strip().splitlines()
    assert old.returncode == 3 and len(lines) == 1, old.stderr
    assert lines[0].startswith(f"Error: no backend could run anything here: ort-cpu: ONNX Runtime 1.11.1, older than "
                               f"{ORT_MIN} (the oldest the device package is tested with), cannot load "), lines
    assert lines[0].endswith(f"expected ONNX Runtime {ORT_MIN} or later (a CPU bundle's requirements.txt installs "
                             "it; on a Jetson, NVIDIA's onnxruntime-gpu wheel) (and 2 more files alike)"), lines
    assert (store.read_manifest(directory), document(directory)) == before
    assert device_verify(directory).returncode == 0 and all(v["passed"] for v in verdicts(directory).values())
    current = device_verify(directory, "--backends", "ort-cpu", prelude=OLD_ORT.format(version=ORT_MIN))
    assert current.returncode == 1 and "ort-cpu model.onnx: cannot read: ONNX Runtime cannot load" in current.stderr


def test_the_hosts_int8_verdict_stands_over_a_devices_pass_on_structure(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: a device's verify (no test split) replaced the host's INT8 verdict, judged on the test
    split (accuracy 0.995, four backends), by its own pass on structure alone (accuracy null, one backend). The
    host's row is now carried over the device's structural pass, and the verdict keeps its accuracy."""
    directory = copy(verified_once, tmp_path)
    host = rows(document(directory))[("ort-cpu", "model.int8.onnx")]
    before = verdicts(directory)["model.int8.onnx"]
    assert host["accuracy"] is not None and before["passed"] is True
    result = device_verify(directory)
    assert result.returncode == 0, result.stderr
    row = rows(document(directory))[("ort-cpu", "model.int8.onnx")]
    assert row["carried_from"] == document(verified_once)["created"] and row["accuracy"] == host["accuracy"]
    after = verdicts(directory)["model.int8.onnx"]
    assert after["passed"] is True and after["accuracy"] == before["accuracy"] and "ort-cpu" in after["carried_backends"]
    assert verdicts(directory)["model.fp16.onnx"]["carried_backends"] == []  # FP16: the device judges it itself
    # found by attacking: the device's line said "carried ..., not re-run now" of a file it had just run
    said = [line for line in result.stderr.splitlines() if "ort-cpu" in line and "model.int8.onnx" in line]
    assert said and said[0].endswith(f"(its decisions from the host's verify of {row['carried_from']}; its structure "
                                     "passed here now)"), result.stderr


def test_a_device_records_no_int8_verdict_from_structure_alone(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: with no verdict of the host's for the INT8 bytes (quantize run again), a device's
    verify passed model.int8.onnx on structure and recorded it verified, which the host refuses to do without
    the test split. It is now not judged there, with the reason, and gets no verdict. (The INT8 file's verdict
    is removed here, as quantize did when it was run again, before identical bytes kept their verdict.)"""
    directory = copy(verified_once, tmp_path)
    manifest = store.read_manifest(directory)
    del manifest["artifacts"]["model.int8.onnx"]["verified"]
    store.write_json(directory / store.MANIFEST, manifest)
    result = device_verify(directory)
    assert result.returncode == 0, result.stderr
    row = rows(document(directory), ran_only=False)[("ort-cpu", "model.int8.onnx")]
    assert row["status"] == "skipped" and row["reason"].startswith(
        "not judged: int8-dynamic is judged by its decisions on the test split, which only the host has"), row
    assert "verified" not in store.read_manifest(directory)["artifacts"]["model.int8.onnx"]
    assert verdicts(directory)["model.onnx"]["passed"] is True


def test_a_device_without_verify_json_says_the_hosts_int8_pass_stands(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: with the host's verify.json deleted on the device, its verify said "no verdict of the
    host's stands for these bytes", while the manifest's pass stood (info said verified, predict ran it). It
    now says the pass stands and that verify.json has no row of it; the verdict is kept."""
    directory = copy(verified_once, tmp_path)
    (directory / "verify.json").unlink()
    result = device_verify(directory)
    assert result.returncode == 0, result.stderr
    row = rows(document(directory), ran_only=False)[("ort-cpu", "model.int8.onnx")]
    assert row["status"] == "skipped" and row["reason"].startswith(
        "not judged here: int8-dynamic is judged by its decisions on the test split, which only the host has; the "
        "host's pass for these bytes stands (manifest.json), but verify.json here has no row of it"), row
    assert row["reason"].endswith("run attn-export verify with the test split to judge it again"), row  # no bundle
    assert verdicts(directory)["model.int8.onnx"]["passed"] is True


def test_results_of_a_backend_not_installed_here_are_named_when_not_carried(verified_once: Path,
                                                                            tmp_path: Path) -> None:
    """Found by attacking: a device without tract dropped the host's tract rows without a word (its auto run
    'asked' for tract, which then did not run). A backend asked for but not run here replaces nothing: its
    earlier results are carried or named in not_carried like any other backend's."""
    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    result = device_verify(directory, unavailable="tract-cpu")
    assert result.returncode == 0, result.stderr
    doc = document(directory)
    assert not any(b == "tract-cpu" for b, _ in rows(doc))
    assert any("tract-cpu" in line and "not carried: it was judged with other settings" in line
               for line in doc["not_carried"]), doc["not_carried"]


def test_a_report_after_a_retrain_marks_every_old_result(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: after train ran again, the report's verify table said NOT CURRENT, but the runtime
    table, the accuracy per precision, its reference line and the attention list showed the old results as
    plain ones, and the advice ("run attn-export verify again") was one verify refuses until the files are
    made again."""
    directory = copy(verified_once, tmp_path)
    assert cli("train", str(directory), "--seed", "7").returncode == 0
    assert cli("report", str(directory)).returncode == 0
    text = (directory / store.REPORT_MD).read_text()
    assert "**Verification NOT CURRENT**" in text
    assert "the files it judged are not current (each is named with why): make them again (attn-export export" in text
    runtimes = text.split("## One graph, every runtime")[1].split("Budgets")[0]
    cells = [c.strip() for line in runtimes.splitlines() if line.startswith("| ") and "---" not in line
             and not line.startswith("| runtime") for c in line.strip("|").split("|")[1:]]
    assert cells and all(c.endswith("(NOT CURRENT)") for c in cells if c.startswith("passed")), cells
    accuracy = text.split("## Accuracy per precision")[1].split("\n## ")[0]
    rows_ = [line for line in accuracy.splitlines() if line.startswith("| fp") or line.startswith("| int8")]
    assert rows_ and all(line.endswith("(NOT CURRENT) |") for line in rows_), rows_
    assert "; NOT CURRENT: model.safetensors is not the file this verify ran." in accuracy
    if "## Attention" in text:
        attention = text.split("## Attention")[1].split("\n## ")[0]
        assert "NOT CURRENT: these are the attention weights of the verify of" in attention
        listed = [line for line in attention.splitlines() if line.startswith("- `")]
        assert listed and all(line.endswith("(NOT CURRENT)") for line in listed), listed


def test_another_directorys_verify_json_is_told_to_verify_again_not_to_make_the_files(verified_once: Path,
                                                                                       tmp_path: Path) -> None:
    """Found by attacking: with another directory's verify.json copied in (its rows measured other bytes), the
    report's headline said the files had changed and should be made again, while the files were current;
    inspect listed that verify.json as a plain result. Both now say it is not this directory's verdict, and
    the fix is verify."""
    directory = copy(verified_once, tmp_path)
    doc = document(directory)
    for r in doc["results"]:
        if r.get("sha256"):
            r["sha256"] = "f" * 64  # as another directory's rows: measured on other bytes
    other = dict(next(r for r in doc["results"] if r["artifact"] == "model.int8.onnx" and r["status"] != "skipped"))
    assert not (directory / "model.int8-qdq.onnx").exists() and store.Store(directory).entry("model.int8-qdq.onnx") is None
    doc["results"].append({**other, "artifact": "model.int8-qdq.onnx", "precision": "int8-qdq"})  # never made here:
    (directory / store.VERIFY_JSON).write_text(json.dumps(doc))  # not a file to make again (found by review)
    assert cli("report", str(directory)).returncode == 0
    text = (directory / store.REPORT_MD).read_text()
    said = ("no verdict in manifest.json was recorded from this verify.json: it is stale or from another directory; "
            f"run attn-export verify {directory} again")
    assert "**Verification NOT CURRENT**" in text and f"- not current: {said}" in text
    assert "make them again" not in text.split("## Verify")[0]
    verify_row = [r for r in text.split("## Verify")[1].splitlines() if r.startswith("| ort-cpu | model.onnx |")]
    assert verify_row and "**passed** (NOT CURRENT)" in verify_row[0], verify_row
    shown = cli("inspect", str(directory))
    assert shown.returncode == 0 and said in " ".join(shown.stdout.split()), shown.stdout


def test_a_report_without_verify_json_does_not_say_never_verified(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: with verify.json deleted, the report said "Not verified yet" above an Artefacts list
    saying each file passed verify (the manifest's verdicts, which predict goes by)."""
    directory = copy(verified_once, tmp_path)
    (directory / store.VERIFY_JSON).unlink()
    timed = cli("bench", str(directory), "--backends", "ort-cpu", "--batch", "1", "--seq", "8", "--seconds", "0.05")
    assert timed.returncode == 0, timed.stderr  # something to report
    report = cli("report", str(directory))
    assert report.returncode == 0, report.stderr
    text = (directory / store.REPORT_MD).read_text()
    assert "Not verified yet" not in text and "it passed verify" in text, text
    assert ("**Verification results missing**: no `verify.json`, while `manifest.json` records the verdicts of a "
            "verify (Artefacts, below)") in text
    assert "Verification results missing" in report.stdout + report.stderr


def test_a_report_names_recorded_files_that_are_gone(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: with metrics.json deleted the report dropped its "Trained model" line and its
    Artefacts entry without a word, while inspect said it was missing. Both now name it, with the command that
    makes it, as a deleted graph is named."""
    directory = copy(verified_once, tmp_path)
    (directory / store.METRICS).unlink()
    (directory / "model.fp16.onnx").unlink()
    report = cli("report", str(directory))
    assert report.returncode == 0, report.stderr
    text = (directory / store.REPORT_MD).read_text()
    gone = f"{directory / store.METRICS} is missing; run attn-export train {directory} first"
    assert f"Trained model: not shown: {gone}." in text
    artefacts = text.split("## Artefacts", 1)[1]
    assert f"- not current: {gone}" in artefacts and "model.fp16.onnx is missing" in artefacts, artefacts


def test_the_report_says_what_a_cpu_bundle_ships_when_bench_picked_nothing(verified_once: Path,
                                                                           tmp_path: Path) -> None:
    """Found by attacking: with a bench.json that picked nothing (the default not timed), or one without a
    pick at all, neither the report nor its console said what `bundle --for cpu` ships, which bundle said."""
    directory = copy(verified_once, tmp_path)
    timed = cli("bench", str(directory), "--backends", "ort-cpu", "--batch", "1", "--seq", "8", "--seconds", "0.05")
    assert timed.returncode == 0, timed.stderr
    bench = json.loads((directory / store.BENCH_JSON).read_text())
    for recommended, why in (({"cpu": "x", "by_shape": {}, "reason": "no verified pair was timed"}, "recommends no "
                              "pair: "), (None, "recommends no pair: bench.json recommends nothing")):
        store.write_json(directory / store.BENCH_JSON, {**bench, "recommended": recommended})
        report = cli("report", str(directory))
        assert report.returncode == 0, report.stderr
        said = " ".join(report.stderr.split())
        assert f"attn-export bundle --for cpu {why}" in said, said
        assert f"`attn-export bundle --for cpu` {why}" in (directory / store.REPORT_MD).read_text()


def test_the_report_says_bundle_refuses_the_directory_where_bundle_refuses_it(verified_once: Path,
                                                                               tmp_path: Path) -> None:
    """Found by attacking: with a graph not current the report's headline said so, yet it went on to say what
    `bundle --for cpu` ships, and bundle refused the directory. Both now say it from one rule
    (``bundle.refusal``)."""
    import onnx

    directory = copy(verified_once, tmp_path)
    timed = cli("bench", str(directory), "--backends", "ort-cpu", "--batch", "1", "--seq", "8", "--seconds", "0.05")
    assert timed.returncode == 0, timed.stderr
    proto = onnx.load(str(directory / "model.fp16.onnx"))
    onnx.helper.set_model_props(proto, {"edited": "yes"})  # still a graph, not the recorded bytes
    onnx.save(proto, str(directory / "model.fp16.onnx"))
    assert cli("report", str(directory)).returncode == 0
    text = " ".join((directory / store.REPORT_MD).read_text().split())
    assert "`attn-export bundle --for cpu` refuses this directory until these are remade or removed: " \
           "model.fp16.onnx was changed after it was recorded" in text, text
    assert "` as the bundle's recommended pair" not in text
    refused = cli("bundle", str(directory), "--out", str(tmp_path / "b.tar.gz"), "--for", "cpu")
    assert refused.returncode == 2 and "model.fp16.onnx was changed after it was recorded" in refused.stderr


def test_the_report_lists_the_sweep_decisions_an_int8_row_moved(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: the console listed them under "not judged", the report did not, so a reader of
    report.md alone saw nothing of an INT8 graph that moved most sweep decisions."""
    directory = copy(verified_once, tmp_path)
    doc = document(directory)
    row = next(r for r in doc["results"] if r["artifact"] == "model.int8.onnx" and r["backend"] == "ort-cpu")
    row["cases"][0]["argmax_agreement"] = 0.25
    case = row["cases"][0]
    as_if_written(directory, doc)
    assert cli("report", str(directory)).returncode == 0
    text = (directory / store.REPORT_MD).read_text()
    listed = text.split("## Verify")[1].split("## One graph")[0]
    assert ("- ort-cpu model.int8.onnx: decisions on the sweep (judged only on sequences shorter than the test "
            "split's) agreed 0.25 at "
            f"{case['batch']} x {case['seq']}") in listed, listed


def test_the_reports_mean_allowances_are_the_backends_not_a_carried_rows(verified_once: Path, tmp_path: Path) -> None:
    """Found by review: the Budgets line took each row's recorded ``mean_allowed``, so a row carried from a
    verify under another --set read as a backend allowance "whose FP16 rounds every operation"."""
    directory = copy(verified_once, tmp_path)
    doc = document(directory)
    for r in doc["results"]:
        if r["precision"] == "fp16" and r["status"] != "skipped":
            r["budget"]["mean_allowed"] = 2.0  # as a row judged under --set verify.mean_budget_multiple=2
    as_if_written(directory, doc)
    assert cli("report", str(directory)).returncode == 0
    budgets = [line for line in (directory / store.REPORT_MD).read_text().splitlines() if line.startswith("- fp16:")]
    assert budgets and "on average at most 1.5 x (3 x on onnx-ref: its FP16 rounds every operation, sums included)," \
        in budgets[0] and "ort-cpu" not in budgets[0], budgets


def test_the_report_lists_a_budget_only_where_a_row_was_judged_by_it(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: "bf16: atol ..." under Budgets on a CPU where openvino-bf16 can neither run nor did.
    A precision no row of the verify ran in is named once as such; one that ran keeps its budget."""
    directory = copy(verified_once, tmp_path)
    doc = document(directory)
    assert "bf16" in doc["tolerances"] and not any(r["precision"] == "bf16" and r["status"] != "skipped"
                                                   for r in doc["results"])
    assert cli("report", str(directory)).returncode == 0
    budgets = (directory / store.REPORT_MD).read_text().split("Budgets (")[1].split("##")[0]
    assert "- bf16:" not in budgets and "- fp16: atol" in budgets, budgets
    unused = next(line for line in budgets.splitlines() if line.endswith("no row of this verify ran in them"))
    assert "bf16" in unused.split(":")[0] and "fp16" not in unused.split(":")[0].replace("bf16", ""), unused
    assert "fp32-gpu" in unused.split(":")[0], unused
    # a GPU's FP32 row is judged by fp32-gpu's rule, which no row's precision names (found by review)
    gpu = {**next(r for r in doc["results"] if (r["backend"], r["artifact"]) == ("ort-cpu", "model.onnx")),
           "backend": "ort-cuda"}
    as_if_written(directory, {**doc, "results": doc["results"] + [gpu]})
    assert cli("report", str(directory)).returncode == 0
    budgets = (directory / store.REPORT_MD).read_text().split("Budgets (")[1].split("##")[0]
    assert "- fp32-gpu: atol" in budgets, budgets
    assert not any("fp32-gpu" in line for line in budgets.splitlines() if "no row of this verify" in line), budgets


def test_html_in_a_directory_name_or_a_result_never_renders_in_the_report(verified_once: Path,
                                                                          tmp_path: Path) -> None:
    """Found by attacking: report.md carried text from the directory's name and its JSON files as it was, so a
    hand-edited reason ``<img src=x onerror=...>`` rendered as HTML in a Markdown viewer. A ``<`` that could
    open a tag is written ``&lt;``."""
    directory = tmp_path / "<b>runs"
    shutil.copytree(verified_once, directory)
    doc = document(directory)
    skipped = next(r for r in doc["results"] if r["status"] == "skipped")
    skipped["reason"] = "<img src=x onerror=alert(1)> not here"
    as_if_written(directory, doc)
    (directory / store.BENCH_JSON).unlink(missing_ok=True)
    assert cli("report", str(directory)).returncode == 0
    text = (directory / store.REPORT_MD).read_text()
    body, record = text.rstrip().rsplit("\n", 1)
    assert "<img" not in body and "<b>" not in body and "&lt;img src=x onerror=alert(1)> not here" in body
    assert text.startswith("# attn-export report: &lt;b>runs")
    assert record.startswith("<!-- attn-export report of: ")  # its own record, as it was
    # a stray backtick in such text must not open a way for the rest (found by review)
    skipped["reason"] = "needs the `cuda build <img src=x onerror=alert(1)>"
    as_if_written(directory, doc)
    assert cli("report", str(directory)).returncode == 0
    assert "<img" not in (directory / store.REPORT_MD).read_text().rstrip().rsplit("\n", 1)[0]


def test_the_report_says_which_fits_are_no_cost_to_plan_with(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: the console said a negative intercept is no call time, the report's fit table
    showed "-488 µs" without a word."""
    directory = copy(verified_once, tmp_path)
    timed = cli("bench", str(directory), "--backends", "ort-cpu", "--batch", "1", "--seq", "8,16", "--seconds",
                "0.05")
    assert timed.returncode == 0, timed.stderr
    bench = json.loads((directory / store.BENCH_JSON).read_text())
    fitted = [v["seq_fit"] for v in bench["scaling"].values() if v.get("seq_fit")]
    for fit in fitted:  # each fit of two timed lengths as a plan can use it, whatever this machine's timer did
        fit.update(intercept_ms=0.1, ms_per_step=0.01, r2=0.99)
    fitted[0].update(intercept_ms=-0.488, ms_per_step=0.0124, r2=0.9746)
    store.write_json(directory / store.BENCH_JSON, bench)
    assert cli("report", str(directory)).returncode == 0
    text = (directory / store.REPORT_MD).read_text()
    said = text.split("No cost to plan with:")[1].split("\n\n")[1].splitlines()
    assert len(said) == 1 and said[0].endswith(": a negative intercept is no call time: latency grows faster than "
                                               "the line here"), said


def as_if_written(directory: Path, doc: dict) -> None:
    """``doc`` as the directory's verify.json, with every verdict re-pointed at it, as verify itself would have
    recorded them: a verify.json of other measurements that the store still trusts."""
    (directory / store.VERIFY_JSON).write_text(json.dumps(doc))
    manifest = store.read_manifest(directory)
    for entry in manifest["artifacts"].values():
        if entry.get("verified"):
            entry["verified"]["verify_sha256"] = store.sha256_file(directory / store.VERIFY_JSON)
    store.write_json(directory / store.MANIFEST, manifest)


def test_a_device_set_judges_the_hosts_int8_decisions_again(verified_once: Path, tmp_path: Path) -> None:
    """Found by review: the host's INT8 pass was carried whatever the settings, so a device's stricter
    `--set verify.int8_min_argmax_agreement` recorded a verdict under it while the carried rows had less.
    The host's measured decisions are now judged again under the device run's limits. The host's measured
    agreement is set to 0.99 here (verify.json rewritten and the verdicts re-pointed at it, as the host would
    have written them), so the limits decide either way on any weights."""
    directory = copy(verified_once, tmp_path)
    doc = document(directory)
    for r in doc["results"]:
        if r["artifact"] == "model.int8.onnx" and r["status"] == "passed":
            r["argmax_agreement"] = 0.99
    as_if_written(directory, doc)
    strict = copy(directory, tmp_path / "strict")
    result = device_verify(strict, "--set", "verify.int8_min_argmax_agreement=0.995")
    assert result.returncode == 1, result.stderr
    row = rows(document(strict))[("ort-cpu", "model.int8.onnx")]
    assert row["status"] == "failed" and row["carried_from"] and "argmax agreement 0.9900 below 0.995" in row["reason"]
    assert verdicts(strict)["model.int8.onnx"]["passed"] is False
    result = device_verify(directory)  # the recipe's 0.97: the host's decisions pass
    assert result.returncode == 0, result.stderr
    assert verdicts(directory)["model.int8.onnx"]["passed"] is True


def test_a_carried_int8_pass_on_structure_alone_is_not_judged(verified_once: Path, tmp_path: Path) -> None:
    """Found by review: an INT8 pass on structure alone that an older device verify had written (no accuracy)
    was carried by the next device verify as an ordinary pass and kept the file verified, while that run
    called the same file "not judged". Such a carried pass is now not judged either. The older verify.json is
    simulated: the device's own, with openvino-cpu's INT8 row stripped of its decisions and re-pointed at."""
    needs("openvino-cpu")
    directory = copy(verified_once, tmp_path)
    assert device_verify(directory).returncode == 0
    doc = document(directory)
    for r in doc["results"]:
        if (r["backend"], r["artifact"]) == ("openvino-cpu", "model.int8.onnx"):
            r.update(accuracy=None, accuracy_delta=None, argmax_agreement=None, carried_from=None)
    as_if_written(directory, doc)
    result = device_verify(directory, "--backends", "ort-cpu")
    assert result.returncode == 0, result.stderr
    row = rows(document(directory), ran_only=False)[("openvino-cpu", "model.int8.onnx")]
    assert row["status"] == "skipped" and "was judged on structure alone" in row["reason"], row


def test_a_row_measured_again_is_not_listed_as_not_carried(verified_once: Path, tmp_path: Path) -> None:
    """Found by attacking: after a retrain, verify --backends onnx-ref failed the stale stream graphs (a
    failure of a stale file records no bytes); once they were made again, the next verify --backends onnx-ref
    passed them and still said "onnx-ref model.stream.onnx not carried: it records no sha256", the only line
    under PASSED in the report. A row this run measured again replaces the earlier one: nothing to say. Here
    the earlier failure with no bytes is written as verify would have (the verdicts re-pointed at it)."""
    directory = copy(verified_once, tmp_path)
    doc = document(directory)
    for r in doc["results"]:
        if (r["backend"], r["artifact"]) in (("ort-cpu", "model.onnx"), ("onnx-ref", "model.onnx")):
            r.update(status="failed", sha256=None)
    as_if_written(directory, doc)
    result = cli("verify", str(directory), "--backends", "ort-cpu")
    said = " ".join(result.stderr.split())
    assert "ort-cpu model.onnx not carried" not in said, said
    assert "onnx-ref model.onnx not carried: it records no sha256 of the bytes it ran" in said  # not run now
    after = document(directory)
    assert rows(after)[("ort-cpu", "model.onnx")]["status"] == "passed"
    assert after["not_carried"] == ["onnx-ref model.onnx not carried: it records no sha256 of the bytes it ran"]


def test_the_report_names_a_stale_graph_this_verify_did_not_judge_under_its_headline(verified_once: Path,
                                                                                     tmp_path: Path) -> None:
    """Found by attacking: after a retrain and a re-export that left the Q/DQ graph stale, verify --backends
    onnx-ref said PASSED and so did the report's headline, with the stale file 140 lines down; bundle then
    refused the directory as untrustworthy. The report now names it right under the headline. Here
    model.int8.onnx is recorded from other parent bytes (stale) and tract, which does not read it, verifies."""
    needs("tract-cpu")
    directory = copy(verified_once, tmp_path)
    store.record(directory, "model.int8.onnx", "quantize", parent="model.onnx", parent_sha256="0" * 64,
                 precision="int8-dynamic")
    assert cli("verify", str(directory), "--backends", "tract-cpu").returncode == 0
    assert cli("report", str(directory)).returncode == 0
    head = (directory / store.REPORT_MD).read_text().split("## Verify")[0]
    assert "**Verification PASSED**" in head
    assert ("- not judged by this verify, and not current (bundle refuses the directory until it is made again or "
            "removed): model.int8.onnx is stale") in head, head
    assert "model.fp16.onnx" not in head  # judged now, current
    assert cli("bundle", str(directory), "--for", "cpu", "--out", str(tmp_path / "b.tar.gz")).returncode == 2


def test_predict_runs_openvino_bf16_only_where_verify_passed_that_pair(verified_once: Path, tmp_path: Path) -> None:
    """openvino-bf16 computes model.onnx in bf16, which model.onnx's FP32 verdict does not vouch for (found by
    attacking: predict once served it as "fp32" under that verdict). Refused until a verify that named it
    passes the pair itself (allow_unverified loads it, said); then predict says it computed bf16 and judges its
    range by the bf16 rule, a stream on it is refused (no stream graph is judged in bf16), and a CPU bundle
    whose bench picked it runs it with model.onnx's flags, needs OpenVINO and says it needs bf16 arithmetic.
    On the device, the README's `verify .` judges again without it (found by review: its steps then left the
    pick refused while info still recommended it), so the README names it to verify next, and until then
    info and predict's note say the pick is not verified here now."""
    import os

    import numpy as np

    from attn_export.errors import BadInput, Untrusted
    from attn_export.runtime.bundle import pack, unpack
    from attn_export.runtime.predictor import Predictor
    from attn_export.runtime.recommend import cpu_text
    from attn_export.runtime.timing import cpu_name

    needs("openvino-bf16")
    directory = copy(verified_once, tmp_path)
    spec = store.Store(directory).info
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 5, spec.input_size), np.float32), lengths=np.array([5, 3]))
    said = "openvino-bf16 computes model.onnx in bf16, and verify has not passed that pair on the bytes here; "
    refusal = f"{said}verify it by name: attn-export verify {directory} --backends openvino-bf16; or load it with"
    with pytest.raises(Untrusted, match=re.escape(refusal)):
        Predictor.load(directory, backend="openvino-bf16")
    gone = copy(directory, tmp_path / "gone")
    (gone / store.VERIFY_JSON).unlink()  # a verify by name would record no verdict: the plain one is said first
    with pytest.raises(Untrusted, match=re.escape(f"{said}no verify.json: run attn-export verify {gone} first, then verify "
                                                  f"it by name: attn-export verify {gone} --backends openvino-bf16")):
        Predictor.load(gone, backend="openvino-bf16")
    host = cli("predict", str(tmp_path / "x.npz"), "--dir", str(directory), "--backend", "openvino-bf16")
    assert host.returncode == 2 and refusal in host.stderr and len(host.stderr.strip().splitlines()) == 1, host.stderr
    with Predictor.load(directory, backend="openvino-bf16", allow_unverified=True) as loose:
        assert any(n.endswith("(loaded with allow_unverified)") and "has not passed that pair" in n
                   for n in loose.notes)
    assert cli("verify", str(directory), "--backends", "openvino-bf16").returncode == 0
    deployment = document(directory)["deployment_max_seq"]
    cpu = cpu_name()  # its pass holds on this CPU (the test above: not on another)
    assert (rows(document(directory))[("openvino-bf16", "model.onnx")]["cpu"], rows(document(directory))[
        ("openvino-bf16", "model.onnx")]["isa"]) == cpu
    with Predictor.load(directory, backend="openvino-bf16") as bf16, Predictor.load(directory) as fp32:
        assert (bf16.computes, bf16.precision, fp32.computes) == ("bf16", "fp32", "fp32")
        assert bf16.judged_within == deployment and fp32.judged_within is None
        assert any("a pair verify passed on the bytes here" in n for n in bf16.notes)
        long = [np.zeros((deployment + 1, spec.input_size), np.float32)]
        assert "verify judged model.onnx in bf16 by its error budget" in str(bf16.beyond_judged(long))
        with pytest.raises(BadInput, match="verify judges no stream graph in bf16"):
            bf16.stream()

    assert cli("bench", str(directory), "--against", "torch", "--backends", "ort-cpu,openvino-bf16", "--batch", "1",
               "--seq", "16", "--seconds", "0.05").returncode == 0
    bench = json.loads((directory / "bench.json").read_text())  # as if bench had found the bf16 pair fastest
    bench["recommended"]["overall"].update(backend="openvino-bf16", artifact="model.onnx", precision="bf16")
    (directory / "bench.json").write_text(json.dumps(bench))
    assert cli("report", str(directory)).returncode == 0
    report = " ".join((directory / store.REPORT_MD).read_text().split())
    assert "as the bundle's recommended pair (its predict line; predict without --backend and --precision runs FP32). " \
           "It computes in bf16: the device needs bf16 arithmetic" in report
    assert ("Judged on one CPU (the backend computes as the CPU it runs on does; its pass holds on that CPU only): "
            f"- openvino-bf16 `model.onnx`: {cpu_text(*cpu)}") in report, report
    unpacked = unpack(pack(directory, tmp_path / "cpu.tar.gz", "cpu").path, tmp_path / "b")
    readme = " ".join((unpacked / "README.md").read_text().split())
    assert "predict . INPUT.npz --backend openvino-bf16 --precision fp32" in readme, readme
    assert "`openvino-bf16` computes `model.onnx` in bf16: it runs only on a CPU with bf16 arithmetic" in readme
    assert "Streams run" not in readme  # this model ships no stream graph
    assert "openvino" in (unpacked / "requirements.txt").read_text().split()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": "runtime"}

    def device(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "attn_export.runtime", *args], capture_output=True, text=True,
                              cwd=unpacked, env=env, timeout=300)

    predict = ("predict", ".", str(tmp_path / "x.npz"), "--json")
    plain = device(*predict)
    assert plain.returncode == 0, plain.stderr
    assert any(n.startswith("this ran fp32 on ort-cpu, predict's default; this bundle recommends --backend "
                            "openvino-bf16 --precision fp32 (model.onnx") and "not passed" not in n
               for n in json.loads(plain.stdout)["notes"])
    steps = [line.split("python3 -m attn_export.runtime ", 1)[1].split("#")[0].split()
             for line in (unpacked / "README.md").read_text().splitlines()
             if "python3 -m attn_export.runtime verify ." in line and "/tmp/ax" not in line]
    assert steps == [["verify", "."], ["verify", ".", "--backends", "openvino-bf16"]], steps
    assert device(*steps[0]).returncode == 0  # judges again without the opt-in pair: it is not verified here now
    assert device(*predict, "--backend", "openvino-bf16", "--precision", "fp32").returncode == 2
    stale = ("verify has not passed that pair on the bytes here now (verify it by name: PYTHONPATH=runtime python3 -m "
             "attn_export.runtime verify . --backends openvino-bf16)")
    assert any(stale in n for n in json.loads(device(*predict).stdout)["notes"])
    assert stale in device("info", ".").stdout
    assert device(*steps[1]).returncode == 0
    picked = device(*predict, "--backend", "openvino-bf16", "--precision", "fp32")
    assert picked.returncode == 0, picked.stderr
    ran = json.loads(picked.stdout)
    assert (ran["backend"], ran["artifact"], ran["precision"]) == ("openvino-bf16", "model.onnx", "bf16")
    assert not any("recommends" in n for n in ran["notes"])
    assert stale not in device("info", ".").stdout


def test_an_openvino_bf16_pass_holds_only_on_the_cpu_verify_ran_it_on(verified_once: Path, tmp_path: Path) -> None:
    """OpenVINO's bf16 arithmetic is the CPU's (AMX or AVX512-BF16 kernels round otherwise), so its result in
    verify.json holds on the CPU it names only: a pass recorded on another CPU, or on none (an older
    attn-export), is not a verified pair here, predict and bench say why and how to verify it here (in a bundle,
    the plain verify first: found by review, a verify by name alone left the refusal standing), and a verify
    carries neither that pass nor such a failure (found by review: another CPU's failure failed a verify that
    never named the backend). What this does not prove: that another CPU's bf16 rounds otherwise; the results
    here are ort-cpu's row renamed, recorded as if verify had written them on the CPU named, so the part
    without bf16 arithmetic runs on any CPU."""
    import os

    import numpy as np

    from attn_export.errors import Untrusted
    from attn_export.runtime.bundle import pack, unpack
    from attn_export.runtime.predictor import Predictor
    from attn_export.runtime.recommend import cpu_text, other_cpu, verified_pairs
    from attn_export.runtime.timing import cpu_name

    directory = copy(verified_once, tmp_path)
    here, elsewhere = cpu_name(), ("AMD EPYC 7B13, family 25 model 1", ["avx2"])

    def with_bf16_row(**fields: object) -> dict:  # ort-cpu's model.onnx row as openvino-bf16's
        doc = document(directory)
        row = {**rows(doc)[("ort-cpu", "model.onnx")], "backend": "openvino-bf16", **fields}
        doc["results"] = [r for r in doc["results"] if r["backend"] != "openvino-bf16"] + [row]
        as_if_written(directory, doc)
        return row

    for cpu, isa, verified in ((*here, True), (here[0], [*here[1], "sve"], False), (*elsewhere, False)):
        with_bf16_row(cpu=cpu, isa=isa)
        assert (("openvino-bf16", "model.onnx") in verified_pairs(store.Store(directory))[0]) is verified, (cpu, isa)
    gone = copy(directory, tmp_path / "old")
    doc = document(gone)
    for row in doc["results"]:  # as an older attn-export wrote them
        for key in ("cpu", "isa"):
            row.pop(key, None)
    as_if_written(gone, doc)
    assert other_cpu(store.Store(gone)) == {("openvino-bf16", "model.onnx"): (
        "its verify recorded no CPU (an older attn-export), and openvino-bf16 computes as the CPU it runs on does")}
    why = (f"verify judged it on another CPU, {cpu_text(*elsewhere)}, not this {cpu_text(*here)}, and openvino-bf16 "
           "computes as the CPU it runs on does")
    assert other_cpu(store.Store(directory)) == {("openvino-bf16", "model.onnx"): why}
    assert ("ort-cpu", "model.onnx") in verified_pairs(store.Store(directory))[0]  # a CPU-free pair is untouched
    assert cli("report", str(directory)).returncode == 0
    assert f"- openvino-bf16 `model.onnx`: {cpu_text(*elsewhere)} (not this CPU)" in (
        directory / store.REPORT_MD).read_text()
    if REGISTRY["openvino-bf16"].available() is None:
        with pytest.raises(Untrusted, match=re.escape(
                f"computes model.onnx in bf16, and its pass does not hold here: {why}; verify it by name: "
                f"attn-export verify {directory} --backends openvino-bf16")):
            Predictor.load(directory, backend="openvino-bf16")
        bench = cli("bench", str(directory), "--against", "torch", "--backends", "openvino-bf16", "--seconds", "0.05")
        assert bench.returncode == 2 and len(bench.stderr.strip().splitlines()) == 1, bench.stderr
        assert (f"--backends openvino-bf16: openvino-bf16 model.onnx: {why}; verify it here: attn-export verify "
                f"{directory} --backends openvino-bf16") in bench.stderr, bench.stderr
        # a bundle carried to this CPU: its README's two verifies, in order, are the fix the refusal names
        unpacked = unpack(pack(directory, tmp_path / "cpu.tar.gz", "cpu").path, tmp_path / "b")
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": "runtime"}

        def device(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "attn_export.runtime", *args], capture_output=True,
                                  text=True, cwd=unpacked, env=env, timeout=300)

        spec = store.Store(directory).info
        np.savez(unpacked / "x.npz", x=np.zeros((1, 5, spec.input_size), np.float32), lengths=np.array([5]))
        predict = ("predict", ".", "x.npz", "--backend", "openvino-bf16", "--precision", "fp32")
        refused = device(*predict)
        fix = ("PYTHONPATH=runtime python3 -m attn_export.runtime verify . && PYTHONPATH=runtime python3 -m "
               "attn_export.runtime verify . --backends openvino-bf16")
        assert refused.returncode == 2 and why in refused.stderr and fix in refused.stderr, refused.stderr
        for step in fix.split(" && "):
            assert device(*step.split("python3 -m attn_export.runtime ")[1].split()).returncode == 0
        ran = device(*predict)
        assert ran.returncode == 0, ran.stderr
    result = cli("verify", str(directory), "--backends", "ort-cpu")
    assert result.returncode == 0, result.stderr
    assert (f"openvino-bf16 model.onnx not carried: {why}; verify it here: attn-export verify {directory} --backends "
            "openvino-bf16") in " ".join(result.stderr.split()), result.stderr
    assert ("openvino-bf16", "model.onnx") not in rows(document(directory))
    assert rows(document(directory))[("ort-cpu", "model.onnx")]["cpu"] == here[0]  # every row names its CPU
    with_bf16_row(cpu=elsewhere[0], isa=elsewhere[1], status="failed", reason="1x2048: class flipped",
                  problems=["1x2048: class flipped"])
    result = cli("verify", str(directory), "--backends", "ort-cpu")  # not this CPU's failure: it fails nothing here
    assert result.returncode == 0 and "openvino-bf16 model.onnx not carried: verify judged it on another CPU" in \
        " ".join(result.stderr.split()), result.stderr
    assert ("openvino-bf16", "model.onnx") not in rows(document(directory))


def test_a_verify_by_name_in_a_bundle_names_the_devices_plain_verify_first_unless_it_ran(verified_once: Path,
                                                                                         tmp_path: Path) -> None:
    """Found by review, twice: in a bundle a verify by name carries none of the host's results (their settings
    differ), so the pair's file kept the replaced verify.json's verdict and predict still refused the pair.
    The fix the refusals name is the device's plain verify first, unless verify.json is the device's own:
    with the host's, whether it judged a test split or had none (a model without labels), with none, or
    damaged. On the host the verify by name alone."""
    from attn_export.runtime.dispatch import verify_by_name
    from attn_export.runtime.verify import DEVICE_SPLIT

    directory = copy(verified_once, tmp_path)
    named = "--backends openvino-bf16"
    assert verify_by_name(store.Store(directory), "openvino-bf16") == f"attn-export verify {directory} {named}"
    (directory / "runtime" / "attn_export").mkdir(parents=True)  # where a bundle ships its device package
    device = f"PYTHONPATH={directory / 'runtime'} python3 -m attn_export.runtime verify {directory}"
    both = f"{device} && {device} {named}"
    doc = document(directory)
    for split, expected in ((doc["reference"]["test_split"], both),
                            ("no labelled test split for this model (not a classifier)", both),
                            (DEVICE_SPLIT, f"{device} {named}")):
        doc["reference"]["test_split"] = split
        (directory / store.VERIFY_JSON).write_text(json.dumps(doc))
        assert verify_by_name(store.Store(directory), "openvino-bf16") == expected, split
    (directory / store.VERIFY_JSON).write_text("{")
    assert verify_by_name(store.Store(directory), "openvino-bf16") == both
    (directory / store.VERIFY_JSON).unlink()
    assert verify_by_name(store.Store(directory), "openvino-bf16") == both


def test_predict_on_openvino_bf16_without_bf16_arithmetic_says_why_not(verified_once: Path, tmp_path: Path) -> None:
    """Where the CPU has no bf16 arithmetic (or OpenVINO is missing), predict --backend openvino-bf16 is
    exit 3 with the reason, never FP32 run in its place. What it does not prove: the bf16 path itself (the
    test above runs it on a CPU with bf16)."""
    import numpy as np

    reason = REGISTRY["openvino-bf16"].available()
    if reason is None:
        pytest.skip("this CPU computes bf16: the test above runs openvino-bf16 here")
    spec = store.Store(verified_once).info
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 5, spec.input_size), np.float32), lengths=np.array([5]))
    result = cli("predict", str(tmp_path / "x.npz"), "--dir", str(verified_once), "--backend", "openvino-bf16")
    assert result.returncode == 3 and f"backend openvino-bf16 is not available: {reason}" in result.stderr, \
        result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout
    # a pair never valid is exit 2 on every machine, before the backend is asked (found by attacking: exit 3
    # here, 2 on a CPU with bf16)
    never = cli("predict", str(tmp_path / "x.npz"), "--dir", str(verified_once), "--backend", "openvino-bf16",
                "--precision", "int8-dynamic")
    assert never.returncode == 2 and "backend openvino-bf16 does not run int8-dynamic artefacts" in never.stderr, \
        never.stderr
