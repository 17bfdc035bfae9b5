"""The ``covsde`` console script: the parser (one module per subcommand) and :func:`main`.

Bad input prints one line ``covsde <cmd>: error: …`` on stderr and exits with code 2 (a flag
error names the subcommand too); no output file is left behind. Ctrl-C prints one line and
exits with code 130, however often it is pressed. ``covsde --help`` imports no numerical
package: each subcommand imports what it needs when it runs.
"""
import os
import signal
import sys

from sde.errors import CovsdeInputError

from .args import Parser
from .blowup import add_blowup
from .collapse_rate import add_collapse_rate
from .compare import add_compare
from .convergence import add_convergence
from .demo import add_demo
from .figures import add_figures
from .finite import add_finite
from .simulate import add_simulate
from .sweep import add_sweep

#: the subcommands, in ``--help`` order
SUBCOMMANDS = (add_simulate, add_demo, add_compare, add_finite, add_figures, add_sweep,
               add_blowup, add_collapse_rate, add_convergence)


def build_parser():
    """The ``covsde`` parser; ``parser.subcommands`` maps each name to its subparser."""
    p = Parser(prog="covsde", description="Covariance SDEs of shaped Transformers and the "
                                          "finite networks they describe.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in SUBCOMMANDS:
        add(sub)
    p.subcommands = dict(sub.choices)
    return p


class _Interrupts:
    """SIGINT while a command runs: the first raises KeyboardInterrupt (the command unwinds,
    removing its temporary files, and :func:`main` prints one line); a second one during that
    unwinding or the interpreter's shutdown is ignored (it would otherwise interrupt a
    finaliser and print a traceback); a third exits at once with code 130."""

    def __init__(self, command):
        self.command = command
        self.count = 0
        self.reported = False

    def report(self):
        if not self.reported:
            self.reported = True
            sys.stderr.write(f"covsde {self.command}: interrupted (no partial output "
                             f"written)\n")
            sys.stderr.flush()

    def __call__(self, signum, frame):
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        if self.count >= 3:
            self.report()
            os._exit(130)


def _install(handler):
    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: signals are not ours to handle
        return None


def main(argv=None):
    """Run one subcommand; returns the exit code. Bad input: one line on stderr, 2. Ctrl-C:
    one line ``covsde <cmd>: interrupted``, 130 (128 + SIGINT); outputs are written
    atomically (temporary name, then rename), so an interrupted run leaves no partial file."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    interrupts = _Interrupts(args.command)
    before = _install(interrupts)
    try:
        import matplotlib

        matplotlib.use("Agg")  # the CLI only writes files; library code never switches backends
        return args.func(args)
    except CovsdeInputError as exc:
        sys.stderr.write(f"covsde {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        interrupts.report()
        return 130
    except BrokenPipeError:  # e.g. `covsde compare ... | head`: stop quietly
        sys.stderr = open(os.devnull, "w")
        return 0
    except OSError as exc:  # the environment refused (disk full, permissions, ...)
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"covsde {args.command}: error: {exc.strerror or exc}{where}\n")
        return 2
    finally:
        if before is not None and not interrupts.count:
            _install(before)


def run():
    """The console script: :func:`main`, then exit; a Ctrl-C during the interpreter's
    shutdown is ignored (the command has finished or has already reported)."""
    code = main()
    _install(signal.SIG_IGN)
    sys.exit(code)
