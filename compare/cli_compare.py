"""``covsde compare A.nc B.nc``: distances between two datasets, as a table or JSON."""
import json
import os

import numpy as np

from sde.io import check_output_path, read_dataset
from sde.simulate import as_int

from .distances import distances


def add_compare(sub):
    p = sub.add_parser(
        "compare", help="KS / W1 distances between two datasets (e.g. finite vs SDE)",
        description="Compare two covsde datasets statistic by statistic at their common "
                    "times: KS (statistic, p-value) and W1 from scipy.stats, bootstrap 95 %% "
                    "intervals, the noise floor (the same distance between two samples of the "
                    "same sizes from B), quantiles, alive counts and dead fractions. Statistics "
                    "use the paths alive at each time; a warning marks > 1 %% dead.")
    p.add_argument("a", help="first dataset (.nc), e.g. a finite-network sample")
    p.add_argument("b", help="second dataset (.nc), e.g. the SDE; the noise floor uses it")
    p.add_argument("--stat", action="append", help="corr:a,b | V:a,b | mineig | effrank "
                                                   "(repeatable; default corr:0,1)")
    p.add_argument("--time", action="append", type=float,
                   help="time to compare (repeatable; default: every common saved time)")
    p.add_argument("--ode", help="optional ODE dataset: adds W1(A, point mass at the ODE)")
    p.add_argument("--boot", type=int, default=200, help="bootstrap draws (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", help="write an overlay figure (histogram + KDE per source) here")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args):
    as_int("--boot", args.boot, 1)
    as_int("--seed", args.seed, 0)
    if args.plot:
        check_output_path(args.plot, "--plot")
    a = read_dataset(args.a)
    b = read_dataset(args.b)
    ode = read_dataset(args.ode) if args.ode else None
    stats = args.stat or ["corr:0,1"]
    df = distances(a, b, stats=stats, times=args.time, n_boot=args.boot, seed=args.seed,
                   point=ode)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "censoring": df.attrs["censoring"],
                          "missing_times": df.attrs["missing_times"],
                          "rows": json.loads(df.to_json(orient="records"))}, indent=1))
    else:
        print(format_table(df, args.a, args.b))
    if args.plot:
        from .overlay import plot_overlay

        times = sorted(set(df["time"]))
        times = times if len(times) <= 4 else [times[len(times) * k // 4] for k in (1, 2, 3)] \
            + [times[-1]]
        labels = {os.path.basename(args.a): a, os.path.basename(args.b): b}
        if ode is not None:
            labels["ODE"] = ode
        tmp = args.plot + ".tmp.png"
        try:
            plot_overlay(labels, stats[0], times, tmp)
            os.replace(tmp, args.plot)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        print(f"wrote {args.plot}")
    return 0


def format_table(df, name_a, name_b):
    """A fixed-width text table of the distance frame."""
    lines = [f"A = {name_a}   B = {name_b}   ({df.attrs['censoring']})"]
    head = (f"{'stat':>10} {'time':>7} {'alive A':>8} {'alive B':>8} {'dead A':>7} {'dead B':>7}"
            f" {'KS':>7} {'KS 95% CI':>15} {'floor':>7} {'p':>9} {'W1':>8} {'W1 95% CI':>17}"
            f" {'floor':>8}")
    has_point = "w1_point" in df
    if has_point:
        head += f" {'W1(A,ODE)':>9}"
    lines.append(head)
    for r in df.to_dict("records"):
        if not np.isfinite(r.get("ks", np.nan)):
            lines.append(f"{r['stat']:>10} {r['time']:7.4g}  (no alive paths on one side)")
            continue
        line = (f"{r['stat']:>10} {r['time']:7.4g} {r['n_alive_a']:8d} {r['n_alive_b']:8d}"
                f" {100 * r['dead_fraction_a']:6.2f}% {100 * r['dead_fraction_b']:6.2f}%"
                f" {r['ks']:7.4f} [{r['ks_ci_low']:.4f},{r['ks_ci_high']:.4f}] {r['ks_floor']:7.4f}"
                f" {r['ks_pvalue']:9.2e} {r['w1']:8.4f} [{r['w1_ci_low']:.4f},{r['w1_ci_high']:.4f}]"
                f" {r['w1_floor']:8.4f}")
        if has_point:
            line += f" {r['w1_point']:9.4f}"
        if r["dead_warning"]:
            line += "  WARNING: >1% dead"
        lines.append(line)
    if df.attrs["missing_times"]:
        lines.append("requested times with no partner: "
                     + ", ".join(f"{t:g}" for t in df.attrs["missing_times"]))
    return "\n".join(lines)
