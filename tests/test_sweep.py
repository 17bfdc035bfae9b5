"""``covsde sweep`` on Dask: kill -9 and resume, worker counts, a real scheduler, corrupt cells,
bad configs.

Tiny sweeps (m = 3, 2 ratios × 2 widths, 300 SDE / 200 finite paths, dt = 0.05) run as
subprocesses of the real CLI (a SIGKILL must hit the real client). The uninterrupted
``--workers 2`` run is the reference every other run must equal
(``xarray.testing.assert_equal`` on ``open_sweep``).
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib

import pytest
import xarray as xr

from compare.cli import main
from compare.sweep.store import KILL_ENV, MANIFEST, check_store, open_cell, open_sweep, read_manifest
from compare.sweep.config import EXAMPLE_CONFIG, cells, load_config, parse_config
from sde.errors import CovsdeInputError

CONFIG = """\
seed = 7
stats = ["corr:0,1", "V:0,0"]

[model]
arch = "block"
gamma = 0.3536
tau0 = 1.0
c_plus = 0.0
c_minus = -1.0

[initial]
tokens = 3
rho0 = 0.2

[grid]
ratio = [0.25, 0.5]
width = [8, 16]

[sources.sde]
paths = 300
dt = 0.05

[sources.ode]

[sources.finite]
sampler = "reduced"
paths = 200

