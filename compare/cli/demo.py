"""``covsde demo``: the main job (:mod:`compare.demo`), all outputs under ``--out``."""
from .outputs import add_force, check_out_dir


def add_demo(sub):
    p = sub.add_parser("demo", help="the main job: finite networks vs SDE vs ODE across d/n",
                       description="The default shaped block (m = 3, ρ0 = 0.2, γ = 1/sqrt 8, "
                                   "τ0 = 1, c₊ = 0, c₋ = −1) as an SDE and its ODE (dt = 0.01, "
                                   "10⁴ paths) and as reduced finite networks (n = 200, 2000 "
                                   "paths), compared at d/n ∈ {0.25, 0.5, 0.75, 1}: datasets, "
                                   "an overlay figure per ratio, a trajectories figure and a "
                                   "distance table (KS, W1, noise floors, W1 to the ODE), "
                                   "all under --out. About 1–2 min on 2 cores.")
    p.add_argument("--out", default="runs/demo", help="output directory (created, with its "
                                                      "parents; default %(default)s)")
    p.add_argument("--paths", type=int, default=10_000, help="SDE paths (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed >= 0 (default %(default)s)")
    add_force(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args):
    from sde.runs import as_int

    from .. import demo

    as_int("--paths", args.paths, 1)
    as_int("--seed", args.seed, 0)
    # --out and any missing parents are created; the nearest existing one must be a directory
    check_out_dir(args.out, "--out", args.force, demo.OUTPUTS)
    for line in demo.run_demo(args.out, n_paths=args.paths, seed=args.seed):
        print(line)
    return 0
