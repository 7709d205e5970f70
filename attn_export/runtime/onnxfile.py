"""What the device needs to know about an ONNX file before a runtime opens it, read without onnx.

    graph = parse_graph(data, "model.onnx")   # inputs, outputs, metadata, initializers, nodes

JetPack devices have numpy, TensorRT and perhaps onnxruntime, not onnx; yet an ONNX file must be checked
before ONNX Runtime or TensorRT reads it: its inputs and outputs against ``model.json`` (the store), any
external data (a file outside the bytes the manifest hashed: refused, ``refuse_external_data``), one
construct that crashes ONNX Runtime 1.31/1.32 outright (``refuse_known_crash``), and every node against
the TensorRT parser of a target (``trt.readiness``: operators, attributes, opsets, constant axes and zero
points). So this module walks the protobuf wire format for the few fields those checks read: hand-written
because the only library that reads ONNX is onnx itself. Field numbers are onnx.proto's (IR version 10); unknown fields are skipped, so
later IR versions read too.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

from ..errors import BadInput

__all__ = ["DTYPES", "Constant", "Graph", "Node", "ValueInfo", "parse_graph", "refuse_external_data",
           "refuse_known_crash"]

FLOAT16 = 10  # TensorProto.DataType
# TensorProto.DataType -> numpy's name, for the element types an attn-export graph's inputs and outputs use
DTYPES = {1: "float32", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}
EXTERNAL = 1  # TensorProto.DataLocation
_MODEL_OPSET, _MODEL_GRAPH, _MODEL_METADATA, _MODEL_FUNCTIONS = 8, 7, 14, 25
_GRAPH_INPUT, _GRAPH_OUTPUT = 11, 12
_GRAPH = {1: "node", 5: "initializer", 15: "sparse_initializer"}
_FUNCTION_NAME, _FUNCTION_NODE = 1, 7
_NODE = {1: "input", 2: "output", 3: "name", 4: "op_type", 5: "attribute", 7: "domain"}
_ATTRIBUTE = {1: "name", 3: "i", 4: "s", 5: "t", 8: "ints", 9: "strings"}
_ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = (5, 10), (6, 11)
_ATTRIBUTE_SPARSE = (22, 23)
_SPARSE_TENSORS = (1, 2)
_TENSOR = {1: "dims", 2: "data_type", 5: "int32_data", 7: "int64_data", 8: "name", 9: "raw_data",
           13: "external_data", 14: "data_location"}
# integer element types whose values a small constant keeps (zero points, axes): numpy's name
_INTEGERS = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64"}
MAX_CONSTANT_VALUES = 64  # a constant's values are kept up to this many elements (axes, zero points)
MAX_DIMS = 64  # dimensions read of a tensor or an input: more is no model's (onnx's checker refuses far fewer)
MAX_ATTRIBUTE_VALUES = 4096  # an attribute's ints or strings read: the checks read axes, activations, a few dozen
# a length-delimited field: a view of the file's bytes, never a copy (found by attacking: a 20 MB constant
# under 30 nested Loop bodies took 2 GB, each level copying its whole body)
_BYTES = (bytes, memoryview)
_Data = Union[bytes, memoryview]


def _varint(data: _Data, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: _Data) -> Iterator[Tuple[int, object]]:
    """(field number, int for a varint | a memoryview for a length-delimited field | a float for a 32-bit
    one: onnx.proto's unpacked repeated floats, an attribute's ``floats``); 64-bit fields and groups (proto2's,
    which protobuf's own parsers skip in an unknown field) skipped."""
    data = memoryview(data)
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, data[pos:pos + size]
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            if pos + 4 > len(data):
                raise ValueError("truncated field")
            yield number, struct.unpack_from("<f", data, pos)[0]
            pos += 4
        elif wire == 3:
            pos = _skip_group(data, pos, number)
        elif wire == 4:
            raise ValueError(f"the end of group {number}, which no field started")
        else:
            raise ValueError(f"wire type {wire} is not protobuf's")


def _skip_group(data: memoryview, pos: int, number: int) -> int:
    """The position past the group ``number`` that starts at ``pos`` (its fields, nested groups, its end)."""
    while True:
        key, pos = _varint(data, pos)
        inner, wire = key >> 3, key & 7
        if wire == 4:
            if inner != number:
                raise ValueError(f"group {number} ended as group {inner}")
            return pos
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 3:
            pos = _skip_group(data, pos, inner)
        else:
            raise ValueError(f"wire type {wire} is not protobuf's")
        if pos > len(data):
            raise ValueError("truncated group")


@dataclass(frozen=True)
class Constant:
    """A tensor known when the graph is read (an initializer, a Constant node's value, a tensor attribute):
    its element type, for a small integer tensor its values (None otherwise), its dimensions (up to
    ``MAX_DIMS``) and its ``raw_data`` where the file holds one: a view of the file's bytes, not a copy."""

    data_type: int
    values: Optional[Tuple[int, ...]] = None
    dims: Tuple[int, ...] = ()
    raw: Optional[memoryview] = field(default=None, compare=False, hash=False, repr=False)


Attribute = Union[int, str, Tuple[int, ...], Tuple[str, ...], Tuple[float, ...], Constant, None]


@dataclass(frozen=True)
class Node:
    op_type: str
    domain: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    name: str = ""
    # the attributes the checks read: ints, strings, their lists, tensors; other kinds are None
    attributes: Dict[str, Attribute] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """How a finding names the node: its name (or first output) and operator."""
        return f"{self.name or (self.outputs[0] if self.outputs else '?')} ({self.op_type})"


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: its name, element type (a TensorProto.DataType; 0 when not a tensor) and
    dimensions (an int, a symbolic name, or None when unknown)."""

    name: str
    elem_type: int
    dims: Tuple[Union[int, str, None], ...]

    @property
    def dtype(self) -> str:
        return DTYPES.get(self.elem_type, f"type {self.elem_type}")


@dataclass
class Graph:
    """The parts of a model the device checks: the main graph's inputs and outputs, the metadata, and every
    graph's nodes (subgraphs and functions included)."""

    nodes: List[Node] = field(default_factory=list)
    initializer_types: Dict[str, int] = field(default_factory=dict)
    constants: Dict[str, Constant] = field(default_factory=dict)  # initializers and Constant outputs by name
    opsets: Dict[str, int] = field(default_factory=dict)  # domain ("" for ONNX's own) -> version
    external: List[Tuple[str, str]] = field(default_factory=list)  # (tensor name, location)
    inputs: List[ValueInfo] = field(default_factory=list)
    outputs: List[ValueInfo] = field(default_factory=list)
    metadata: Dict[str, str] = field(default_factory=dict)
    # the names of the model's own functions (TensorRT's 10.x importer finds one by its name alone)
    functions: Set[str] = field(default_factory=set)

    @property
    def stores_float16(self) -> bool:
        return FLOAT16 in self.initializer_types.values()


def _ints(value: object, limit: int) -> List[int]:
    """A repeated integer field: one varint, or a packed run of them, read up to ``limit`` + 1 values (found by
    attacking: 30 M packed dims took 39 s and 3.7 GB as Python ints)."""
    if isinstance(value, int):
        return [value]
    if not isinstance(value, _BYTES):  # a 32-bit field where integers belong (found by review: an assert)
        raise ValueError("a fixed-width field where a list of integers belongs")
    out: List[int] = []
    pos = 0
    while pos < len(value) and len(out) <= limit:
        number, pos = _varint(value, pos)
        out.append(number)
    return out


def _signed(number: int) -> int:
    return number - (1 << 64) if number >= 1 << 63 else number


def _tensor(data: _Data, graph: Graph, initializer: bool) -> Tuple[str, Constant]:
    name, dtype, location, external = "", 0, 0, ""
    dims: List[int] = []
    typed: List[object] = []  # int32_data / int64_data fields, read only for a small constant
    raw: Optional[memoryview] = None
    for number, value in _fields(data):
        if number == 8 and isinstance(value, _BYTES):
            name = _text(value)
        elif number == 2 and isinstance(value, int):
            dtype = value
        elif number == 1 and len(dims) <= MAX_DIMS:
            dims += _ints(value, MAX_DIMS)
        elif number in (5, 7) and len(typed) <= MAX_CONSTANT_VALUES:  # unpacked, one field a value (review)
            typed.append(value)
        elif number == 9 and isinstance(value, memoryview):
            raw = value
        elif number == 14 and isinstance(value, int):
            location = value
        elif number == 13 and isinstance(value, _BYTES):
            entry = dict(_fields(value))
            key, place = entry.get(1), entry.get(2)
            if key == b"location" and isinstance(place, _BYTES):
                external = _text(place)
    if initializer:
        graph.initializer_types[name] = dtype
    if location == EXTERNAL:
        graph.external.append((name, external))
    count = 1
    for d in dims:
        count *= d
    values = None
    if dtype in _INTEGERS and location != EXTERNAL and len(dims) <= MAX_DIMS and count <= MAX_CONSTANT_VALUES:
        if raw is not None:
            import numpy as np

            element = np.dtype(_INTEGERS[dtype]).newbyteorder("<")
            # raw_data of another length than its dims say is no constant onnx's checker passes: not read (found
            # by review: 50 MB of raw_data under dims [1] became 50 M Python ints)
            if len(raw) == count * element.itemsize:
                values = tuple(int(v) for v in np.frombuffer(raw, dtype=element))
        else:
            values = tuple(itertools.islice((_signed(v) for field_value in typed
                                             for v in _ints(field_value, MAX_CONSTANT_VALUES)), MAX_CONSTANT_VALUES + 1))
    constant = Constant(dtype, values, tuple(dims[:MAX_DIMS]), raw if location != EXTERNAL else None)
    if initializer:
        graph.constants[name] = constant
    return name, constant


def _attribute(data: _Data, graph: Graph) -> Tuple[str, Attribute]:
    """One AttributeProto: its name and the value the checks read; tensors and subgraphs inside it are
    walked too (their nodes and external data belong to the model)."""
    name, value = "", None  # type: str, Attribute
    ints: List[int] = []
    strings: List[str] = []
    floats: List[float] = []
    for number, field_value in _fields(data):
        if number == 1:
            name = _text(field_value)
        elif number == 7 and len(floats) <= MAX_ATTRIBUTE_VALUES:  # floats: one by one, or packed
            floats += ([field_value] if isinstance(field_value, float) else
                       list(struct.unpack_from(f"<{min(len(field_value) // 4, MAX_ATTRIBUTE_VALUES + 1)}f", field_value))
                       if isinstance(field_value, _BYTES) else [])
        elif number == 3 and isinstance(field_value, int):
            value = _signed(field_value)
        elif number == 4:
            value = _text(field_value)
        elif number == 8 and len(ints) <= MAX_ATTRIBUTE_VALUES:
            ints += [_signed(v) for v in _ints(field_value, MAX_ATTRIBUTE_VALUES)]
        elif number == 9 and len(strings) <= MAX_ATTRIBUTE_VALUES:
            strings.append(_text(field_value))
        elif number in _ATTRIBUTE_TENSORS and isinstance(field_value, _BYTES):
            _, constant = _tensor(field_value, graph, False)
            if number == 5:
                value = constant
        elif number in _ATTRIBUTE_GRAPHS and isinstance(field_value, _BYTES):
            _graph(field_value, graph)
        elif number in _ATTRIBUTE_SPARSE and isinstance(field_value, _BYTES):
            _sparse(field_value, graph)
    if ints:
        value = tuple(ints)
    elif strings:
        value = tuple(strings)
    elif floats:
        value = tuple(floats)
    return name, value


def _node(data: _Data, graph: Graph) -> None:
    inputs: List[str] = []
    outputs: List[str] = []
    attributes: Dict[str, Attribute] = {}
    op_type = domain = name = ""
    for number, value in _fields(data):
        if not isinstance(value, _BYTES):
            continue
        if number == 1:
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 3:
            name = _text(value)
        elif number == 4:
            op_type = _text(value)
        elif number == 7:
            domain = _text(value)
        elif number == 5:
            key, attribute = _attribute(value, graph)
            attributes[key] = attribute
    value_attribute = attributes.get("value")
    if op_type == "Constant" and domain in ("", "ai.onnx") and outputs and isinstance(value_attribute, Constant):
        graph.constants[outputs[0]] = value_attribute
    graph.nodes.append(Node(op_type, domain, tuple(inputs), tuple(outputs), name, attributes))


def _sparse(data: _Data, graph: Graph) -> None:
    for number, value in _fields(data):
        if number in _SPARSE_TENSORS and isinstance(value, _BYTES):
            _tensor(value, graph, False)


def _text(value: object) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, _BYTES) else ""


