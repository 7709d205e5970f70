"""``python -m attn_export.runtime``: the device's command line (``cli``)."""

import sys

from .cli import main

sys.exit(main())
