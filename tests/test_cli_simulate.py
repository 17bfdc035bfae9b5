"""``covsde simulate`` end to end, in-process (``compare.cli.main``).

Good runs write a schema-valid dataset with every parameter in its attrs and print one
summary line. Every kind of bad input gives exit code 2, exactly one line on stderr naming
the argument or the constraint, no traceback, nothing on stdout and no output file (nor a
``.tmp``) left behind.
"""
import json
import math

import numpy as np
import pytest

from compare.cli import main
from sde import model_from_params
from sde.io import read_dataset

MODEL = {"--arch": "attention", "--gamma": "0.5", "--tau0": "1"}
V0_EQUI = {"--tokens": "3", "--rho0": "0.2"}
RUN = {"--t-end": "0.1", "--dt": "0.01", "--paths": "3", "--seed": "0"}


def build_argv(out, changes=None, model=MODEL, v0=V0_EQUI):
    """argv for ``simulate``: defaults updated by ``changes`` (a value None drops the flag)."""
    flags = {**model, **v0, **RUN, "--out": str(out)}
    flags.update(changes or {})
    argv = ["simulate"]
    for k, v in flags.items():
        if v is not None:
            argv += [k, str(v)]
    return argv


@pytest.fixture
def dirs(tmp_path):
    """(input dir for V0 files, empty output dir)."""
    d_in, d_out = tmp_path / "in", tmp_path / "out"
    d_in.mkdir()
    d_out.mkdir()
    return d_in, d_out


# ---------------------------------------------------------------------------- good runs


@pytest.mark.parametrize("model, extra", [
    (MODEL, {}),
    ({"--arch": "attention", "--gamma": "0.7", "--tau0": "0.8", "--heads": "3"}, {}),
    ({"--arch": "block", "--gamma": "0.3536", "--tau0": "1", "--c-plus": "0.1",
      "--c-minus": "-0.9", "--heads": "2"}, {}),
    ({"--arch": "mlp"}, {}),
    ({"--arch": "mlp", "--activation": "tanh", "--a": "1.5"}, {}),
    ({"--arch": "mlp-res", "--gamma": "0.4", "--c-minus": "-2"}, {"--save-every": "3"}),
])
def test_simulate_writes_dataset(dirs, capsys, model, extra):
    out = dirs[1] / "run.nc"
    assert main(build_argv(out, extra, model=model)) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    lines = cap.out.splitlines()
    assert len(lines) == 1
    assert "3 paths" in lines[0] and str(out) in lines[0]
    assert sorted(p.name for p in dirs[1].iterdir()) == ["run.nc"]

    ds = read_dataset(out)
    a = ds.attrs
    for key in ("schema_version", "covsde_version", "source", "seed", "dt", "method",
                "n_paths", "n_dead", "dead_fraction", "dead_fraction_ci95_low",
                "dead_fraction_ci95_high"):
        assert key in a, key
    assert a["seed"] == 0 and a["dt"] == 0.01 and a["method"] == "euler"
    assert a["source"] == "sde-euler"
    # every model parameter, and the model rebuilt from the attrs is the one asked for
    rebuilt = model_from_params(dict(a))
    for key, value in rebuilt.params().items():
        assert key in a
    assert a["arch"] == model["--arch"]
    for flag, value in model.items():
        key = flag[2:].replace("-", "_")
        if key == "arch":
            continue
        if key == "activation":
            assert a[key] == value
        else:
            assert float(a[key]) == float(value), key
    assert ds.V.dims == ("path", "time", "token_a", "token_b")
    assert ds.V.shape[0] == 3 and ds.V.shape[2:] == (3, 3)
    assert ds.step.values[0] == 0 and ds.step.values[-1] == 10
    np.testing.assert_allclose(ds.V.isel(path=0, time=0).values,
                               0.8 * np.eye(3) + 0.2 * np.ones((3, 3)))


def test_simulate_from_v0_file(dirs, capsys):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 8))   # m = 8: a lane kernel the suite compiles anyway
    V0 = A @ A.T / 8 + np.eye(8)
    f = dirs[0] / "v0.npy"
    np.save(f, V0)
    out = dirs[1] / "run.nc"
    assert main(build_argv(out, {"--paths": "2"}, v0={"--V0": str(f)})) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    ds = read_dataset(out)
    np.testing.assert_array_equal(ds.V.isel(path=0, time=0).values, V0)
    np.testing.assert_array_equal(np.array(json.loads(ds.attrs["V0"])), V0)  # JSON list


