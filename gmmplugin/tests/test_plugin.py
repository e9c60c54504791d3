"""The plugin's glue: how the engine's interpreter finds this package, and which
flexible sets' attributes are trusted."""
import os
import subprocess
import sys

from pwem.objects import SetOfParticlesFlex

import gmmplugin
from gmmplugin.constants import FLEX_PROGRAM
from gmmplugin.convert import gmm_flex_attr


def test_engine_path_of_an_installed_package_holds_only_the_package(tmp_path):
    site = tmp_path / "site-packages"
    pkg = site / "gmmplugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("WHERE = 'fake install'\n")
    (site / "numpy").mkdir()            # a neighbour that must not be importable
    (site / "numpy" / "__init__.py").write_text("raise ImportError('shadowed')\n")
    path = gmmplugin.Plugin.enginePath(str(pkg))
    assert sorted(os.listdir(path)) == ["gmmplugin"]
    out = subprocess.run([sys.executable, "-c", "import gmmplugin, numpy; "
                          "print(gmmplugin.WHERE)"], env=dict(os.environ, PYTHONPATH=path),
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fake install"
    # a source checkout is used as it is
    assert gmmplugin.Plugin.enginePath() == os.path.dirname(os.path.dirname(
        os.path.abspath(gmmplugin.__file__)))


def test_flex_attributes_of_other_programs_are_ignored():
    ours = SetOfParticlesFlex(progName=FLEX_PROGRAM)
    ours.getFlexInfo().setAttr("modelPath", "/runs/train/checkpoint.pt")
    other = SetOfParticlesFlex(progName="CRYODRGN")
    other.getFlexInfo().setAttr("modelPath", "/runs/cryodrgn/weights.pkl")
    assert gmm_flex_attr(ours, "modelPath") == "/runs/train/checkpoint.pt"
    assert gmm_flex_attr(ours, "gmmPath") is None          # absent: no AttributeError
    assert gmm_flex_attr(other, "modelPath") is None
    assert gmm_flex_attr(object(), "modelPath") is None     # not a flexible set
