"""``python -m focal`` runs the ``focal`` command line."""

import sys

from ._cli import main

sys.exit(main())
