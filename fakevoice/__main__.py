"""``python -m fakevoice``: the same as the ``fakevoice`` command."""

import sys

from fakevoice.cli import main

sys.exit(main())
