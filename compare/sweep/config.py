"""Sweep configs (TOML): parsing, validation of every cell, the grid of cells and their seeds.

A config names the model (any parameter may be a list: a grid axis), the initial covariance
(``tokens``, ``rho0``; either may be a list), the grid axes ``ratio`` (d/n: each cell runs to
``t = ratio`` and is compared there) and ``width`` (finite networks), the sources (``sde``,
optional ``ode``, optional ``finite``), the statistics and a root seed. :data:`EXAMPLE_CONFIG`
is the commented example (``covsde sweep --example``).

Every error is a :class:`sde.errors.CovsdeInputError` whose one-line message starts with the
config key it concerns (``model.gamma``, ``grid.width``, ``sources.finite``, …); all of them
are raised by :func:`load_config` before any work starts (every cell's model is built and
every cell's finite network and time grid are checked).

Seeds: a cell's *key* is the dict of all its parameter values (arch, model parameters,
tokens, rho0, ratio, width). Its seeds come from
``SeedSequence([root_seed, int(sha256(canonical JSON of the key))])``, spawned into one child
per source and one for the bootstrap, so they depend on the cell's values only — never on its
position in the grid, the worker count or the order of completion.

Length: the config grammar (every key with its check and its one-line error), the cells
and their seeds form one specification; the commented example config is part of it.
"""
import hashlib
import itertools
import json
import math
import numbers
import tomllib

import numpy as np

from sde.errors import CovsdeInputError
from sde.models import MODELS, model_from_params
from sde.simulate import as_int, as_seed, check_memory, time_grid

from ..cli.args import arch_parameters
from ..statistics import parse_stat

EXAMPLE_CONFIG = """\
# covsde sweep config (TOML). Run:  covsde sweep THIS.toml --out STORE [--workers N]
# Every cell of the grid (the product of all list-valued entries below) simulates the SDE,
# samples the finite network and compares them at t = d/n = ratio.

seed = 7                        # root seed; each cell's seeds derive from it and the cell's values
stats = ["corr:0,1", "V:0,0"]   # corr:a,b | V:a,b | mineig | effrank

[model]
arch = "block"                  # attention | block | mlp | mlp-res (one arch per sweep)
gamma = 0.3536                  # any model parameter may be a list: a grid axis
tau0 = 1.0
c_plus = 0.0
c_minus = -1.0
# heads = 1                     # attention, block
# activation = "relu"           # mlp: relu | tanh (with a = ...)

[initial]                       # V0: unit diagonal, off-diagonal rho0 (either may be a list)
tokens = 3
rho0 = 0.2

[grid]
ratio = [0.25, 0.5]             # d/n: each cell runs to t = ratio and is compared there
width = [32, 64]                # finite widths n (ratio * n must be a whole number of layers)

[sources.sde]                   # the reference: Euler-Maruyama
paths = 4000
dt = 0.01                       # every ratio must be a whole number of dt steps
# save_every = 5                # save every k-th step (default: only t = 0 and t = ratio)
# share = ["ratio", "width"]    # one SDE sample shared by the cells that differ only along
#                               # these axes (stored once under STORE/shared; with "ratio" it
#                               # runs to the largest ratio, saved at every ratio)

[sources.finite]                # finite networks (needs grid.width)
sampler = "reduced"             # reduced | literal
paths = 2000
# key_width = 8                 # attention, block (default width/heads)
# save_every = 4                # default: only layer 0 and the last layer
# share = ["ratio"]             # one finite sample per width, to the largest ratio, saved at
#                               # every ratio and shared by the cells of that width

# [sources.ode]                 # optional: the drift-only ODE; adds w1_a_to_ode = W1(finite, δ_ODE)
# dt = 0.01                     # default: sources.sde.dt

# [sources.blowup]              # optional: the SDE's own P(tau <= T), T = ratio, converged in dt
# paths = 2000                  # paths per step size (sde.blowup.blowup_probability)
# dt0 = 0.05                    # first step; halved on coupled runs until, at 2 halvings in
#                               # a row, the bias left at dt, (P(2dt) - P(dt)) / (2^0.5 - 1),
#                               # is resolved inside +-max(atol, rtol * P(dt)) (below)
# method = "spd"                # spd | euler
# max_halvings = 6
# rtol = 0.1                    # relative tolerance on that bias
# atol = 0.001                  # absolute tolerance on that bias
# A blow-up-only sweep (stability map over gamma x tau0) needs no sde, stats or width.

# [compare]
# n_boot = 50                   # bootstrap draws per distance (default 50)
# quantiles = [0.1, 0.25, 0.5, 0.75, 0.9]
# boot_replicates = true        # keep the n_boot bootstrap replicates of KS and W1 (ks_boot,
#                               # w1_boot) for the convergence slope's interval
"""