def test_simulate_ode_one_path(dirs, capsys):
    out = dirs[1] / "ode.nc"
    assert main(build_argv(out, {"--method": "ode", "--paths": "5"})) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    lines = cap.out.splitlines()
    assert len(lines) == 1
    # a one-path run's line says so and carries no binomial interval
    assert "1 deterministic path" in lines[0] and "one deterministic path" in lines[0]
    assert "CI" not in lines[0]
    ds = read_dataset(out)
    assert ds.sizes["path"] == 1
    assert ds.attrs["method"] == "ode" and ds.attrs["source"] == "sde-ode"
    assert int(ds.status[0]) == 0 and math.isinf(float(ds.death_time[0]))
    assert np.all(np.isfinite(ds.V.values))
    # --paths may be left out for the ODE
    out2 = dirs[1] / "ode2.nc"
    assert main(build_argv(out2, {"--method": "ode", "--paths": None})) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(read_dataset(out2).V.values, ds.V.values)


# ---------------------------------------------------------------------------- bad input


def _npy(d, name, array):
    f = d / name
    np.save(f, array)
    return str(f)


def _raw(d, data):
    f = d / "v.npy"
    f.write_bytes(data)
    return str(f)


def _garbage(d):
    return _raw(d, b"\x93NUMPY\x01\x00garbage\xff\xfe" + bytes(range(256)))


def _v0_file(kind, d):
    return {
        "nonsym": lambda: _npy(d, "v.npy", np.array([[1.0, 0.5], [0.2, 1.0]])),
        "not_pd": lambda: _npy(d, "v.npy", np.array([[1.0, 2.0], [2.0, 1.0]])),
        "nan": lambda: _npy(d, "v.npy", np.array([[1.0, np.nan], [np.nan, 1.0]])),
        "inf": lambda: _npy(d, "v.npy", np.array([[np.inf, 0.0], [0.0, 1.0]])),
        "nonsquare": lambda: _npy(d, "v.npy", np.ones((2, 3))),
        "vector": lambda: _npy(d, "v.npy", np.ones(3)),
        "cube": lambda: _npy(d, "v.npy", np.ones((2, 2, 2))),
        "m1": lambda: _npy(d, "v.npy", np.ones((1, 1))),
        "complex": lambda: _npy(d, "v.npy", np.eye(2) + 0j),
        "strings": lambda: _npy(d, "v.npy", np.array([["a", "b"], ["c", "d"]])),
        "garbage": lambda: _garbage(d),
        "empty_file": lambda: _raw(d, b""),
        "npz": lambda: (np.savez(d / "v.npz", V=np.eye(2)), str(d / "v.npz"))[1],
        "missing": lambda: str(d / "nope.npy"),
        "directory": lambda: str(d),
    }[kind]()


V0_CASES = [
    ("nonsym", "symmetric"),
    ("not_pd", "positive definite"),
    ("nan", "finite"),
    ("inf", "finite"),
    ("nonsquare", "square"),
    ("vector", "square"),
    ("cube", "square"),
    ("m1", "m >= 2"),
    ("complex", "real"),
    ("strings", "numeric"),
    ("garbage", "cannot read"),
    ("empty_file", "cannot read"),
    ("npz", "not a single .npy array"),
    ("missing", "not found"),
    ("directory", "V0"),
]


def _check_error(capsys, out_dir, rc, needle):
    cap = capsys.readouterr()
    assert rc == 2
    assert cap.out == ""
    lines = cap.err.splitlines()
    assert len(lines) == 1, cap.err
    assert "Traceback" not in cap.err
    assert lines[0].startswith("covsde"), lines[0]
    assert "error:" in lines[0]
    assert needle in lines[0], (needle, lines[0])
    assert list(out_dir.iterdir()) == []  # no output file, no .tmp


@pytest.mark.parametrize("kind, needle", V0_CASES)
def test_bad_v0_file(dirs, capsys, kind, needle):
    d_in, d_out = dirs
    argv = build_argv(d_out / "run.nc", v0={"--V0": _v0_file(kind, d_in)})
    _check_error(capsys, d_out, main(argv), needle)