[compare]
n_boot = 40
"""
TIMEOUT = 240


def _sweep(config, store, *extra, env=None):
    full_env = dict(os.environ)
    full_env.pop(KILL_ENV, None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "compare.cli", "sweep", str(config), "--out",
                           str(store), "--no-progress", *extra], capture_output=True,
                          text=True, timeout=TIMEOUT, env=full_env)


def _ok(res):
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _snapshot(store):
    """name → (inode, mtime_ns, sha256) of every finished cell file."""
    d = os.path.join(store, "cells")
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".nc"):
            p = os.path.join(d, f)
            st = os.stat(p)
            with open(p, "rb") as fh:
                out[f] = (st.st_ino, st.st_mtime_ns, hashlib.sha256(fh.read()).hexdigest())
    return out


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    p.write_text(CONFIG)
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config_file):
    store = tmp_path_factory.mktemp("ref") / "store"
    res = _ok(_sweep(config_file, store, "--workers", "2"))
    assert "4/4 cells finished" in res.stdout
    return store


@pytest.fixture(scope="module")
def store_w1(tmp_path_factory, config_file):
    store = tmp_path_factory.mktemp("w1") / "store"
    _ok(_sweep(config_file, store, "--workers", "1"))
    return store


def test_reference_dataset(reference):
    ds = open_sweep(reference)
    assert dict(ds.sizes) == {"ratio": 2, "width": 2, "source": 3, "stat": 2, "quantile": 5}
    assert list(ds.source.values) == ["sde", "ode", "finite"]
    assert ds["ks"].dims == ("ratio", "width", "stat")
    assert ds["quantile_value"].dims == ("ratio", "width", "source", "stat", "quantile")
    assert (ds["n_paths"].sel(source="sde") == 300).all()
    assert (ds["n_paths"].sel(source="finite") == 200).all()
    assert ((ds["ks"] > 0) & (ds["ks"] <= 1)).all()
    # the raw datasets stay reachable: one file per cell, groups per source
    fin = open_cell(reference, "finite", ratio=0.5, width=16)
    assert fin.attrs["source"] == "finite-reduced" and fin.attrs["width"] == 16
    assert fin.sizes["path"] == 200 and int(fin.depth.values[-1]) == 8
    assert fin.attrs["seed"] == int(ds["seed_finite"].sel(ratio=0.5, width=16))
    path = os.path.join(reference, str(ds["cell_file"].sel(ratio=0.5, width=16).values))
    with xr.open_dataset(path, group="sde", engine="h5netcdf") as sde:
        assert sde.attrs["t_end"] == pytest.approx(0.5) and sde.attrs["n_paths"] == 300
        assert sde["V"].encoding.get("zlib") is True
    # provenance in the manifest and in every cell file
    man = read_manifest(reference)
    assert man["covsde_version"] and man["config"]["seed"] == 7 and len(man["cells"]) == 4
    with xr.open_dataset(path, engine="h5netcdf") as summary:
        assert summary.attrs["config_hash"] == man["config_hash"]
        assert "covsde_version" in summary.attrs and "cell_seeds" in summary.attrs


def test_workers_1_equals_workers_2(reference, store_w1):
    xr.testing.assert_equal(open_sweep(store_w1), open_sweep(reference))


def test_kill_twice_then_resume_equals_uninterrupted(tmp_path, config_file, reference):
    store = tmp_path / "store"
    # 1) killed right after the first cell is recorded
    res = _sweep(config_file, store, "--workers", "1", env={KILL_ENV: "after:1"})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert len(read_manifest(store)["cells"]) == 1
    first = _snapshot(store)
    assert len(first) == 1
    # without --resume a non-empty STORE is refused
    again = _sweep(config_file, store, "--workers", "1")
    assert again.returncode == 2 and "--resume" in again.stderr
    errors = [ln for ln in again.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert len(errors) == 1  # besides the warning about n_boot = 40 < 200
    # 2) resumed, and killed in the middle of writing its second cell (tmp file written)
    res = _sweep(config_file, store, "--workers", "1", "--resume", env={KILL_ENV: "write:2"})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert any(f.endswith(".nc.tmp") for f in os.listdir(store / "cells"))
    second = _snapshot(store)
    assert len(second) == 2 and all(second[k] == v for k, v in first.items())
    # 3) resumed to the end
    res = _ok(_sweep(config_file, store, "--workers", "1", "--resume"))
    assert "2 already finished, 2 to compute" in res.stdout
    assert not [f for f in os.listdir(store / "cells") if f.endswith(".tmp")]
    final = _snapshot(store)
    assert len(final) == 4
    for name, before in second.items():  # finished cells never rewritten
        assert final[name] == before, name
    xr.testing.assert_equal(open_sweep(store), open_sweep(reference))
    # 4) a finished sweep resumed computes nothing
    res = _ok(_sweep(config_file, store, "--resume"))
    assert "0 to compute" in res.stdout and _snapshot(store) == final


def test_corrupt_cell_is_recomputed(tmp_path, config_file, reference, store_w1):
    store = tmp_path / "store"
    shutil.copytree(store_w1, store)
    before = _snapshot(store)
    victim = sorted(before)[1]
    path = store / "cells" / victim
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # flip bytes in the data region
        fh.seek(size // 2)
        chunk = fh.read(64)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(CovsdeInputError, match="not finished"):
        open_sweep(store)  # the checksum no longer matches
    res = _ok(_sweep(config_file, store, "--workers", "1", "--resume"))
    assert f"cell {victim[:-3]}: checksum mismatch" in res.stdout
    assert "1 to compute" in res.stdout
    after = _snapshot(store)
    for name, snap in before.items():
        if name != victim:
            assert after[name] == snap, name
    assert after[victim][2] != before[victim][2] or after[victim][0] != before[victim][0]
    xr.testing.assert_equal(open_sweep(store), open_sweep(reference))


def test_open_sweep_partial(tmp_path, reference):
    store = tmp_path / "store"
    shutil.copytree(reference, store)
    full = open_sweep(reference)
    rel = str(full["cell_file"].sel(ratio=0.25, width=16).values)
    os.remove(store / rel)
    with pytest.raises(CovsdeInputError, match="1 of 4 cells are not finished"):
        open_sweep(store)
    part = open_sweep(store, partial=True)
    assert part.attrs["n_missing"] == 1
    assert str(part["cell_file"].sel(ratio=0.25, width=16).values) == ""
    assert part["ks"].sel(ratio=0.25, width=16).isnull().all()
    xr.testing.assert_equal(part["ks"].sel(ratio=0.5), full["ks"].sel(ratio=0.5))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=20)


def test_scheduler_address_fast(config_file, reference, tmp_path):
    """The fast version of the test below: ``--scheduler ADDRESS`` on a scheduler started in
    this process (one thread worker); the CLI client is a separate process. Same result."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        addr = cluster.scheduler_address
        store = tmp_path / "store"
        res = _ok(_sweep(config_file, store, "--scheduler", addr))
    assert f"scheduler {addr}" in res.stdout and "on 1 worker" in res.stdout
    xr.testing.assert_equal(open_sweep(store), open_sweep(reference))


@pytest.mark.slow
def test_external_scheduler_and_two_workers(tmp_path, config_file, reference):
    from distributed import Client

    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "w")
    procs = []
    try:
        procs.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log, stderr=log, start_new_session=True))
        for _ in range(2):
            procs.append(subprocess.Popen(
                [dask, "worker", addr, "--host", "127.0.0.1", "--nthreads", "1",
                 "--no-dashboard", "--death-timeout", "60"],
                stdout=log, stderr=log, start_new_session=True))
        deadline = time.monotonic() + 90
        while True:  # the scheduler may not listen yet
            try:
                with Client(addr, timeout="10s") as c:
                    c.wait_for_workers(2, timeout=60)
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        store = tmp_path / "store"
        res = _ok(_sweep(config_file, store, "--scheduler", addr))
        assert f"scheduler {addr}" in res.stdout and "on 2 workers" in res.stdout
        xr.testing.assert_equal(open_sweep(store), open_sweep(reference))
    finally:
        for p in reversed(procs):
            _stop(p)
        log.close()