TOP_KEYS = ("seed", "stats", "model", "initial", "grid", "sources", "compare")
INITIAL_KEYS = ("tokens", "rho0")
GRID_KEYS = ("ratio", "width")
SOURCE_KEYS = {"sde": ("paths", "dt", "save_every", "share"),
               "finite": ("sampler", "paths", "key_width", "save_every", "share"),
               "ode": ("dt", "save_every"),
               "blowup": ("paths", "dt0", "method", "max_halvings", "rtol", "atol")}
COMPARE_KEYS = ("n_boot", "quantiles", "boot_replicates")
#: axes a source's sample may be shared across (``sources.<name>.share``).
SHAREABLE = {"sde": ("ratio", "width"), "finite": ("ratio",)}
DEFAULT_N_BOOT = 50
DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
#: integer-valued parameters (everything else numeric is a float, activation a string).
INT_PARAMS = ("heads", "tokens", "width")
#: bytes allowed for one source's V array in one cell.
CELL_MEMORY_LIMIT = 4 * 2 ** 30


def _unknown(table, allowed, where):
    for k in table:
        if k not in allowed:
            name = f"{where}.{k}" if where else k
            raise CovsdeInputError(f"{name}: unknown key (allowed here: {', '.join(allowed)})")


def _table(cfg, key, where=""):
    name = f"{where}.{key}" if where else key
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CovsdeInputError(f"{name}: expected a table [{name}], got {value!r}")
    return value


