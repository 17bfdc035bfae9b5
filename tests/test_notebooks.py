"""Execute every notebook in quick mode (``COVSDE_QUICK=1``) with nbclient.

The kernel must be THIS interpreter (the venv's), whatever kernelspecs the machine has: the
test writes a throw-away kernelspec in a temporary directory whose argv is ``sys.executable
-m ipykernel_launcher`` and hands nbclient a kernel manager that only sees that directory
(nothing is installed). The first cell run checks ``sys.executable`` inside the kernel.
"""
import json
import os
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
KERNEL = "covsde-test-python"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernels")
    spec = d / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "covsde test (this interpreter)", "language": "python"}))
    return d


def test_notebooks_found_and_stored_without_outputs():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_quickstart.ipynb", "02_shaped_transformer_paper.ipynb",
                     "03_sde_vs_ode.ipynb", "04_rank_collapse.ipynb",
                     "05_masked_attention.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        assert any("COVSDE_QUICK" in c.source for c in nb.cells), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, kernel_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COVSDE_QUICK", "1")
    monkeypatch.setenv("COVSDE_NOTEBOOK_OUT", str(tmp_path))
    # Jupyter's own inline backend: figures must show in the notebook (a compare module
    # that forced Agg at import would hide notebook 02's convergence figure)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys; print(sys.executable)")
    nb.cells.insert(0, probe)
    km = KernelManager(kernel_name=KERNEL,
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = nbclient.NotebookClient(nb, km=km, timeout=300,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert os.path.realpath(printed) == os.path.realpath(sys.executable)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"]
    images = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no figure inline"
    produced = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert produced, "the notebook wrote nothing under COVSDE_NOTEBOOK_OUT"