def _value_info(data: _Data) -> ValueInfo:
    """ValueInfoProto: name (1), type (2: TypeProto, whose tensor_type is 1: elem_type 1, shape 2 of dims 1,
    each dim_value 1 or dim_param 2)."""
    name, elem_type, dims = "", 0, []  # type: str, int, List[Union[int, str, None]]
    for number, value in _fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2 and isinstance(value, _BYTES):
            for t_number, t_value in _fields(value):
                if t_number != 1 or not isinstance(t_value, _BYTES):
                    continue
                for k, v in _fields(t_value):
                    if k == 1 and isinstance(v, int):
                        elem_type = v
                    elif k == 2 and isinstance(v, _BYTES):
                        for d_number, dim in _fields(v):
                            if len(dims) > MAX_DIMS:  # no model's: the checks see a wrong rank
                                break
                            if d_number == 1 and isinstance(dim, _BYTES):
                                parts = dict(_fields(dim))
                                size, param = parts.get(1), parts.get(2)
                                # int64: -1 is how other exporters write a dynamic axis (found by attacking:
                                # it read as 2^64 - 1)
                                dims.append(_signed(size) if isinstance(size, int) else _text(param) or None)
    return ValueInfo(name, elem_type, tuple(dims))


def _graph(data: _Data, graph: Graph, main: bool = False) -> None:
    for number, value in _fields(data):
        if not isinstance(value, _BYTES):
            continue
        if number == 1:
            _node(value, graph)
        elif number == 5:
            _tensor(value, graph, True)
        elif number == 15:
            _sparse(value, graph)
        elif main and number == _GRAPH_INPUT:
            graph.inputs.append(_value_info(value))
        elif main and number == _GRAPH_OUTPUT:
            graph.outputs.append(_value_info(value))


