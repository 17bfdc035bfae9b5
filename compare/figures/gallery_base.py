"""The gallery's machinery: datasets saved under ``out_dir/data`` and reused, figures staged
and published together, captions. The figures themselves are the methods of the mixins in
:mod:`~compare.figures.gallery_block`, :mod:`~compare.figures.gallery_sweeps` and
:mod:`~compare.figures.gallery` (see there).
"""
import json
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from sde.errors import CovsdeInputError
from sde.io import check_writable_dir, read_dataset, write_dataset
from sde.simulate import simulate

from ..demo import DEMO_MODEL, DEMO_V0, staging_dir
from .gallery_sizes import FIGURES, SIZES, derived_seed
from .style import save_figure


def _fmt(x):
    return f"{x:g}".replace("-", "−")


def _nb(text):
    """Keep ``name = value`` together when a title is wrapped (non-breaking spaces)."""
    return text.replace(" = ", "\u00a0=\u00a0")


def _fine_save_every(n, ratios, per_unit=20):
    """Largest divisor of the gcd of the ratio layers that saves >= ``per_unit`` times per
    unit of t (so every ratio is a saved time and bands are smooth)."""
    g = math.gcd(*(int(round(r * n)) for r in ratios))
    return max(d for d in range(1, g + 1) if g % d == 0 and d <= max(1, n // per_unit))


def block_text():
    g = DEMO_MODEL["gamma"]
    gt = "1/√8" if abs(g - 8 ** -0.5) < 1e-12 else _fmt(g)
    return _nb(f"shaped block, m = {DEMO_V0['m']}, ρ0 = {_fmt(DEMO_V0['rho0'])}, γ = {gt}, "
            f"τ0 = {_fmt(DEMO_MODEL['tau0'])}, c₊ = {_fmt(DEMO_MODEL['c_plus'])}, "
            f"c₋ = {_fmt(DEMO_MODEL['c_minus'])}")


class GalleryBase:
    """Datasets (made when missing or different), the staging directory, captions."""

    def __init__(self, out_dir, size="quick", seed=0, log=print):
        if size not in SIZES:
            raise CovsdeInputError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise CovsdeInputError(f"seed must be an integer >= 0, got {seed!r}")
        self.out_dir = out_dir
        self.data_dir = os.path.join(out_dir, "data")
        self.size = size
        self.cfg = SIZES[size]
        self.seed = int(seed)
        self.log = log
        self.captions = {}
        self.written = []
        self.generated = []  # data files (re)generated in this run
        self.reused = []

    def _dataset(self, name, request, make):
        """The saved dataset ``data/name.nc`` if it matches ``request``, else make and save."""
        path = os.path.join(self.data_dir, name + ".nc")
        key = json.dumps(request, sort_keys=True)
        if os.path.exists(path):
            try:
                ds = read_dataset(path)
            except CovsdeInputError:
                ds = None
            if ds is not None and _matches(ds, request, key):
                self.log(f"  reuse   data/{name}.nc ({ds.attrs['n_paths']} paths)")
                self.reused.append(path)
                return ds
            self.log(f"  data/{name}.nc does not match the requested parameters: regenerating")
        self.log(f"  making  data/{name}.nc ({request['n_paths']} paths) ...")
        t0 = time.perf_counter()
        ds = make()
        ds.attrs["gallery_request"] = key
        write_dataset(ds, path)
        self.generated.append(path)
        self.log(f"  wrote   data/{name}.nc ({ds.attrs['n_paths']} paths, "
                 f"{ds.attrs['n_dead']} dead; {time.perf_counter() - t0:.1f} s)")
        return ds

    def _sde(self, name, model, V0, t_end, dt, n_paths, seed_k, save_every, method="euler"):
        seed = derived_seed(self.seed, seed_k)
        request = dict(kind=f"sde-{method}", **model.params(), V0=V0.tolist(), t_end=t_end,
                       dt=dt, n_paths=1 if method == "ode" else n_paths, seed=seed,
                       save_every=save_every)
        return self._dataset(name, request, lambda: simulate(
            model, V0, t_end=t_end, dt=dt, n_paths=n_paths, seed=seed, save_every=save_every,
            method=method, progress=self.size == "full"))

    def _finite(self, name, model, V0, width, t_end, n_paths, seed_k, save_every):
        from finite import sample

        seed = derived_seed(self.seed, seed_k)
        request = dict(kind="finite-reduced", **model.params(), V0=V0.tolist(), width=width,
                       t_end=t_end, n_paths=n_paths, seed=seed, save_every=save_every)
        return self._dataset(name, request, lambda: sample(
            model, V0, width=width, n_paths=n_paths, seed=seed, t_end=t_end, sampler="reduced",
            save_every=save_every, progress=self.size == "full"))

    def _out(self, name):
        """Where an output file is written during the run (the staging directory)."""
        return os.path.join(self.stage, name)

    def _save(self, fig, stem, caption):
        """Save a Figure as PNG and PDF (into the staging directory); record the caption."""
        for ext in ("png", "pdf"):
            save_figure(fig, self._out(f"{stem}.{ext}"), "--out", close=False)
            self.written.append(os.path.join(self.out_dir, f"{stem}.{ext}"))
        plt.close(fig)
        self.captions[stem] = f"{caption} (Size {self.size}.)"
        self.log(f"  figure  {stem}.png / .pdf")

    def _csv(self, table, name):
        table.to_csv(self._out(name), index=False)
        self.written.append(os.path.join(self.out_dir, name))

    def write_captions(self):
        """captions.md: this run's captions, plus those of figures not redrawn (--only)."""
        old = read_captions(os.path.join(self.out_dir, "captions.md"))
        caps = {stem: cap for stem, cap in old.items() if stem not in self.captions}
        caps.update(self.captions)
        order = [s for s in STEMS if s in caps] + [s for s in caps if s not in STEMS]
        lines = ["# covsde figures", "",
                 "Each caption describes the last run that drew its figure (`--only` redraws "
                 "some and keeps the others' captions); sizes and seeds are in the captions.",
                 ""]
        for stem in order:
            lines += [f"## {stem}.png / {stem}.pdf", "", caps[stem], ""]
        with open(self._out("captions.md"), "w") as fh:
            fh.write("\n".join(lines))
        self.written.append(os.path.join(self.out_dir, "captions.md"))

    def run(self, only=FIGURES):
        """Draw the figures into a staging directory and move them into ``out_dir`` only
        when all are done (an interrupted run leaves no half-written set; the datasets under
        data/ are written one by one, atomically, and reused by the next run)."""
        with staging_dir(self.out_dir) as self.stage:
            os.makedirs(self.data_dir, exist_ok=True)
            for name in only:
                t0 = time.perf_counter()
                self.log(f"[{name}]")
                getattr(self, name)()
                self.log(f"[{name}] done in {time.perf_counter() - t0:.1f} s")
            self.write_captions()
        return self.written


def check_out_dir(out_dir, name="--out"):
    """Raise unless ``out_dir`` is an existing directory or can be created in an existing one."""
    path = os.path.abspath(out_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CovsdeInputError(f"{name}: {out_dir} exists and is not a directory")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise CovsdeInputError(f"{name}: parent directory does not exist: {parent}")
    data = os.path.join(path, "data")
    if os.path.exists(data) and not os.path.isdir(data):
        raise CovsdeInputError(f"{name}: {data} exists and is not a directory")
    check_writable_dir(path if os.path.isdir(path) else parent, name)


def read_captions(path):
    """stem → caption from an existing captions.md (empty if none)."""
    if not os.path.exists(path):
        return {}
    out, stem, buf = {}, None, []
    with open(path) as fh:
        for line in fh.read().splitlines():
            if line.startswith("## "):
                if stem:
                    out[stem] = "\n".join(buf).strip()
                stem, buf = line[3:].split(".")[0], []
            elif stem:
                buf.append(line)
    if stem:
        out[stem] = "\n".join(buf).strip()
    return out


STEMS = ("distribution_rho01", "distribution_V00", "trajectories", "convergence", "weak_error",
         "stability",
         "rank_collapse", "masks_layernorm", "similarity_removal", "espa_kernel",
         "doubly_exponential", "collapse_rate_diameter", "ln_equilibria", "masked_positions",
         "masked_stability")


def _pct(x):
    """A fraction as a percentage: two decimals below 1 %, one above."""
    return f"{100 * x:.2f}" if 100 * x < 1 else f"{100 * x:.1f}"


def _dead_at(ds, t):
    i = int(np.argmin(np.abs(ds["time"].values - t)))
    alive = np.isfinite(ds["V"].values[:, i, 0, 0])
    return 1.0 - alive.mean()


def _matches(ds, request, key):
    """Does a saved dataset hold what ``request`` asks for (gallery key and native attrs)?"""
    a = ds.attrs
    if a.get("gallery_request") != key:
        return False
    if not str(a.get("source", "")).startswith(request["kind"]):
        return False
    for k, v in request.items():
        if k in ("kind", "save_every", "V0"):
            continue
        if k not in a:
            return False
        if isinstance(v, str):
            if str(a[k]) != v:
                return False
        elif not math.isclose(float(a[k]), float(v), rel_tol=1e-12, abs_tol=0.0):
            return False
    return True
