"""``python -m train``: the same as the ``ddsp-train`` console script."""

import sys

from train.cli import main

sys.exit(main())
