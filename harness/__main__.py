"""``python -m harness`` runs the ``ckpt-harness`` command line."""

import sys

from harness.cli import main

sys.exit(main())