def parse_graph(data: bytes, where: object) -> Graph:
    """Parse a model's bytes (not its external data); BadInput naming ``where`` when they are not ONNX. A
    graph's initializers that are inputs too are not inputs a caller feeds: they are left out."""
    try:
        graph = Graph()
        for number, value in _fields(data):
            if number == _MODEL_GRAPH and isinstance(value, _BYTES):
                _graph(value, graph, main=True)
            elif number == _MODEL_OPSET and isinstance(value, _BYTES):
                entry = dict(_fields(value))
                version = entry.get(2)
                graph.opsets[_text(entry.get(1))] = version if isinstance(version, int) else 0
            elif number == _MODEL_METADATA and isinstance(value, _BYTES):
                entry = dict(_fields(value))
                graph.metadata[_text(entry.get(1))] = _text(entry.get(2))
            elif number == _MODEL_FUNCTIONS and isinstance(value, _BYTES):
                for f_number, f_value in _fields(value):
                    if f_number == _FUNCTION_NODE and isinstance(f_value, _BYTES):
                        _node(f_value, graph)
                    elif f_number == _FUNCTION_NAME:
                        graph.functions.add(_text(f_value))
    except (ValueError, RecursionError) as e:
        raise BadInput(f"{where} is not a readable ONNX model: {e}") from None
    if not graph.nodes:
        raise BadInput(f"{where} is not a readable ONNX model: it holds no graph")
    graph.inputs = [v for v in graph.inputs if v.name not in graph.initializer_types]
    return graph


