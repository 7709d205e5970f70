"""``attn-export bundle``: pack an artefact directory for a device into one ``.tar.gz``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DirArg, JsonOpt, console, print_json

NAME = "bundle"


class Target(str, Enum):
    cpu = "cpu"
    jetson = "jetson"
    triton = "triton"


def command(
    directory: DirArg = Path("artifacts"),
    out: Annotated[Path, typer.Option("--out", help="The bundle to write (FILE.tar.gz).", dir_okay=False)]
    = Path("bundle.tar.gz"),
    target: Annotated[Target, typer.Option(
        "--for", help="cpu: the ONNX variants; jetson: also the TensorRT engines (usually built on the device); "
                      "triton: a Triton model repository (model.onnx, and the stream graph with implicit state).")]
    = Target.cpu,
    jetpack: Annotated[Optional[str], typer.Option(
        "--target", metavar="JETPACK", help="--for jetson: the JetPack it runs (jetpack5, jetpack6, jetpack7); "
                                            "every file is checked against its TensorRT, the README's build "
                                            "commands are its own. Default: jetpack6.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Pack what a device needs: ONNX variants, engines, manifest, a README for the device, the runtime; or
    (--for triton) a Triton model repository of the verified graphs, with a README for its clients."""
    from ..runtime.bundle import pack

    result = pack(directory, out, target.value, jetpack)  # marks the work committed once the archive is written
    if json_out:
        print_json({"path": str(result.path), "for": result.target, "target": result.tensorrt_target,
                    "size_bytes": result.size_bytes, "files": result.files, "notes": result.notes})
        return
    artefacts = [n for n in result.files if not n.startswith("runtime/")]
    out_console = console(stderr=True)
    for note in result.notes:
        out_console.print(f"note: {note}")
    made_for = f"{result.target} ({result.tensorrt_target})" if result.tensorrt_target else result.target
    modules = len(result.files) - len(artefacts)
    runtime = f" and the runtime ({modules} modules)" if modules else ""
    out_console.print(f"bundled {len(artefacts)} files{runtime} for {made_for} -> {result.path} "
                      f"({result.size_bytes:,} bytes): "
                      + ", ".join(artefacts))