# ---------------------------------------------------------------- bad configs (in-process)
def _bad(tmp_path, capsys, text, *extra):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    rc = main(["sweep", str(cfg), "--out", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err
    err = "\n".join(ln for ln in err.strip().splitlines() if not ln.startswith("warning:"))
    assert rc == 2
    assert len(err.splitlines()) == 1, err  # besides a warning about n_boot < 200
    assert not out.exists()
    return err


@pytest.mark.parametrize("old,new,key", [
    ("seed = 7", "seed = 7\nseeds = 1", "seeds: unknown key"),
    ("gamma = 0.3536", "gamma = 0.3536\ngammma = 0.3", "model.gammma: unknown key"),
    ("paths = 300", "paths = 300\nsteps = 3", "sources.sde.steps: unknown key"),
    ("[sources.ode]", "[sources.odes]", "sources.odes: unknown key"),
    ("width = [8, 16]", "width = []", "grid.width: empty grid"),
    ("ratio = [0.25, 0.5]", "ratio = []", "grid.ratio: empty grid"),
    ("gamma = 0.3536", "gamma = [0.3536, 1.5]", "model.gamma: gamma must be in (0, 1]"),
    ("tau0 = 1.0", "tau0 = [1.0, -1.0]", "model.tau0: tau0 must be"),
    ("rho0 = 0.2", "rho0 = [0.2, 1.0]", "initial.rho0: rho0 must satisfy"),
    ("width = [8, 16]", "width = [8, 2]", "grid.width: width/heads must be >= m"),
    ("ratio = [0.25, 0.5]", "ratio = [0.25, 0.375]", "grid.ratio = 0.375 with sources.sde.dt"),
    ("width = [8, 16]", "width = [8, 10]", "grid.ratio: ratio × width = 0.25 × 10"),
    ("stats = [\"corr:0,1\", \"V:0,0\"]", "stats = [\"corr:0,5\"]", "stats: statistic 'corr:0,5'"),
    ("[sources.sde]\npaths = 300\ndt = 0.05\n", "", "sources.sde: missing"),
    ("[sources.finite]\nsampler = \"reduced\"\npaths = 200\n", "", "grid.width: widths need"),
    ("width = [8, 16]", "", "grid.width: missing"),
    ("sampler = \"reduced\"", "sampler = \"exact\"", "sources.finite.sampler"),
    ("paths = 200", "paths = 0", "sources.finite.paths: must be an integer >= 1"),
    ("arch = \"block\"", "arch = \"transformer\"", "model.arch: must be one of"),
    ("seed = 7", "", "seed: missing"),
])
def test_bad_config_one_line_exit_2_nothing_written(tmp_path, capsys, old, new, key):
    assert old in CONFIG
    err = _bad(tmp_path, capsys, CONFIG.replace(old, new, 1))
    assert err.startswith(f"covsde sweep: error: {key}"), err


def test_bad_toml_and_missing_file(tmp_path, capsys):
    err = _bad(tmp_path, capsys, "seed = = 7\n")
    assert "not valid TOML" in err
    rc = main(["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "config: file not found" in capsys.readouterr().err


def test_store_from_another_config_is_refused(tmp_path, capsys, reference):
    manifest = os.path.join(reference, MANIFEST)
    mtime = os.stat(manifest).st_mtime_ns
    cfg = tmp_path / "other.toml"
    cfg.write_text(CONFIG.replace("seed = 7", "seed = 8"))
    rc = main(["sweep", str(cfg), "--out", str(reference), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    errors = [ln for ln in err.strip().splitlines() if not ln.startswith("warning:")]
    assert rc == 2 and len(errors) == 1  # besides the warning about n_boot = 40 < 200
    assert "different config" in err and "--resume" in err
    assert os.stat(manifest).st_mtime_ns == mtime


def test_workers_and_scheduler_are_exclusive(tmp_path, config_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(config_file), "--out", str(tmp_path / "o"), "--workers", "1",
              "--scheduler", "tcp://127.0.0.1:1"])
    assert exc.value.code == 2
    assert not (tmp_path / "o").exists()


def test_example_config_parses(tmp_path, capsys):
    assert main(["sweep", "--example"]) == 0
    text = capsys.readouterr().out
    assert text == EXAMPLE_CONFIG
    p = tmp_path / "ex.toml"
    p.write_text(text)
    cfg = load_config(p)
    assert cfg["axes"] == ["ratio", "width"] and len(cells(cfg)) == 4


# ---------------------------------------------------------------- seeds and store states
def _cfg(**grid):
    import tomllib

    raw = tomllib.loads(CONFIG)
    raw["grid"].update(grid)
    return parse_config(raw)


def test_cell_seeds_depend_on_values_not_position():
    a = {c["id"]: c for c in cells(_cfg(ratio=[0.25, 0.5], width=[8, 16]))}
    b = {c["id"]: c for c in cells(_cfg(ratio=[0.5], width=[16, 32]))}
    common = set(a) & set(b)
    assert len(common) == 1
    (cid,) = common
    assert a[cid]["seeds"] == b[cid]["seeds"] and a[cid]["axes"] == {"ratio": 0.5, "width": 16}
    seeds = [s for c in a.values() for s in c["seeds"].values()]
    assert len(set(seeds)) == len(seeds)  # all streams distinct


def test_killed_before_anything_written_counts_as_fresh(tmp_path):
    cfg = _cfg()
    store = tmp_path / "s"
    (store / "cells").mkdir(parents=True)
    (store / ".lock").write_text("")
    (store / "cells" / "x.nc.tmp").write_text("partial")
    assert check_store(str(store), cfg, resume=False) is None
    assert check_store(str(store), cfg, resume=True) is None
    (store / "stray.txt").write_text("not ours")
    with pytest.raises(CovsdeInputError, match="use --resume"):
        check_store(str(store), cfg, resume=False)
    with pytest.raises(CovsdeInputError, match="not a covsde sweep store"):
        check_store(str(store), cfg, resume=True)


# ---------------------------------------------------------------- figures from a STORE
def test_figures_from_sweep(tmp_path, capsys, reference):
    out = tmp_path / "figs"
    assert main(["figures", "--sweep", str(reference), "--out", str(out)]) == 0
    names = sorted(os.listdir(out))
    assert names == ["convergence_ks_V00.png", "convergence_ks_corr01.png",
                     "convergence_w1_V00.png", "convergence_w1_corr01.png"]
    capsys.readouterr()
    assert main(["figures", "--sweep", str(reference), "--out", str(out)]) == 2   # exists
    err = capsys.readouterr().err
    assert "convergence_ks_V00.png" in err and "--force" in err and len(err.splitlines()) == 1
    assert main(["figures", "--sweep", str(reference), "--out", str(out), "--force"]) == 0
    from matplotlib.figure import Figure

    from compare.figures.sweep import plot_convergence

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_convergence(open_sweep(reference), "corr:0,1", "ks", ax=ax) is fig
    assert len(ax.lines) >= 4  # two ratios, their floors, the n^-1/2 line


def test_stability_map_from_a_gamma_tau0_grid():
    import numpy as np

    from compare.figures.sweep import plot_stability

    g, t, r = [0.5, 1.0], [0.5, 1.0, 2.0], [0.5, 1.0]
    frac = np.arange(12, dtype=float).reshape(2, 2, 3, 1) / 40
    ds = xr.Dataset({"dead_fraction": (("ratio", "gamma", "tau0", "source"), frac),
                     "dead_fraction_ci95_low": (("ratio", "gamma", "tau0", "source"), frac / 2),
                     "dead_fraction_ci95_high": (("ratio", "gamma", "tau0", "source"),
                                                 frac + 0.01)},
                    coords={"ratio": r, "gamma": g, "tau0": t, "source": ["sde"]})
    fig = plot_stability(ds)
    ax = fig.axes[0]
    texts = [x.get_text() for x in ax.texts]
    assert len(texts) == 6 and texts[-1].startswith(f"{100 * 11 / 40:.1f} %")  # last ratio
    img = ax.images[0].get_array()
    np.testing.assert_allclose(img, frac[1, :, :, 0] * 100)


SHARED_CONFIG = CONFIG.replace("dt = 0.05\n", "dt = 0.05\nshare = [\"ratio\", \"width\"]\n").replace(
    "paths = 200\n", "paths = 200\nshare = [\"ratio\"]\n")


def test_shared_samples_one_task_per_finite_sample_and_dask_equals_inline(tmp_path):
    """With shared samples, the cells of one width form one Dask task (its finite sample is
    computed once), and two workers give the in-process result."""
    from compare.sweep.schedule import _tasks, run_sweep

    config = parse_config(tomllib.loads(SHARED_CONFIG))
    groups = _tasks(cells(config))
    assert sorted(len(g) for g in groups) == [2, 2]
    assert all(len({s["width"] for s in g}) == 1 for g in groups)
    assert [len(g) for g in _tasks(cells(parse_config(tomllib.loads(CONFIG))))] == [1] * 4
    cfg = tmp_path / "shared.toml"
    cfg.write_text(SHARED_CONFIG)
    _ok(_sweep(cfg, tmp_path / "dask", "--workers", "2"))
    run_sweep(config, str(tmp_path / "inline"), inline=True, progress=False, log=lambda *a: None)
    xr.testing.assert_equal(open_sweep(tmp_path / "dask"), open_sweep(tmp_path / "inline"))
    assert len(read_manifest(tmp_path / "dask")["shared"]) == 3   # one SDE, two finite
