"""The ``attn-export`` command line: a thin layer over the library, one module per command.

Importing this package (and ``attn-export --help``) imports typer and rich only; each command imports
torch, onnxruntime or tensorrt inside its body, when it runs.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import typer
from typer.exceptions import Abort, Exit, TyperException

from .. import __version__
from ..errors import AttnExportError
from . import bench, build, bundle, doctor, export, inspect, load, predict, quantize, run, train, unbundle, verify

app = typer.Typer(
    name="attn-export",
    help="Export, quantise, build and verify attention-LSTM sequence models for edge devices.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"attn-export {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error."),
) -> None:
    """Export, quantise, build and verify attention-LSTM sequence models for edge devices."""


for module in (train, load, export, quantize, build, verify, bench, predict, bundle, unbundle, inspect, doctor, run):
    app.command(name=module.NAME)(module.command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; errors become one ``Error: ...`` line on stderr and DESIGN.md's exit code."""
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="attn-export", standalone_mode=False)
    except Exit as e:
        return e.exit_code
    except TyperException as e:  # typer's own click: usage errors, bad parameters (exit 2)
        typer.echo(f"Error: {e.format_message()}", err=True)
        return e.exit_code
    except Abort:
        typer.echo("Error: aborted", err=True)
        return 130
    except AttnExportError as e:
        if debug:
            traceback.print_exc()
        typer.echo(f"Error: {e}", err=True)
        return e.exit_code
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
