"""``python -m compare.cli``: the ``covsde`` console script."""
from .app import run

if __name__ == "__main__":  # pragma: no cover
    run()
