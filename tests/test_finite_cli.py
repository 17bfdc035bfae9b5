"""``covsde finite``, in-process: a run writes a valid dataset; every bad input exits 2 with
one line on stderr and leaves no output file."""
import os

import numpy as np
import pytest

from compare.cli import main
from sde.io import read_dataset

BASE = ["finite", "--arch", "block", "--gamma", "0.5", "--tau0", "0.7", "--heads", "2",
        "--tokens", "3", "--rho0", "0.3", "--width", "16", "--paths", "40", "--seed", "3"]


@pytest.mark.parametrize("sampler", ["reduced", "literal"])
def test_finite_writes_valid_dataset(tmp_path, capsys, sampler):
    out = tmp_path / "fin.nc"
    rc = main(BASE + ["--depth", "8", "--save-every", "3", "--sampler", sampler,
                      "--threads", "1", "--out", str(out)])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert f"finite-{sampler} arch=block: 40 paths" in line and str(out) in line
    ds = read_dataset(out)
    assert ds.V.shape == (40, 4, 3, 3)
    assert list(ds.depth.values) == [0, 3, 6, 8]
    np.testing.assert_allclose(ds.time.values, ds.depth.values / 16)
    a = ds.attrs
    assert (a["sampler"], a["width"], a["key_width"], a["heads"], a["seed"]) == \
        (sampler, 16, 8, 2, 3)
    assert a["gamma"] == 0.5 and a["tau0"] == 0.7
    assert not os.path.exists(f"{out}.tmp")


def test_finite_t_end_and_key_width(tmp_path, capsys):
    out = tmp_path / "fin.nc"
    rc = main(["finite", "--arch", "attention", "--gamma", "0.5", "--tau0", "1",
               "--tokens", "4", "--rho0", "0.2", "--width", "20", "--key-width", "3",
               "--t-end", "0.5", "--paths", "10", "--seed", "0", "--out", str(out)])
    assert rc == 0
    ds = read_dataset(out)
    assert int(ds.depth.values[-1]) == 10 and ds.attrs["key_width"] == 3
    assert ds.attrs["t_end"] == pytest.approx(0.5)


def test_finite_mlp_tanh(tmp_path):
    out = tmp_path / "fin.nc"
    rc = main(["finite", "--arch", "mlp", "--activation", "tanh", "--a", "0.7", "--tokens", "3",
               "--rho0", "0.1", "--width", "12", "--depth", "3", "--paths", "5", "--seed", "1",
               "--out", str(out)])
    assert rc == 0
    assert read_dataset(out).attrs["activation"] == "tanh"


@pytest.mark.parametrize("extra,word", [
    (["--width", "5", "--depth", "2"], "divisible by --heads"),      # 5/2 not an integer
    (["--width", "4", "--depth", "2"], "--width/--heads"),           # width/heads < m
    (["--width", "15", "--depth", "2"], "--heads"),                  # heads does not divide
    (["--key-width", "0", "--depth", "2"], "--key-width"),
    (["--depth", "-1"], "--depth"),
    (["--depth", "2", "--t-end", "0.5"], "exactly one"),
    ([], "exactly one"),
    (["--depth", "2", "--sampler", "exact"], "--sampler"),
    (["--depth", "2", "--threads", "0"], "--threads"),
    (["--depth", "2", "--save-every", "0"], "--save-every"),
    (["--width", "4096", "--depth", "4096", "--paths", "100", "--sampler", "literal"],
     "--sampler reduced"),
    (["--depth", "2", "--c-plus", "0.1", "--a", "2"], "--a"),
])
def test_finite_bad_input(tmp_path, capsys, extra, word):
    out = tmp_path / "fin.nc"
    argv = list(BASE)
    if "--width" in extra:                       # replace the base width
        i = argv.index("--width")
        del argv[i:i + 2]
    if "--paths" in extra:
        i = argv.index("--paths")
        del argv[i:i + 2]
    rc = main(argv + extra + ["--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("covsde finite: error:"), err
    assert word in err
    assert not out.exists() and not os.path.exists(f"{out}.tmp")


def test_finite_bad_output_dir(tmp_path, capsys):
    out = tmp_path / "missing" / "fin.nc"
    rc = main(BASE + ["--depth", "2", "--out", str(out)])
    assert rc == 2
    assert "--out" in capsys.readouterr().err
    assert not out.exists()


def test_finite_bad_arch_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["finite", "--arch", "lstm", "--width", "8", "--depth", "1", "--paths", "1",
              "--seed", "0", "--tokens", "2", "--rho0", "0", "--out", str(tmp_path / "x.nc")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_seed_beyond_int64_is_refused_before_sampling():
    """Seeds are stored as a netCDF int64 attribute: 2**63 must fail up front, not at write."""
    import pytest as _pytest

    import finite
    import sde

    with _pytest.raises(sde.CovsdeInputError, match="seed"):
        finite.sample(sde.ShapedMLP(), sde.equicorrelated(3, 0.2), width=8, n_paths=3,
                      seed=2 ** 63, depth=1)


@pytest.mark.parametrize("extra, needle", [
    (["--depth", "100000000000000000000"], "--depth must be at most"),
    (["--t-end", "1e30"], "--t-end * --width must be at most"),
    (["--depth", "3", "--memory-limit", "inf"], "--memory-limit"),
    (["--depth", "3", "--memory-limit", "1e300"], "--memory-limit"),
])
def test_finite_cli_refuses_unbounded_runs(tmp_path, capsys, extra, needle):
    """Review findings: these ran forever or raised OverflowError before."""
    out = tmp_path / "f.nc"
    rc = main(["finite", "--arch", "attention", "--gamma", "0.5", "--tau0", "1", "--tokens", "3",
               "--rho0", "0.2", "--width", "16", "--paths", "4", "--seed", "0", "--out", str(out),
               *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]
    assert list(tmp_path.iterdir()) == []


def test_finite_cli_checks_memory_before_building_V0(tmp_path, capsys):
    rc = main(["finite", "--arch", "mlp", "--tokens", "30000", "--rho0", "0.2", "--width", "16",
               "--depth", "3", "--paths", "10", "--seed", "0", "--out", str(tmp_path / "f.nc")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "memory limit" in err[0]
