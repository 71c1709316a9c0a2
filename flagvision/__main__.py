"""``python -m flagvision``: see :mod:`flagvision.cli.main`."""

import sys

from flagvision.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
