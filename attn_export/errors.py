"""The exception tree. Every error the user can cause or meet carries the exit code DESIGN.md promises.

    AttnExportError            exit 1  (base; "the work failed" unless a subclass says otherwise)
    ├── WorkFailed             exit 1  training below the recipe's floor, a build that failed
    │   ├── ParityError        exit 1  a backend disagreed with the reference
    │   └── Busy               exit 1  another attn-export process is writing the same directory
    ├── BadInput               exit 2  bad usage or bad input
    │   ├── ConfigError        exit 2  a recipe or --set value that does not fit the schema
    │   ├── DataError          exit 2  a malformed or unsuitable data file
    │   └── MissingPrerequisite exit 2 a command run before the one that makes its input
    └── NotAvailable           exit 3  not possible on this machine (no GPU, no TensorRT, missing extra)

The CLI prints ``Error: <message>`` on one line and exits with ``exit_code``; ``--debug`` shows the traceback.
"""

from __future__ import annotations

__all__ = [
    "AttnExportError",
    "BadInput",
    "Busy",
    "ConfigError",
    "DataError",
    "MissingPrerequisite",
    "NotAvailable",
    "ParityError",
    "WorkFailed",
]


class AttnExportError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class WorkFailed(AttnExportError):
    """The command ran but its result is not acceptable (exit 1)."""

    exit_code = 1


class ParityError(WorkFailed):
    """A backend's outputs disagree with the reference beyond tolerance (exit 1)."""


class Busy(WorkFailed):
    """Another attn-export process holds the artefact directory's lock (exit 1: try again later)."""


class BadInput(AttnExportError):
    """Bad usage or bad input (exit 2)."""

    exit_code = 2


class ConfigError(BadInput):
    """A recipe file or ``--set`` override that does not fit the schema."""


class DataError(BadInput):
    """A data file that is malformed, or data that cannot be used as asked."""


class MissingPrerequisite(BadInput):
    """A command's input does not exist yet; the message names the command that makes it."""


class NotAvailable(AttnExportError):
    """Not possible on this machine: a missing package, GPU, or execution provider (exit 3)."""

    exit_code = 3
