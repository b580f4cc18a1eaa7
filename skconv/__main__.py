"""``python -m skconv``: the one-command demo (see :mod:`skconv._demo`).

``python -m skconv --help`` lists the options.
"""

import sys

from ._demo import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
