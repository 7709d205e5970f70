"""``python -m attn_export`` is the ``attn-export`` command."""

from .cli import entry

entry()
