"""The ``attn-export`` command line: a thin layer over the library, one module per command.

Importing this package (and ``attn-export --help``) imports typer and rich only; each command imports
torch, onnxruntime or tensorrt inside its body, when it runs.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Sequence

import typer
from typer.exceptions import Abort, Exit, TyperException

from .. import __version__
from ..errors import AttnExportError, Interrupted, NotAvailable, given_twice, printable, unexpected
from ..runtime.interrupt import interruptible, message
from . import (
    bench,
    build,
    bundle,
    doctor,
    export,
    inspect,
    load,
    predict,
    quantize,
    report,
    run,
    train,
    unbundle,
    verify,
)
from .plain import plain

app = typer.Typer(
    name="attn-export",
    help="Export, quantise, build and verify attention-LSTM sequence models for edge devices.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
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


for module in (train, load, export, quantize, build, verify, bench, report, predict, bundle, unbundle, inspect,
               doctor, run):
    app.command(name=module.NAME)(module.command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; errors become one ``Error: ...`` line on stderr and DESIGN.md's exit code."""
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    debug = "--debug" in args
    if debug:  # a root option, taken anywhere on the line: `attn-export verify DIR --debug` too
        args = ["--debug", *(a for a in args if a != "--debug")]
    command = plain(typer.main.get_command(app))
    twice = _repeated(command, args)
    if twice is not None:
        typer.echo(f"Error: {printable(twice)}", err=True)
        return 2
    try:
        with interruptible():
            result = command.main(args=args, prog_name="attn-export", standalone_mode=False)
    except Interrupted as e:
        typer.echo(f"Error: {printable(message(e))}", err=True)
        return e.exit_code
    except Exit as e:
        return e.exit_code
    except TyperException as e:  # typer's own click: usage errors, bad parameters (exit 2)
        said = e.format_message().replace(": Value error, ", ": ")  # pydantic's tag (found by attacking)
        given = _given(args, e.param) if isinstance(e, typer.BadParameter) else None
        if given is not None and repr(given) not in said:  # typer's "Input should be a valid integer" names no value
            said = f"{said} (got {given!r})"
        ctx = getattr(e, "ctx", None)
        if (ctx is not None and ctx.command_path.endswith(" predict") and "unexpected extra argument" in said
                and not any(a == "--dir" or a.startswith("--dir=") for a in args)):
            # the device's command line takes DIR INPUT, and users type that here (found by attacking)
            said = f"{said.rstrip('.')}; expected attn-export predict --dir DIR INPUT (DIR is an option here)"
        elif ctx is not None and not re.search(r"\bexpected\b|Did you mean|Possible options", said):
            # click's "No such option: --bogus" said what was wrong, not what would work
            said = f"{said.rstrip('.')}; expected what {ctx.command_path} --help lists"
        typer.echo(f"Error: {printable(said)}", err=True)
        return e.exit_code
    except Abort:
        typer.echo("Error: aborted", err=True)
        return 130
    except AttnExportError as e:
        if debug:
            traceback.print_exc()
        typer.echo(f"Error: {printable(str(e))}", err=True)
        return e.exit_code
    except (MemoryError, ImportError, OSError, RuntimeError) as e:  # memory, or a file system error: one line
        error = unexpected(e)
        if error is not None:
            if debug:
                traceback.print_exc()
            typer.echo(f"Error: {printable(str(error))}", err=True)
            return error.exit_code
        if not isinstance(e, ImportError):  # a RuntimeError that is not memory: a bug, its traceback the report
            raise
        hint = _install_hint(e.name)
        if hint is None or debug:
            raise
        typer.echo(f"Error: this command needs {e.name}, which is not installed; expected {hint}", err=True)
        return NotAvailable.exit_code
    return result if isinstance(result, int) else 0


def _given(args: Sequence[str], param: object) -> str | None:
    """The text given on the command line to the option ``param`` (its last use), None if it was not found."""
    given = None
    for k, arg in enumerate(args):
        for opt in getattr(param, "opts", ()):
            if arg == opt and k + 1 < len(args):
                given = args[k + 1]
            elif arg.startswith(f"{opt}="):
                given = arg[len(opt) + 1:]
    return given


def _repeated(group: typer.core.TyperGroup, args: Sequence[str]) -> str | None:
    """An option of one value given twice to a command (``errors.given_twice``: click keeps the last one without
    a word; found by attacking, ``run --recipe a.toml --recipe b.toml`` ran b). Options that take many
    (``--set``) and flags may repeat; help and version are answered first, as click answers them."""
    if {"-h", "--help", "--version"} & set(args):
        return None
    words = [a for a in args if not a.startswith("-")]
    sub = group.commands.get(words[0]) if words else None
    if sub is None:
        return None
    takes_value = [p for p in sub.params if isinstance(p, typer.core.TyperOption) and not (p.is_flag or p.count)]
    values: dict[str, list[str]] = {}
    k = 0
    while k < len(args) and args[k] != "--":
        arg = args[k]
        for option, opt in ((o, opt) for o in takes_value for opt in o.opts + o.secondary_opts):
            given = (args[k + 1] if arg == opt and k + 1 < len(args) else
                     arg[len(opt) + 1:] if arg.startswith(f"{opt}=") and opt.startswith("--") else None)
            if given is not None:  # the value of any option, of one value or many, is skipped as click reads it
                if not option.multiple:
                    values.setdefault(option.opts[0], []).append(given)
                k += arg == opt
                break
        k += 1
    twice = next(((name, given) for name, given in values.items() if len(given) > 1), None)
    return None if twice is None else str(given_twice(*twice))


def _install_hint(module: str | None) -> str | None:
    """How to install a module attn-export declares (a dependency or an extra's), from the installed
    package's own metadata; None for anything else (a bug, not a missing install: the traceback stays)."""
    from importlib import metadata

    top = (module or "").split(".")[0].replace("_", "-").lower()
    try:
        requirements = metadata.requires("attn-export") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        found = re.match(r"\s*([A-Za-z0-9._-]+)[^;]*(?:;.*extra\s*==\s*['\"]([\w-]+)['\"])?", requirement)
        if found and found.group(1).replace("_", "-").lower() == top:
            extra = found.group(2)
            return f"pip install 'attn-export[{extra}]'" if extra else f"pip install {found.group(1)}"
    return None


