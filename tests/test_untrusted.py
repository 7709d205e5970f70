"""Untrusted files: ONNX external data that points outside the model's directory is refused before any
runtime reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_export.runtime.onnxfile import check_external_data
from attn_export.backends.onnxref import OnnxRefBackend
from attn_export.runtime.backends.onnxrt import OrtCpuBackend
from attn_export.errors import BadInput
from attn_export.runtime.iospec import IOSpec


def external_model(directory: Path, location: str) -> Path:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    path = directory / "model.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(proto, str(path))
    return path


def test_external_data_beside_the_model_is_accepted(tmp_path: Path) -> None:
    check_external_data(external_model(tmp_path, "w.data"))


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_directory_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    directory = tmp_path / "model"
    directory.mkdir()
    path = external_model(directory, location)
    spec = IOSpec.for_model(4, 3)
    for backend in (OrtCpuBackend, OnnxRefBackend):
        with pytest.raises(BadInput, match="outside its directory"):
            with backend(path, spec):
                pass


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    directory = tmp_path / "model"
    directory.mkdir()
    path = external_model(directory, "w.data")
    (directory / "w.data").unlink()
    (directory / "w.data").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(BadInput, match="outside its directory"):
        check_external_data(path)


def test_missing_external_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        check_external_data(external_model(tmp_path, "nowhere.data"))
