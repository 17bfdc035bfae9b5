"""``python -m compare.cli``: the ``covsde`` console script."""
import sys

from .app import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