def refuse_external_data(graph: Graph, where: object) -> None:
    """Refuse an ONNX model that keeps tensors in other files: those bytes are outside the sha256 the
    manifest records (a changed weights file would change the model unseen) and outside a bundle. Every
    graph attn-export writes holds its weights inside the file."""
    if graph.external:
        name, location = graph.external[0]
        more = f" and {len(graph.external) - 1} more tensor(s)" if len(graph.external) > 1 else ""
        raise BadInput(f"{where} keeps tensor '{name}'{more} in the external file '{location}', outside the bytes "
                       "attn-export hashes and ships; expected every weight inside the .onnx file (onnx.load the "
                       "model with its external data and onnx.save it as one file, or re-run attn-export export)")


def refuse_known_crash(graph: Graph, where: object) -> None:
    """Refuse, with one line, a graph that crashes ONNX Runtime 1.31/1.32 at its default optimisation level
    (a segmentation fault takes the whole process; nothing is raised): an FP16 MatMul by a weight whose
    other input is a Transpose, as in FP16 graphs attn-export wrote before its portable form."""
    produced = {o: n.op_type for n in graph.nodes for o in n.outputs}
    for node in graph.nodes:
        if (node.op_type == "MatMul" and len(node.inputs) == 2 and produced.get(node.inputs[0]) == "Transpose"
                and graph.initializer_types.get(node.inputs[1]) == FLOAT16):
            raise BadInput(f"{where} holds an FP16 MatMul of a Transpose by a constant weight, which crashes ONNX "
                           "Runtime 1.31/1.32 at its default optimisation level; re-make it with attn-export "
                           "quantize --fp16")
