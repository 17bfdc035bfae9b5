"""The one exception type for bad input.

Validators raise :class:`CovsdeInputError` with a one-line message that names the
argument and the constraint it broke; the CLI prints that line and exits with code 2.
"""


class CovsdeInputError(ValueError):
    """Bad input: the message names the argument and the constraint.

    ``param``: the parameter name the message starts with, when there is one, so that the
    CLI can show the flag that sets it (``compare.cli.args.flag``).
    """

    def __init__(self, message, param=None):
        super().__init__(message)
        self.param = param
