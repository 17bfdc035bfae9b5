"""``covsde compare A.nc B.nc``: distances between two datasets, as a table or JSON."""
import argparse
import json
import math
import os
import sys
import warnings

from sde.errors import CovsdeInputError

from .args import Parser
from .defaults import DEFAULT_N_BOOT, MIN_N_BOOT, WARN_N_BOOT
from .outputs import FIGURE_EXTENSIONS, add_force, check_new_file


class _CompareParser(Parser):
    """The ``compare`` parser: the column legend (from :mod:`compare.distances`) is added to
    its help only when the help is shown, so that building the parser stays light."""

    def format_help(self):
        if self.epilog is None:
            from ..distances import legend_text

            self.epilog = ("columns (table, --json rows, CSV):\n" + legend_text(86)
                           + "\n\nThe table shows the median difference; --json has every "
                             "quantile.")
        return super().format_help()


def add_compare(sub):
    p = sub.add_parser(
        "compare", help="KS / W1 distances and quantile differences between two datasets",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare two covsde datasets statistic by statistic at their common "
                    "times: the KS statistic with its two-sample p-value, W1 with a "
                    "permutation p-value, the noise floor of each (the mean distance over "
                    "permutations of the pooled sample: its value when both sides have the "
                    "same law), and the differences of quantiles A − B with percentile-"
                    "bootstrap 95 % intervals (the only intervals reported: a distance near "
                    "zero has no honest bootstrap interval). One censoring rule on both sides: "
                    "a path counts at t if it is alive and max|V_ab| <= the SDE's blow-up "
                    "bound (1e4) at every saved time up to t. A one-path (ODE) dataset is "
                    "given with --ode, never as A or B.")
    p.__class__ = _CompareParser
    p.add_argument("a", help="first dataset (.nc), e.g. a finite-network sample")
    p.add_argument("b", help="second dataset (.nc), e.g. the SDE")
    p.add_argument("--stat", action="append",
                   help="corr:a,b | V:a,b | mineig | effrank | tokensim | consensus | "
                        "log-consensus "
                        "(repeatable; default corr:0,1)")
    p.add_argument("--time", action="append", type=float,
                   help="time to compare (repeatable; default: every common saved time)")
    p.add_argument("--ode", help="optional one-path ODE dataset: adds W1(A, point mass at "
                                 "the ODE value)")
    p.add_argument("--boot", type=int, default=DEFAULT_N_BOOT,
                   help=f"permutations and bootstrap resamples, >= {MIN_N_BOOT} (default "
                        f"%(default)s; a warning below {WARN_N_BOOT})")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations and "
                                                       "resamples (default %(default)s)")
    p.add_argument("--tail", action="append", type=float, metavar="K",
                   help="also compare P(sup over saved times s <= t of max_a V_aa(s) > K) with "
                        "Wilson intervals on both sides and a Newcombe interval of the "
                        "difference (repeatable, 0 < K < the bound, e.g. --tail 10 --tail 100)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of a "
                                                       "table (other messages go to stderr)")
    p.add_argument("--plot", help="write an overlay figure here (every --stat, histograms "
                                  "on shared bins, one panel per statistic and time; .png, "
                                  ".pdf, .svg, …)")
    add_force(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args):
    from sde.io import read_dataset
    from sde.simulate import as_int

    from ..distances import check_n_boot, distances

    if args.plot:
        check_new_file(args.plot, "--plot", args.force, FIGURE_EXTENSIONS)
    n_boot = check_n_boot(args.boot, "--boot")
    as_int("--seed", args.seed, 0)
    a = read_dataset(args.a)
    b = read_dataset(args.b)
    ode = read_dataset(args.ode) if args.ode else None
    for ds, path, side in ((a, args.a, "A"), (b, args.b, "B")):
        if ds.sizes["path"] < 2:
            raise CovsdeInputError(f"{side} = {path} has one path (a deterministic ODE run): it "
                                   f"is a point, not a distribution; give it with --ode")
    if ode is not None and ode.sizes["path"] != 1:
        raise CovsdeInputError(f"--ode {args.ode} has {ode.sizes['path']} paths; --ode takes a "
                               f"one-path (ODE) dataset")
    stats = args.stat or ["corr:0,1"]
    if args.time:
        _check_requested_times(a, b, args.time)
    with warnings.catch_warnings():  # printed below as one "warning:" line each
        warnings.simplefilter("ignore")
        df = distances(a, b, stats=stats, times=args.time, n_boot=n_boot, seed=args.seed,
                       point=ode, progress=None)
    tails = None
    if args.tail:
        from ..tails import tail_probabilities

        tails = tail_probabilities(a, b, args.tail, times=args.time, bound=df.attrs["bound"])
    info = sys.stderr if args.json else sys.stdout
    if args.json:
        doc = to_json_doc(df, args.a, args.b, args.ode)
        if tails is not None:
            doc["tails"] = json.loads(tails.to_json(orient="records", double_precision=15))
            doc["tail_notes"] = tails.attrs["notes"]
        print(json.dumps(doc, indent=1))
    else:
        print(format_table(df, args.a, args.b))
        if tails is not None:
            from ..tails import format_tail_table

            print("\n".join(format_tail_table(tails)))
    for note in df.attrs["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    if args.plot:
        from ..figures.style import save_figure
        from ..figures.overlay import compare_figure

        labels = {f"A: {os.path.basename(args.a)}": a, f"B: {os.path.basename(args.b)}": b}
        if ode is not None:
            labels[f"ODE: {os.path.basename(args.ode)}"] = ode
        fig = compare_figure(labels, stats, sorted(set(df["time"])))
        save_figure(fig, args.plot, "--plot")
        print(f"wrote {args.plot}", file=info)
    return 0


def _check_requested_times(a, b, times):
    from ..distances import common_times, nearest_times

    both = common_times(a, b)
    if not any(any(math.isclose(t, c, rel_tol=1e-9, abs_tol=0) or t == c for c in both)
               for t in times):
        parts = "; ".join(f"--time {t:g}: nearest common times "
                          + ", ".join(f"{x:g}" for x in nearest_times(both, t)) for t in times)
        raise CovsdeInputError(f"no --time is saved in both datasets ({parts})" if both else
                               "the datasets have no saved time in common")


def to_json_doc(df, a, b, ode=None):
    """The JSON document of ``covsde compare --json``: settings, legend, rows."""
    rows = json.loads(df.to_json(orient="records", double_precision=15))
    return {"a": a, "b": b, "ode": ode, "n_boot": df.attrs["n_boot"],
            "seed": df.attrs["seed"], "censoring": df.attrs["censoring"],
            "missing_times": df.attrs["missing_times"], "warnings": df.attrs["warnings"],
            "legend": _legend_dict(), "rows": rows}


def _legend_dict():
    from ..distances import LEGEND

    return dict(LEGEND)


def g3(x):
    """A number with 3 significant digits (small values stay visible: 1.2e-13, not 0.0000)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "nan" if x is None or math.isnan(x) else f"{x}"
    return f"{x:.3g}"


def format_table(df, name_a, name_b):
    """A fixed-width text table of the distance frame, with its legend."""
    import numpy as np

    from ..distances import nearest_times

    has_point = "w1_a_to_ode" in df
    head = ["stat", "t", "used A", "used B", "cens A", "cens B", "KS", "p(KS)", "KS floor",
            "W1", "W1 floor", "p(W1)", "median A", "median B", "A-B [95% CI]"]
    if has_point:
        head.append("W1(A,ODE)")
    rows = []
    for r in df.to_dict("records"):
        cells = [r["stat"], g3(r["time"]), str(r["n_used_a"]), str(r["n_used_b"]),
                 f"{100 * r['censored_a']:.3g}%", f"{100 * r['censored_b']:.3g}%"]
        if not np.isfinite(r.get("ks", np.nan)):
            cells += ["(fewer than 2 paths counted on one side)"]
        else:
            cells += [g3(r["ks"]), f"{r['ks_pvalue']:.2g}", g3(r["ks_noise_floor"]),
                      g3(r["w1"]), g3(r["w1_noise_floor"]), f"{r['w1_pvalue']:.2g}",
                      g3(r["q50_a"]), g3(r["q50_b"]),
                      f"{g3(r['q50_a_minus_b'])} [{g3(r['q50_a_minus_b_ci95_low'])}, "
                      f"{g3(r['q50_a_minus_b_ci95_high'])}]"]
            if has_point:
                cells.append(g3(r["w1_a_to_ode"]))
        if r["censor_warning"]:
            cells.append("WARNING: >1% censored")
        rows.append(cells)
    widths = [max(len(head[i]), *(len(c[i]) for c in rows if i < len(c)))
              for i in range(len(head))]
    lines = [f"A = {name_a}   B = {name_b}   (n_boot = {df.attrs['n_boot']}, "
             f"seed = {df.attrs['seed']})",
             f"censoring: {df.attrs['censoring']}",
             "  ".join(h.rjust(w) for h, w in zip(head, widths))]
    for c in rows:
        lines.append("  ".join(x.rjust(widths[i]) if i < len(widths) else x
                               for i, x in enumerate(c)))
    if df.attrs["missing_times"]:
        tb = sorted(set(df["time"]))
        lines.append("requested times with no partner (nearest compared): " + "; ".join(
            f"{t:g} (nearest {', '.join(f'{x:g}' for x in nearest_times(tb, t))})"
            for t in df.attrs["missing_times"]))
    lines.append("KS: Kolmogorov–Smirnov statistic, p(KS): its two-sample p-value; W1: "
                 "1-Wasserstein distance, p(W1): permutation p-value; floor: mean distance over "
                 "permutations (same-law level); median A, median B: each side's median, A-B: their "
                 "difference with a percentile-bootstrap 95 % interval; cens: censored "
                 "fraction. See --help.")
    return "\n".join(lines)
