"""``python -m focal_cli``: the same as the ``focal`` command."""

import sys

from . import main

sys.exit(main())
