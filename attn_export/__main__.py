"""``python -m attn_export`` is the ``attn-export`` command (``entry``, the console script, too)."""

from .errors import run_command_line


def entry() -> None:
    run_command_line("attn_export.cli")


if __name__ == "__main__":
    entry()
