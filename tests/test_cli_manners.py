"""The CLI's manners: existing outputs, output paths checked before any work, Ctrl-C twice,
flag errors naming the subcommand, a light ``--help``, whole depths, the sweep's n_boot
warning, and "ignored" only for flags that were given.
"""
import subprocess
import sys
import textwrap

import pytest

from compare.cli import main

MODEL = ["--arch", "attention", "--gamma", "0.5", "--tau0", "1", "--tokens", "3",
         "--rho0", "0.2"]
SIM = ["simulate", *MODEL, "--t-end", "0.1", "--dt", "0.05", "--paths", "5", "--seed", "0"]
FIN = ["finite", *MODEL, "--width", "8", "--paths", "5", "--seed", "0"]


def _one_line(capsys, *needles):
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1, cap.err
    for n in needles:
        assert n in cap.err, cap.err
    return cap


# ----------------------------------------------------------------- existing outputs
@pytest.mark.parametrize("argv", [SIM, [*FIN, "--depth", "2"]], ids=["simulate", "finite"])
def test_existing_out_is_refused_without_force(tmp_path, capsys, argv):
    out = tmp_path / "x.nc"
    out.write_text("precious")
    assert main([*argv, "--out", str(out)]) == 2
    cap = _one_line(capsys, "--out", "exists", "--force")
    assert cap.out == "" and out.read_text() == "precious"
    assert main([*argv, "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] == b"\x89HDF"  # replaced by a netCDF-4 file


@pytest.mark.parametrize("argv, flag", [
    (["figures", "--size", "tiny", "--only", "trajectories"], "--out"),
    (["demo", "--paths", "10"], "--out"),
])
def test_existing_figures_and_demo_outputs_are_refused(tmp_path, capsys, argv, flag):
    out = tmp_path / "d"
    out.mkdir()
    name = "trajectories.png"
    (out / name).write_text("precious")
    assert main([*argv, "--out", str(out)]) == 2
    _one_line(capsys, flag, name, "--force")
    assert (out / name).read_text() == "precious"


def test_plot_path_checked_before_any_work(tmp_path, capsys):
    """``--plot x.txt``: one line, exit 2, before the datasets are even read (they do not
    exist here: an error about them would mean the work had started)."""
    argv = ["compare", str(tmp_path / "a.nc"), str(tmp_path / "b.nc")]
    assert main([*argv, "--plot", str(tmp_path / "x.txt")]) == 2
    cap = _one_line(capsys, "--plot", ".png")
    assert cap.out == ""
    plot = tmp_path / "x.png"
    plot.write_text("precious")
    assert main([*argv, "--plot", str(plot)]) == 2
    _one_line(capsys, "--plot", "exists", "--force")


def test_out_extension_checked(tmp_path, capsys):
    assert main([*SIM, "--out", str(tmp_path / "x.csv")]) == 2
    _one_line(capsys, "--out", ".nc")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------- flag errors
@pytest.mark.parametrize("argv", [[*SIM, "--out", "x.nc", "--bogus"],
                                  ["compare", "a.nc", "b.nc", "--bogus", "1"]])
def test_unknown_flag_names_the_subcommand(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    cap = _one_line(capsys, "--bogus")
    assert cap.err.startswith(f"covsde {argv[0]}: error:"), cap.err


# ----------------------------------------------------------------- whole depths
def test_finite_refuses_a_non_whole_depth(tmp_path, capsys):
    """t·n = 0.3 · 8 = 2.4 layers: refused like a non-whole T/dt, naming the nearest valid
    --t-end and its depth; a whole t·n runs."""
    out = tmp_path / "f.nc"
    assert main([*FIN, "--t-end", "0.3", "--out", str(out)]) == 2
    _one_line(capsys, "--t-end", "0.25", "--depth 2")
    assert not out.exists()
    assert main([*FIN, "--t-end", "0.25", "--out", str(out)]) == 0
    assert "note" not in capsys.readouterr().out


# ----------------------------------------------------------------- "ignored"
def test_ignored_only_when_given(tmp_path, capsys):
    argv = ["simulate", *MODEL, "--t-end", "0.1", "--dt", "0.05", "--seed", "0", "--method",
            "ode"]
    assert main([*argv, "--out", str(tmp_path / "a.nc")]) == 0
    assert "--paths ignored" not in capsys.readouterr().out
    assert main([*argv, "--paths", "7", "--out", str(tmp_path / "b.nc")]) == 0
    assert "--paths ignored" in capsys.readouterr().out


# ----------------------------------------------------------------- sweep n_boot
SWEEP = textwrap.dedent("""\
    seed = 1
    stats = ["corr:0,1"]
    [model]
    arch = "mlp"
    [initial]
    tokens = 3
    rho0 = 0.2
    [grid]
    ratio = [0.25]
    width = [8]
    [sources.sde]
    paths = 50
    dt = 0.05
    [sources.finite]
    paths = 50
    [compare]
    """)


@pytest.mark.parametrize("n_boot, warned", [(None, True), (40, True), (200, False)])
def test_sweep_warns_below_200_resamples(tmp_path, capsys, n_boot, warned):
    """The warning comes with the config check, before any cell runs (here the STORE is then
    refused: not empty, no --resume)."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP + ("" if n_boot is None else f"n_boot = {n_boot}\n"))
    store = tmp_path / "store"
    store.mkdir()
    (store / "other").write_text("x")
    assert main(["sweep", str(cfg), "--out", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert ("warning: compare.n_boot" in err) == warned, err
    assert err.strip().splitlines()[-1].startswith("covsde sweep: error: --out")


# ----------------------------------------------------------------- --help is light
def test_help_imports_no_numerical_package():
    """Building the parser, ``covsde --help`` and every subcommand's help import none of
    numba, xarray, matplotlib, scipy, pandas, dask; except ``covsde compare --help``, whose
    column legend is :data:`compare.distances.LEGEND` (one text, shared with the output)."""
    code = ("import sys\n"
            "from compare.cli.app import build_parser\n"
            "p = build_parser()\n"
            "p.format_help()\n"
            "for name, s in p.subcommands.items():\n"
            "    if name != 'compare': s.format_help()\n"
            "heavy = [m for m in ('numba', 'xarray', 'matplotlib', 'scipy', 'pandas', 'dask')"
            " if m in sys.modules]\n"
            "print(heavy)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


# ----------------------------------------------------------------- Ctrl-C twice
DRIVER = textwrap.dedent("""\
    import signal, sys, threading, time
    import compare.cli.simulate as s
    import compare.cli.app as app

    def cmd(args):
        # a non-daemon thread still working: the interpreter joins it at shutdown, where
        # a second Ctrl-C lands
        threading.Thread(target=time.sleep, args=(1.5,)).start()
        print("ready", flush=True)
        time.sleep(60)

    s.cmd_simulate = cmd
    sys.argv = ["covsde", "simulate", "--arch", "mlp", "--tokens", "3", "--rho0", "0.2",
                "--t-end", "1", "--dt", "0.1", "--paths", "2", "--seed", "0", "--out", "x.nc"]
    if {control}:  # the control: Python's own handler back at shutdown
        code = app.main()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.exit(code)
    app.run()
    """)


def _double_sigint(tmp_path, control):
    import signal
    import time

    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(control=control))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # main has returned; the interpreter is joining the thread
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_second_ctrl_c_still_one_line(tmp_path):
    code, err = _double_sigint(tmp_path, control=False)
    assert code == 130, err
    assert err == "covsde simulate: interrupted (no partial output written)\n", err


def test_second_ctrl_c_control(tmp_path):
    """Negative control: with Python's handler back at shutdown, the second Ctrl-C prints
    the multi-line 'Exception ignored … KeyboardInterrupt' that the test above excludes."""
    code, err = _double_sigint(tmp_path, control=True)
    assert "KeyboardInterrupt" in err and err.count("\n") > 1, err


def test_help_constants_agree_with_the_library():
    import importlib

    from compare.cli import defaults

    for module, name, here in defaults.SOURCES:
        assert getattr(importlib.import_module(module), name) == getattr(defaults, here), name
