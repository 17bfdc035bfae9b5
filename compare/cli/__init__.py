"""The ``covsde`` console script: :mod:`compare.cli.app` builds the parser and runs a
subcommand; :mod:`compare.cli.args` derives the shared flags (model, V0, run) from the model
classes; one module per subcommand adds its parser and its command.

Nothing is imported here, so that importing one of these modules (``compare.cli.compare``
from :mod:`compare.demo`) does not import the whole console script.
"""


def main(argv=None):
    """:func:`compare.cli.app.main`."""
    from .app import main as app_main

    return app_main(argv)


def build_parser():
    """:func:`compare.cli.app.build_parser`."""
    from .app import build_parser as app_build_parser

    return app_build_parser()


def run():
    """:func:`compare.cli.app.run`: the console script."""
    from .app import run as app_run

    return app_run()
