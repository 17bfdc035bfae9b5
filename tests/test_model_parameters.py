"""Model parameters carry their own help on their dataclass fields; the CLI's flags come
from the fields, so a model with a parameter name never seen before gets a working flag; the
registry holds every model whatever was imported.
"""
import dataclasses
import subprocess
import sys

import pytest

from compare.cli import main
from sde.limits import LimitCoefficients
from sde.models import MODELS, Model, register_model
from sde.parameters import REQUIRED, describe, parameter


@dataclasses.dataclass(frozen=True)
class Damped(Model):
    """A dummy sub-layer with a parameter no other model has: drift −β V, a_lin = β."""

    beta: float = parameter(0.25, help="dummy damping rate β of the test model",
                            range="in (0, 1)")
    arch = "dummy-damped"
    summary = "test-only model with a new parameter name"

    def _limit(self):
        return LimitCoefficients(a_lin=self.beta)


@pytest.fixture
def damped():
    register_model(Damped)
    try:
        yield Damped
    finally:
        MODELS.pop(Damped.arch, None)


def test_fields_carry_help_range_default():
    (beta,) = describe(Damped)
    assert beta.name == "beta" and beta.type is float and beta.default == 0.25
    assert beta.help.startswith("dummy damping") and beta.range == "in (0, 1)"
    for cls in MODELS.values():   # every registered model's parameters carry help
        for info in describe(cls):
            assert info.help != info.name.replace("_", " "), (cls.arch, info.name)
    gamma = {i.name: i for i in describe(MODELS["attention"])}["gamma"]
    assert gamma.default is REQUIRED and "(0, 1]" in gamma.range


def test_new_parameter_gives_a_working_flag(damped, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--beta" in out and "dummy damping rate" in out and "dummy-damped" in out
    target = tmp_path / "d.nc"
    assert main(["simulate", "--arch", "dummy-damped", "--beta", "0.5", "--tokens", "3",
                 "--rho0", "0.2", "--t-end", "0.1", "--dt", "0.05", "--paths", "4", "--seed",
                 "0", "--out", str(target)]) == 0
    from sde.io import read_dataset

    ds = read_dataset(target)
    assert ds.attrs["arch"] == "dummy-damped" and ds.attrs["beta"] == 0.5
    # the flag is refused for an arch that does not take it
    assert main(["simulate", "--arch", "mlp", "--beta", "0.5", "--tokens", "3", "--rho0",
                 "0.2", "--t-end", "0.1", "--dt", "0.05", "--paths", "4", "--seed", "0",
                 "--out", str(tmp_path / "e.nc")]) == 2
    assert "--beta does not apply to --arch mlp" in capsys.readouterr().err


def test_registry_complete_without_importing_finite():
    """``sde.MODELS`` holds the unshaped stacks (declared by the entry point of finite) at
    the first look-up, and importing sde imports neither finite nor numba."""
    code = ("import sys, sde\n"
            "before = [m for m in ('finite', 'numba') if m in sys.modules]\n"
            "print(before, sorted(sde.MODELS))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    before, archs = res.stdout.split("] ")
    assert before == "["
    for arch in ("attention", "block", "mlp", "mlp-res", "post-ln", "pre-ln", "attention-only",
                 "vanilla"):
        assert f"'{arch}'" in archs, archs
