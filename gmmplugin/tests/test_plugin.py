"""The plugin's glue: how the engine's interpreter finds this package, and which
flexible sets' attributes are trusted."""
import os
import subprocess
import sys

from pwem.objects import SetOfParticlesFlex

import gmmplugin
from gmmplugin.constants import FLEX_PROGRAM
from gmmplugin.convert import gmm_flex_attr


def test_engine_interpreter_finds_this_copy_of_the_package(tmp_path):
    """A source checkout goes first on the engine's PYTHONPATH; an installed
    package adds nothing (the engine's environment has its own installed copy)."""
    root = gmmplugin.Plugin.sourceRoot()
    assert root == os.path.dirname(os.path.dirname(os.path.abspath(gmmplugin.__file__)))
    assert gmmplugin.Plugin.getEnviron()["PYTHONPATH"].split(os.pathsep)[0] == root
    assert gmmplugin.Plugin.sourceRoot(str(tmp_path / "site-packages" / "gmmplugin")) is None
    out = subprocess.run([sys.executable, "-c", "import gmmplugin; print(gmmplugin.__file__)"],
                         env=dict(os.environ, PYTHONPATH=root), capture_output=True,
                         text=True, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(root)


def test_flex_attributes_of_other_programs_are_ignored():
    ours = SetOfParticlesFlex(progName=FLEX_PROGRAM)
    ours.getFlexInfo().setAttr("modelPath", "/runs/train/checkpoint.pt")
    other = SetOfParticlesFlex(progName="CRYODRGN")
    other.getFlexInfo().setAttr("modelPath", "/runs/cryodrgn/weights.pkl")
    assert gmm_flex_attr(ours, "modelPath") == "/runs/train/checkpoint.pt"
    assert gmm_flex_attr(ours, "gmmPath") is None          # absent: no AttributeError
    assert gmm_flex_attr(other, "modelPath") is None
    assert gmm_flex_attr(object(), "modelPath") is None     # not a flexible set