# (changes to the default argv, substring of the error line); CovsdeInputError → return 2
BAD_VALUES = [
    # V0 from --tokens/--rho0
    ({"--tokens": "1"}, "tokens"),
    ({"--tokens": "0"}, "tokens"),
    ({"--tokens": "-3"}, "tokens"),
    ({"--rho0": "-0.5"}, "rho0"),        # = -1/(m-1) for m = 3
    ({"--rho0": "-0.7"}, "rho0"),
    ({"--rho0": "1"}, "rho0"),
    ({"--rho0": "1.5"}, "rho0"),
    ({"--rho0": "nan"}, "rho0"),
    ({"--tokens": "2", "--rho0": "-1"}, "rho0"),
    ({"--rho0": None}, "--tokens"),
    ({"--tokens": None, "--rho0": None}, "--V0"),
    ({"--V0": "x.npy"}, "either --V0"),   # both --V0 and --tokens/--rho0
    ({"--tokens": "1000000"}, "memory limit"),  # refused before V0 is allocated
    # model parameters
    ({"--gamma": "0"}, "gamma"),
    ({"--gamma": "-0.1"}, "gamma"),
    ({"--gamma": "1.5"}, "gamma"),
    ({"--gamma": "nan"}, "gamma"),
    ({"--tau0": "0"}, "tau0"),
    ({"--tau0": "-1"}, "tau0"),
    ({"--tau0": "nan"}, "tau0"),
    ({"--tau0": "inf"}, "tau0"),
    ({"--heads": "0"}, "heads"),
    ({"--heads": "-2"}, "heads"),
    ({"--gamma": None}, "--gamma is required"),
    ({"--tau0": None}, "--tau0 is required"),
    ({"--c-plus": "0.1"}, "--c-plus does not apply"),
    ({"--a": "1"}, "--a does not apply"),
    # time grid
    ({"--dt": "0"}, "dt"),
    ({"--dt": "-0.01"}, "dt"),
    ({"--dt": "nan"}, "dt"),
    ({"--dt": "inf"}, "dt"),
    ({"--dt": "0.2"}, "dt must be <= t_end"),
    ({"--t-end": "0.105"}, "whole number"),
    ({"--t-end": "0.1", "--dt": "0.03"}, "whole number"),
    ({"--t-end": "0"}, "t_end"),
    ({"--t-end": "-1"}, "t_end"),
    ({"--t-end": "inf"}, "t_end"),
    ({"--t-end": "nan"}, "t_end"),
    ({"--dt": "1e-300"}, "2**53"),
    ({"--t-end": "1e300", "--dt": "1"}, "2**53"),
    ({"--t-end": "1e9", "--dt": "1", "--save-every": "1"}, "save_every"),
    ({"--save-every": "0"}, "save_every"),
    ({"--save-every": "-1"}, "save_every"),
    # run settings
    ({"--paths": "0"}, "--paths"),
    ({"--paths": "-5"}, "--paths"),
    ({"--paths": None}, "--paths is required"),
    ({"--method": "milstein"}, "--method"),
    ({"--method": "ODE"}, "--method"),
    ({"--seed": "-1"}, "seed"),
    ({"--seed": str(2 ** 64)}, "seed"),
    ({"--bound": "0"}, "bound"),
    ({"--bound": "nan"}, "bound"),
    ({"--bound": "0.5"}, "bound"),  # V0 already above the bound
    ({"--threads": "0"}, "--threads"),
    ({"--threads": "100000"}, "--threads"),
    ({"--memory-limit": "1e-9"}, "memory limit"),
    ({"--memory-limit": "0"}, "--memory-limit"),
    ({"--memory-limit": "-1"}, "--memory-limit"),
    ({"--memory-limit": "nan"}, "--memory-limit"),
    ({"--memory-limit": "inf"}, "--memory-limit"),
    ({"--paths": str(10 ** 12)}, "memory limit"),
]


@pytest.mark.parametrize("changes, needle", BAD_VALUES,
                         ids=[" ".join(f"{k}={v}" for k, v in c.items()) for c, _ in BAD_VALUES])
