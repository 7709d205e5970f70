"""``attn-export unbundle``: unpack a bundle safely (no absolute paths, ``..``, links or oversized members)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DirArg, console

NAME = "unbundle"


def command(
    archive: Annotated[Path, typer.Argument(help="A bundle made by attn-export bundle.", dir_okay=False)],
    directory: DirArg = Path("artifacts"),
) -> None:
    """Unpack FILE.tar.gz into DIR (new or empty), refusing unsafe members before anything is written."""
    from ..runtime.bundle import unpack

    target = unpack(archive, directory)  # marks the work committed at its last rename
    console(stderr=True).print(f"unpacked {archive} -> {target}")
