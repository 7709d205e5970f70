"""Help text the way Click prints it: ``DIR``, ``FILE``, ``N`` as metavars, required arguments bare.

typer 0.29 prints its own notation (``{checkpoint}`` for a required argument, ``<path>``, ``<list[str]>``,
``<int range>``) and takes no per-app switch back to Click's; a metavar given to an argument is printed
twice. ``plain(command)`` walks the built Click command once: every parameter without a metavar gets one
from its type, and arguments print as Click's do (``Usage: attn-export load CHECKPOINT [DIR]``).
"""

from __future__ import annotations

from typer import _click
from typer.core import TyperArgument, TyperGroup, TyperOption

__all__ = ["plain"]

_BY_TYPE = {"<dir>": "DIR", "<file>": "FILE", "<path>": "PATH", "<int>": "N", "<int range>": "N",
            "<float>": "X", "<float range>": "X", "<str>": "TEXT"}


class PlainArgument(TyperArgument):
    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"

    def _rich_display_name(self) -> str:
        return self.display_name_raw

    def display_type_rich(self, ctx: _click.Context) -> str | None:
        return None


def _metavar(param: TyperArgument | TyperOption, ctx: _click.Context) -> str:
    shown = param.display_type(ctx)
    if isinstance(param, TyperArgument) and shown != "<dir>":
        return (param.name or "").upper()  # an argument is named for what it is: CHECKPOINT, ARCHIVE
    if shown in _BY_TYPE:
        return _BY_TYPE[shown]
    if "|" in shown:  # a choice: the choices, as Click shows them
        return "[" + shown.strip("<>") + "]"
    return shown.strip("<>").upper()


def plain(group: TyperGroup) -> TyperGroup:
    """Give every parameter of every command a plain metavar; print arguments Click's way."""
    for command in group.commands.values():
        ctx = _click.Context(command)
        for param in command.params:
            if isinstance(param, TyperOption) and (param.is_flag or param.count):
                continue
            if param.metavar is None:
                param.metavar = _metavar(param, ctx)
            if isinstance(param, TyperArgument):
                param.__class__ = PlainArgument
    return group
