"""``python -m refnets`` works like the ``refnets`` command."""

import sys

from .cli import main

sys.exit(main())
