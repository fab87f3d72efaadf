"""``python -m spal``: the same as the ``spal`` command."""

import sys

from spal.cli import main

if __name__ == "__main__":
    sys.exit(main())
