"""The main job runs end to end (tiny sizes) and writes every output it promises."""
import os

import pandas as pd

from compare.demo import run_demo
from sde.io import read_dataset


def test_demo_small(tmp_path):
    lines = list(run_demo(str(tmp_path), n_paths=300, finite_paths=100, width=40))
    # one multi-panel overlay (shared axes), not one file per ratio
    for name in ("sde.nc", "ode.nc", "finite.nc", "trajectories.png", "distances.csv",
                 "distances.txt", "overlay.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    assert not [p for p in os.listdir(tmp_path.parent) if ".partial-" in p]
    fin = read_dataset(str(tmp_path / "finite.nc"))
    assert fin.attrs["source"] == "finite-reduced" and fin.attrs["width"] == 40
    df = pd.read_csv(tmp_path / "distances.csv")
    assert sorted(set(df["time"])) == [0.25, 0.5, 0.75, 1.0]
    assert {"ks", "w1", "ks_noise_floor", "w1_a_to_ode", "censored_b"} <= set(df.columns)
    assert any("corr:0,1" in line for line in lines)


import pytest  # noqa: E402

from compare.cli import main  # noqa: E402


@pytest.mark.parametrize("args, needle", [
    (["--paths", "0"], "--paths"),
    (["--seed", "-1"], "--seed"),
    (["--out", "{tmp}/afile"], "not a directory"),
    (["--out", "{tmp}/afile/demo"], "not a directory"),
])
def test_demo_bad_input(tmp_path, capsys, args, needle):
    (tmp_path / "afile").write_text("x")
    args = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "demo")]
    assert main(["demo", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "demo").exists()


def test_demo_cli_creates_missing_parents(tmp_path, monkeypatch, capsys):
    """`make demo` runs `covsde demo --out runs/demo` in a fresh clone with no runs/."""
    import functools

    import compare.demo

    monkeypatch.setattr(compare.demo, "run_demo",
                        functools.partial(run_demo, finite_paths=20, width=12))
    out = tmp_path / "runs" / "demo"
    assert main(["demo", "--out", str(out), "--paths", "50"]) == 0
    assert (out / "trajectories.png").exists() and "corr:0,1" in capsys.readouterr().out
