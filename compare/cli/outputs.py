"""Output paths of the subcommands, checked before any work starts.

An existing output is refused (one line, exit 2) unless ``--force`` is given; the extension,
the directory and its writability are checked first, so a run never computes for minutes
and then fails to write. Writes themselves are atomic (temporary name, then rename).
"""
import os

from sde.errors import CovsdeInputError

#: extensions matplotlib writes without extra packages (``--plot``).
FIGURE_EXTENSIONS = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif",
                     ".tiff", ".webp", ".pgf")
DATASET_EXTENSIONS = (".nc",)


def add_force(parser_or_group):
    """The ``--force`` flag of a subcommand that writes files."""
    parser_or_group.add_argument("--force", action="store_true",
                                 help="replace existing output files (refused without it)")


def check_new_file(path, flag, force, extensions):
    """Refuse ``path`` unless its extension is one of ``extensions``, its directory exists
    and is writable, it is not a directory, and it does not exist (or ``force``)."""
    from sde.io import check_output_path

    check_output_path(path, flag)
    ext = os.path.splitext(path)[1].lower()
    if ext not in extensions:
        raise CovsdeInputError(f"{flag}: {path} must end in {', '.join(extensions)}")
    if os.path.lexists(path) and not force:
        raise CovsdeInputError(f"{flag}: {path} exists (give --force to replace it)")


def check_out_dir(out_dir, flag, force, names=()):
    """Refuse ``out_dir`` unless it is a directory or can be created in an existing one
    (parents included), is writable, and holds none of ``names`` (or ``force``)."""
    from sde.io import check_writable_dir

    path = os.path.abspath(out_dir)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CovsdeInputError(f"{flag}: {existing} exists and is not a directory")
    check_writable_dir(existing, flag)
    present = [n for n in names if os.path.lexists(os.path.join(path, n))]
    if present and not force:
        shown = ", ".join(present[:3]) + (", …" if len(present) > 3 else "")
        raise CovsdeInputError(f"{flag}: {out_dir} already holds {shown} (give --force to "
                               f"replace them)")
