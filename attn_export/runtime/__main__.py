"""``python -m attn_export.runtime``: the device's command line (``cli``)."""

from ..errors import run_command_line

run_command_line("attn_export.runtime.cli")