def _number(name, value, integer=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CovsdeInputError(f"{name}: expected a number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise CovsdeInputError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise CovsdeInputError(f"{name}: expected a finite number, got {value!r}")
    return value


def _scalar(name, value, param):
    if param == "activation":
        if not isinstance(value, str):
            raise CovsdeInputError(f"{name}: expected a string, got {value!r}")
        return value
    return _number(name, value, integer=param in INT_PARAMS)


def _axis(name, value, param):
    """A parameter value or list of values → (tuple of normalised values, is_axis)."""
    if isinstance(value, list):
        if not value:
            raise CovsdeInputError(f"{name}: empty grid (give at least one value)")
        vals = tuple(_scalar(f"{name}[{i}]", v, param) for i, v in enumerate(value))
        for i, v in enumerate(vals):
            if v in vals[:i]:
                raise CovsdeInputError(f"{name}: duplicate value {v!r}")
        return vals, True
    if isinstance(value, dict):
        raise CovsdeInputError(f"{name}: expected a value or a list of values, got a table")
    return (_scalar(name, value, param),), False


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CovsdeInputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    try:
        return as_int(name, value, minimum)
    except CovsdeInputError as exc:
        raise CovsdeInputError(str(exc).replace(f"{name} must", f"{name}: must", 1)) from None


def parse_config(cfg):
    """Validate a config dict (as read from TOML) and return it normalised.

    The normalised config is a plain dict (JSON-able, canonical types: ints for counts,
    widths, heads and tokens, floats for the rest): its canonical JSON identifies the sweep.
    """
    if not isinstance(cfg, dict):
        raise CovsdeInputError("config: expected a TOML table")
    _unknown(cfg, TOP_KEYS, "")
    for key in ("seed", "model", "initial", "grid", "sources"):
        if key not in cfg:
            raise CovsdeInputError(f"{key}: missing (see covsde sweep --example)")
    sources_raw = cfg["sources"] if isinstance(cfg["sources"], dict) else {}
    if "stats" not in cfg and "sde" in sources_raw:
        raise CovsdeInputError("stats: missing (see covsde sweep --example)")
    if isinstance(cfg["seed"], bool) or not isinstance(cfg["seed"], int):
        raise CovsdeInputError(f"seed: expected an integer >= 0, got {cfg['seed']!r}")
    try:
        seed = as_seed(cfg["seed"])
    except CovsdeInputError as exc:
        raise CovsdeInputError(f"seed: {exc}") from None
    stats = cfg.get("stats", [])
    if isinstance(stats, str):
        stats = [stats]
    if "sde" not in sources_raw and stats == []:
        pass  # a blow-up-only sweep compares no statistic
    elif not isinstance(stats, list) or not stats or not all(isinstance(s, str)
                                                             for s in stats):
        raise CovsdeInputError(f"stats: expected a non-empty list of statistic names, "
                               f"got {cfg['stats']!r}")
    blowup_only = "blowup" in sources_raw and not {"sde", "finite", "ode"} & set(sources_raw)
    if blowup_only and stats:
        raise CovsdeInputError("stats: statistics need an [sources.sde] table (a blow-up-only "
                               "sweep compares no statistic)")
    if len(set(stats)) != len(stats):
        raise CovsdeInputError("stats: duplicate statistic")

    model = _table(cfg, "model")
    if "arch" not in model:
        raise CovsdeInputError("model.arch: missing (one of " + ", ".join(sorted(MODELS)) + ")")
    arch = model["arch"]
    with_sde = sorted(a for a, cls in MODELS.items() if cls.has_limit)
    if not isinstance(arch, str) or arch not in with_sde:
        raise CovsdeInputError(f"model.arch: must be one of {', '.join(with_sde)} "
                               f"(an arch with a covariance SDE; one arch per sweep), "
                               f"got {arch!r}")
    required, optional = arch_parameters(arch)
    allowed = ("arch",) + tuple(sorted(required | optional))
    _unknown(model, allowed, "model")
    for k in sorted(required):
        if k not in model:
            raise CovsdeInputError(f"model.{k}: missing (required for arch = {arch!r})")
    params, axes = {}, {}
    for k, v in model.items():
        if k == "arch":
            continue
        vals, is_axis = _axis(f"model.{k}", v, k)
        params[k] = list(vals) if is_axis else vals[0]
        if is_axis:
            axes[k] = ("model", vals)

    initial = _table(cfg, "initial")
    _unknown(initial, INITIAL_KEYS, "initial")
    init = {}
    for k in INITIAL_KEYS:
        if k not in initial:
            raise CovsdeInputError(f"initial.{k}: missing")
        vals, is_axis = _axis(f"initial.{k}", initial[k], k)
        init[k] = list(vals) if is_axis else vals[0]
        if is_axis:
            axes[k] = ("initial", vals)

    sources = _table(cfg, "sources")
    _unknown(sources, tuple(SOURCE_KEYS), "sources")
    src = {}
    for name, keys in SOURCE_KEYS.items():
        table = _table(sources, name, "sources")
        if table is None:
            continue
        _unknown(table, keys, f"sources.{name}")
        src[name] = dict(table)
    if "sde" not in src and ("blowup" not in src or "finite" in src or "ode" in src):
        raise CovsdeInputError("sources.sde: missing (the SDE is the reference every cell "
                               "is compared with; give [sources.sde] with paths and dt)")
    if "sde" in src:
        _parse_sde(src["sde"])
    if "blowup" in src:
        _parse_blowup(src["blowup"])
    sde_src = src.get("sde", {})
    if "finite" in src:
        fin = src["finite"]
        if "paths" not in fin:
            raise CovsdeInputError("sources.finite.paths: missing")
        fin["paths"] = _positive_int("sources.finite.paths", fin["paths"])
        fin.setdefault("sampler", "reduced")
        if fin["sampler"] not in ("reduced", "literal"):
            raise CovsdeInputError(f"sources.finite.sampler: must be reduced or literal, "
                                   f"got {fin['sampler']!r}")
        if "key_width" in fin:
            fin["key_width"] = _positive_int("sources.finite.key_width", fin["key_width"])
    if "ode" in src:
        ode = src["ode"]
        ode["dt"] = _number("sources.ode.dt", ode.get("dt", sde_src["dt"]))
        if ode["dt"] <= 0:
            raise CovsdeInputError(f"sources.ode.dt: must be > 0, got {ode['dt']!r}")
    for name, table in src.items():
        if "save_every" in table:
            table["save_every"] = _positive_int(f"sources.{name}.save_every",
                                                table["save_every"])

    grid = _table(cfg, "grid")
    _unknown(grid, GRID_KEYS, "grid")
    if "ratio" not in grid:
        raise CovsdeInputError("grid.ratio: missing (the d/n values, e.g. ratio = [0.25, 0.5])")
    ratio_vals, _ = _axis("grid.ratio", grid["ratio"] if isinstance(grid["ratio"], list)
                          else [grid["ratio"]], "ratio")
    for r in ratio_vals:
        if r <= 0:
            raise CovsdeInputError(f"grid.ratio: every d/n must be > 0, got {r!r}")
    g = {"ratio": list(ratio_vals)}
    if "finite" in src:
        if "width" not in grid:
            raise CovsdeInputError("grid.width: missing (sources.finite needs the widths)")
        width_vals, _ = _axis("grid.width", grid["width"] if isinstance(grid["width"], list)
                              else [grid["width"]], "width")
        for w in width_vals:
            if w < 1:
                raise CovsdeInputError(f"grid.width: every width must be >= 1, got {w!r}")
        g["width"] = list(width_vals)
    elif "width" in grid:
        raise CovsdeInputError("grid.width: widths need a [sources.finite] table")
    if "width" in src.get("sde", {}).get("share", []) and "width" not in g:
        raise CovsdeInputError("sources.sde.share: the grid has no width axis to share across")
    if "finite" in src:
        _parse_share("finite", src["finite"])
    for name in ("sde", "finite"):
        if "ratio" in src.get(name, {}).get("share", []) and "save_every" in src[name]:
            raise CovsdeInputError(f"sources.{name}.save_every: not with share = [\"ratio\"] "
                                   f"(the shared sample is saved at every ratio)")

    compare = _table(cfg, "compare") or {}
    _unknown(compare, COMPARE_KEYS, "compare")
    from ..distances import check_n_boot

    n_boot = check_n_boot(compare.get("n_boot", DEFAULT_N_BOOT), "compare.n_boot")
    qs = compare.get("quantiles", list(DEFAULT_QUANTILES))
    if not isinstance(qs, list) or not qs:
        raise CovsdeInputError(f"compare.quantiles: expected a non-empty list, got {qs!r}")
    qs = [_number(f"compare.quantiles[{i}]", q) for i, q in enumerate(qs)]
    if not all(0 <= q <= 1 for q in qs):
        raise CovsdeInputError(f"compare.quantiles: every quantile must be in [0, 1], got {qs}")

    cmp = {"n_boot": n_boot, "quantiles": qs}
    if "boot_replicates" in compare:
        if not isinstance(compare["boot_replicates"], bool):
            raise CovsdeInputError(f"compare.boot_replicates: expected true or false, got "
                                   f"{compare['boot_replicates']!r}")
        if compare["boot_replicates"] and "finite" not in src:
            raise CovsdeInputError("compare.boot_replicates: needs a [sources.finite] table")
        if compare["boot_replicates"]:  # false = the default, kept out of the config hash
            cmp["boot_replicates"] = True
    out = {"seed": seed, "stats": list(stats), "model": {"arch": arch, **params},
           "initial": init, "grid": g, "sources": src, "compare": cmp}
    # axis order: ratio, width, then the list-valued model / initial parameters in config order
    out["axes"] = ["ratio"] + (["width"] if "width" in g else []) + list(axes)
    cells(out)  # validates every cell
    return out


def _parse_sde(sde_src):
    for k in ("paths", "dt"):
        if k not in sde_src:
            raise CovsdeInputError(f"sources.sde.{k}: missing")
    sde_src["paths"] = _positive_int("sources.sde.paths", sde_src["paths"])
    sde_src["dt"] = _number("sources.sde.dt", sde_src["dt"])
    if sde_src["dt"] <= 0:
        raise CovsdeInputError(f"sources.sde.dt: must be > 0, got {sde_src['dt']!r}")
    _parse_share("sde", sde_src)


def _parse_share(name, table):
    if "share" not in table:
        return
    share = table["share"]
    if isinstance(share, str):
        share = [share]
    if not isinstance(share, list) or not all(a in SHAREABLE[name] for a in share) or len(
            set(share)) != len(share):
        raise CovsdeInputError(f"sources.{name}.share: expected a list of axes among "
                               f"{', '.join(SHAREABLE[name])}, got {table['share']!r}")
    if share:
        table["share"] = sorted(share)
    else:
        del table["share"]


def _parse_blowup(b):
    from sde.blowup import (BLOWUP_METHODS, DEFAULT_ATOL, DEFAULT_MAX_HALVINGS, DEFAULT_RTOL,
                            check_tolerances)

    for k in ("paths", "dt0"):
        if k not in b:
            raise CovsdeInputError(f"sources.blowup.{k}: missing")
    b["paths"] = _positive_int("sources.blowup.paths", b["paths"])
    b["dt0"] = _number("sources.blowup.dt0", b["dt0"])
    if b["dt0"] <= 0:
        raise CovsdeInputError(f"sources.blowup.dt0: must be > 0, got {b['dt0']!r}")
    b.setdefault("method", "spd")
    if b["method"] not in BLOWUP_METHODS:
        raise CovsdeInputError(f"sources.blowup.method: must be one of "
                               f"{', '.join(BLOWUP_METHODS)}, got {b['method']!r}")
    b["max_halvings"] = _positive_int("sources.blowup.max_halvings",
                                      b.get("max_halvings", DEFAULT_MAX_HALVINGS))
    if b["max_halvings"] > 20:
        raise CovsdeInputError(f"sources.blowup.max_halvings: must be at most 20, got "
                               f"{b['max_halvings']}")
    b["rtol"] = _number("sources.blowup.rtol", b.get("rtol", DEFAULT_RTOL))
    b["atol"] = _number("sources.blowup.atol", b.get("atol", DEFAULT_ATOL))
    try:
        check_tolerances(b["rtol"], b["atol"])
    except CovsdeInputError as e:
        raise CovsdeInputError(f"sources.blowup.{e}") from None


def load_config(path):
    """Read and validate the TOML config at ``path``; return the normalised config."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise CovsdeInputError(f"config: file not found: {path}") from None
    except IsADirectoryError:
        raise CovsdeInputError(f"config: {path} is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CovsdeInputError(f"config: {path} is not valid TOML ({exc})") from None
    return parse_config(raw)


def canonical_json(obj):
    """Canonical JSON (sorted keys, no spaces): the identity of a config or cell key."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config):
    """sha256 (hex) of the normalised config's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def axis_values(config):
    """dict axis name → tuple of its values, in the sweep's axis order."""
    out = {}
    for name in config["axes"]:
        if name in config["grid"]:
            out[name] = tuple(config["grid"][name])
        elif name in config["model"]:
            out[name] = tuple(config["model"][name])
        else:
            out[name] = tuple(config["initial"][name])
    return out


#: the seeds of a cell, in spawn order (a new name is appended, so earlier ones never change).
SEED_NAMES = ("sde", "finite", "ode", "boot", "blowup", "sde_boot")


def cell_seeds(root_seed, key, names=SEED_NAMES[:4]):
    """Seeds of one cell from the root seed and its key (dict of all parameter values).

    Returns dict name → int in [0, 2**63 − 1] for ``names`` (default ``sde``, ``finite``,
    ``ode``, ``boot``; also ``blowup``, ``sde_boot``): the children of
    ``SeedSequence([root_seed, int(sha256(canonical_json(key)))])`` in :data:`SEED_NAMES`
    order.
    """
    digest = hashlib.sha256(canonical_json(key).encode()).digest()
    ss = np.random.SeedSequence([int(root_seed), int.from_bytes(digest, "big")])
    return {n: int(c.generate_state(1, np.uint64)[0] >> np.uint64(1))
            for n, c in zip(SEED_NAMES, ss.spawn(len(SEED_NAMES))) if n in names}


def _seeds(config, key):
    """A cell's seeds: :func:`cell_seeds` of its key; with ``sources.<name>.share``, that
    source's seed comes from the key without the shared axes (and ``sde_boot``, the seed of
    the SDE's bootstrap resamples, from the SDE's), so every cell that differs only along
    them has the same sample."""
    src = config["sources"]
    names = (list(SEED_NAMES[:4]) if "sde" in src else []) + (
        ["blowup"] if "blowup" in src else [])
    boot_reps = config["compare"].get("boot_replicates", False)
    seeds = cell_seeds(config["seed"], key, names)
    for name in ("sde", "finite"):
        share = src.get(name, {}).get("share", [])
        if share:
            seeds[name] = cell_seeds(config["seed"], _shared_key(key, share), (name,))[name]
    if boot_reps:
        skey = _shared_key(key, src["sde"].get("share", []))
        seeds["sde_boot"] = cell_seeds(config["seed"], skey, ("sde_boot",))["sde_boot"]
    return seeds


def _shared_key(key, share):
    return {k: v for k, v in key.items() if k not in share}


def _shared_samples(config, specs):
    """For each cell, its shared samples: source → dict(file, t_end, save_every, seed).

    The cells that differ only along a source's ``share`` axes get one sample of it, run to
    the largest ratio among them and saved at each of their ratios (``save_every`` = the gcd
    of their step (SDE: ratio / dt) or layer (finite: ratio · width) counts), stored once as
    ``shared/<source>_<hash>.nc``."""
    src = config["sources"]
    for name in ("sde", "finite"):
        share = src.get(name, {}).get("share", [])
        if not share:
            continue
        groups = {}
        for spec in specs:
            groups.setdefault(canonical_json(_shared_key(spec["key"], share)), []).append(spec)
        for skey, group in groups.items():
            ratios = sorted({g["ratio"] for g in group})
            if name == "sde":
                steps = [int(round(r / src["sde"]["dt"])) for r in ratios]
            else:
                steps = [int(round(r * group[0]["width"])) for r in ratios]
            t_end = max(ratios)
            every = src[name].get("save_every", math.gcd(*steps))
            ident = canonical_json([name, skey, src[name], t_end, every,
                                    group[0]["seeds"][name]])
            digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
            for spec in group:
                spec.setdefault("shared", {})[name] = {
                    "file": f"shared/{name}_{digest}.nc", "t_end": t_end,
                    "save_every": every, "seed": spec["seeds"][name],
                    "depth": int(round(t_end * spec["width"])) if name == "finite" else None}


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def cells(config, validate=True):
    """Every cell of the grid, validated: a list of plain dicts (picklable specs).

    Each spec has ``id`` (file stem), ``axes`` (axis name → value), ``key`` (all parameter
    values), ``seeds`` (:func:`cell_seeds`) and what the worker needs (model params, tokens,
    rho0, ratio, width, sources, stats, compare settings). With ``validate`` (default),
    raises :class:`CovsdeInputError` naming the config key if any cell is invalid: every
    model is built, every time grid and finite network checked.
    """
    axes = axis_values(config)
    model_fixed = {k: v for k, v in config["model"].items() if k not in axes}
    init_fixed = {k: v for k, v in config["initial"].items() if k not in axes}
    src = config["sources"]
    out = []
    checked_models, checked_v0 = {}, {}
    for combo in itertools.product(*axes.values()):
        at = dict(zip(axes, combo))
        params = {**model_fixed, **{k: at[k] for k in at if k in config["model"]}}
        init = {**init_fixed, **{k: at[k] for k in at if k in config["initial"]}}
        where = ", ".join(f"{k} = {_fmt(v)}" for k, v in at.items())
        mkey = canonical_json(params)
        if validate and mkey not in checked_models:
            try:
                checked_models[mkey] = model_from_params(params)
            except CovsdeInputError as exc:
                bad = _blame(exc, params, axes)
                raise CovsdeInputError(f"{bad}: {exc} (cell {where})") from None
        ikey = (init["tokens"], init["rho0"])
        if validate and ikey not in checked_v0:
            from sde.initial import equicorrelated
            try:
                checked_v0[ikey] = equicorrelated(init["tokens"], init["rho0"])
            except CovsdeInputError as exc:
                bad = "initial.tokens" if str(exc).startswith("tokens") else "initial.rho0"
                raise CovsdeInputError(f"{bad}: {exc} (cell {where})") from None
            for s in config["stats"]:
                try:
                    parse_stat(s, init["tokens"])
                except CovsdeInputError as exc:
                    raise CovsdeInputError(f"stats: {exc} (cell {where})") from None
        ratio = at["ratio"]
        if validate:
            _check_cell(config, at, checked_models[mkey], checked_v0[ikey], init["tokens"],
                        where)
        key = {"arch": config["model"]["arch"], **params, **init, "ratio": ratio}
        if "width" in at:
            key["width"] = at["width"]
        digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()
        stem = "_".join(f"{k}{_fmt(v)}" for k, v in at.items())
        out.append({
            "id": f"{stem}_{digest[:10]}",
            "axes": at, "key": key, "seeds": _seeds(config, key),
            "params": {"arch": config["model"]["arch"], **params}, "initial": init,
            "ratio": ratio, "width": at.get("width"), "sources": src,
            "stats": config["stats"], "compare": config["compare"],
        })
    _shared_samples(config, out)
    return out


def _check_cell(config, at, model, V0, m, where):
    src = config["sources"]
    ratio = at["ratio"]
    if "sde" in src:
        _check_time(f"grid.ratio = {_fmt(ratio)} with sources.sde.dt = "
                    f"{_fmt(src['sde']['dt'])}", ratio, src["sde"], m)
    if "blowup" in src:
        b = src["blowup"]
        try:
            time_grid(ratio, b["dt0"])
        except CovsdeInputError as exc:
            raise CovsdeInputError(f"sources.blowup.dt0: {exc} (T = grid.ratio = "
                                   f"{_fmt(ratio)}; cell {where})") from None
    if "ode" in src:
        _check_time(f"grid.ratio = {_fmt(ratio)} with sources.ode.dt = "
                    f"{_fmt(src['ode']['dt'])}", ratio, src["ode"], m, paths=1)
    if "finite" in src:
        _check_finite(model, V0, at["width"], ratio, src["finite"], where)


def _blame(exc, params, axes):
    """The config key a model error is about (its message starts with the parameter name)."""
    msg = str(exc)
    for k in sorted(params, key=len, reverse=True):
        if msg.startswith(k + " "):
            return f"model.{k}"
    return "model"


def _check_time(name, ratio, table, m, paths=None):
    try:
        n_steps, _ = time_grid(ratio, table["dt"])
        steps = time_grid(ratio, table["dt"], table.get("save_every", n_steps))[1]
        check_memory(paths or table["paths"], len(steps), m, CELL_MEMORY_LIMIT)
    except CovsdeInputError as exc:
        raise CovsdeInputError(f"{name}: {exc}") from None


def _check_finite(model, V0, width, ratio, fin, where):
    from finite import sample

    try:  # the sampler's own checks (heads, width/heads >= m, key_width): one path, one layer
        sample(model, V0, width=width, n_paths=1, seed=0, depth=1, sampler=fin["sampler"],
               key_width=fin.get("key_width"), threads=1, progress=False)
    except CovsdeInputError as exc:
        msg = str(exc)
        bad = "sources.finite.key_width" if msg.startswith("key_width") else "grid.width"
        raise CovsdeInputError(f"{bad}: {msg} (cell {where})") from None
    layers = ratio * width
    if abs(layers - round(layers)) > 1e-9 * max(1.0, layers) or round(layers) < 1:
        raise CovsdeInputError(f"grid.ratio: ratio × width = {_fmt(ratio)} × {width} = "
                               f"{layers:g} is not a whole number >= 1 of layers (cell {where})")
    depth = int(round(layers))
    n_saved = 2 if "save_every" not in fin else depth // fin["save_every"] + 2
    try:
        check_memory(fin["paths"], n_saved, V0.shape[0], CELL_MEMORY_LIMIT)
    except CovsdeInputError as exc:
        raise CovsdeInputError(f"sources.finite.paths: {exc} (cell {where})") from None