def test_bad_value(dirs, capsys, changes, needle):
    d_out = dirs[1]
    _check_error(capsys, d_out, main(build_argv(d_out / "run.nc", changes)), needle)


BAD_MODEL_FLAGS = [
    ({"--arch": "mlp", "--tau0": "1"}, "--tau0 does not apply to --arch mlp"),
    ({"--arch": "mlp", "--gamma": "0.5"}, "--gamma does not apply to --arch mlp"),
    ({"--arch": "mlp-res", "--gamma": "0.5", "--heads": "2"},
     "--heads does not apply to --arch mlp-res"),
    ({"--arch": "mlp-res", "--gamma": "0.5", "--tau0": "1"}, "--tau0 does not apply"),
    ({"--arch": "mlp-res"}, "--gamma is required for --arch mlp-res"),
    ({"--arch": "block", "--gamma": "0.5"}, "--tau0 is required for --arch block"),
    ({"--arch": "block", "--gamma": "0.5", "--tau0": "1", "--a": "1"}, "--a does not apply"),
    ({"--arch": "mlp", "--a": "1"}, "--a applies only to --activation tanh"),
    ({"--arch": "mlp", "--activation": "relu", "--a": "1"}, "--a applies only"),
    ({"--arch": "mlp", "--activation": "tanh", "--c-plus": "0.1"}, "--c-plus"),
    ({"--arch": "mlp", "--activation": "tanh", "--c-minus": "-1"}, "--c-minus"),
    ({"--arch": "mlp", "--activation": "gelu"}, "activation"),
    ({"--arch": "mlp", "--activation": "tanh", "--a": "0"}, "a must be"),
    ({"--arch": "mlp", "--c-plus": "inf"}, "c_plus"),
    ({"--arch": "mlp", "--c-minus": "nan"}, "c_minus"),
    ({"--arch": "mlp-res", "--gamma": "2"}, "gamma"),
]


@pytest.mark.parametrize("model, needle", BAD_MODEL_FLAGS,
                         ids=[" ".join(f"{k}={v}" for k, v in c.items()) for c, _ in
                              BAD_MODEL_FLAGS])
def test_bad_model_flags(dirs, capsys, model, needle):
    d_out = dirs[1]
    _check_error(capsys, d_out, main(build_argv(d_out / "run.nc", model=model)), needle)


def test_bad_output_path(dirs, capsys):
    d_out = dirs[1]
    _check_error(capsys, d_out, main(build_argv(d_out / "missing" / "run.nc")),
                 "directory does not exist")
    (d_out / "sub").mkdir()
    rc = main(build_argv(d_out / "sub"))
    cap = capsys.readouterr()
    assert rc == 2 and len(cap.err.splitlines()) == 1 and "is a directory" in cap.err
    assert list((d_out / "sub").iterdir()) == []


# argparse errors (type conversion, choices, unknown or missing flags) exit via SystemExit(2)
ARGPARSE_ERRORS = [
    ({"--paths": "1.5"}, "--paths"),
    ({"--paths": "ten"}, "--paths"),
    ({"--heads": "1.5"}, "--heads"),
    ({"--tokens": "2.5"}, "--tokens"),
    ({"--gamma": "abc"}, "--gamma"),
    ({"--dt": ""}, "--dt"),
    ({"--seed": "1.5"}, "--seed"),
    ({"--arch": "transformer"}, "--arch"),
    ({"--arch": None}, "--arch"),
    ({"--seed": None}, "--seed"),
    ({"--out": None}, "--out"),
    ({"--t-end": None}, "--t-end"),
    ({"--dt": None}, "--dt"),
    ({"--no-such-flag": "1"}, "--no-such-flag"),
]


@pytest.mark.parametrize("changes, needle", ARGPARSE_ERRORS,
                         ids=[" ".join(f"{k}={v}" for k, v in c.items()) for c, _ in
                              ARGPARSE_ERRORS])
def test_argparse_errors(dirs, capsys, changes, needle):
    d_out = dirs[1]
    with pytest.raises(SystemExit) as exc:
        main(build_argv(d_out / "run.nc", changes))
    _check_error(capsys, d_out, exc.value.code, needle)


def test_no_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    cap = capsys.readouterr()
    assert exc.value.code == 2 and len(cap.err.splitlines()) == 1
