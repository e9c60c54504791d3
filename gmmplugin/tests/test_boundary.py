"""The engine/plugin boundary, both ways.

The engine (``gmmplugin.engine``) must run in an interpreter without Scipion,
and the plugin layer (protocols, viewers, convert, objects) must not load
torch: the GUI lists protocols and draws forms without it, and the engine may
live in its own environment (GMM_PYTHON). Checked by running both in fresh
interpreters and by reading every module's imports.
"""
import ast
import os
import subprocess
import sys

import pytest

from gmmplugin.tests import data_path

PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(PKG)
ENGINE = os.path.join(PKG, "engine")
PLUGIN_LAYER = ["convert.py", "objects.py", "plugin.py", "constants.py", "bibtex.py",
                "__init__.py", "wizards.py", "protocols", "viewers"]
# engine modules the plugin layer may import: they load no torch
TORCH_FREE = {"checks", "export", "geometry", "io", "layout", "particles", "paths", "plots",
              "sampling", "selection", "settings", "symmetry"}
# Makes pwem and pyworkflow unimportable, as in an engine-only environment.
NO_SCIPION = """
import importlib.abc, runpy, sys
class NoScipion(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pwem", "pyworkflow", "relion", "emtable_scipion"):
            raise ImportError("Scipion is not installed here: " + name)
sys.meta_path.insert(0, NoScipion())
sys.argv = ["gmmplugin.engine"] + sys.argv[1:]
runpy.run_module("gmmplugin.engine", run_name="__main__", alter_sys=True)
"""


def _python_files(*paths):
    for p in paths:
        if p.endswith(".py"):
            yield p
            continue
        for folder, _, files in os.walk(p):
            yield from (os.path.join(folder, f) for f in files if f.endswith(".py"))


def _imports(path):
    """Absolute names of every module ``path`` imports (relative ones resolved)."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    names = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.append(mod)
            names += [mod + "." + a.name for a in node.names]   # "from . import x"
    return names


def _engine(args, tmp_path):
    return subprocess.run([sys.executable, "-c", NO_SCIPION] + args, capture_output=True,
                          text=True, cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"))


def test_engine_imports_nothing_from_scipion_or_the_plugin_layer():
    for path in _python_files(ENGINE):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in ("pwem", "pyworkflow", "pyworkflowtests"), (path, name)
            if top == "gmmplugin":
                assert name.startswith("gmmplugin.engine"), (path, name)


def test_plugin_layer_imports_no_torch_and_only_torch_free_engine_modules():
    for path in _python_files(*(os.path.join(PKG, p) for p in PLUGIN_LAYER)):
        for name in _imports(path):
            assert name.split(".")[0] != "torch", (path, name)
            parts = name.split(".")
            if parts[:2] == ["gmmplugin", "engine"] and len(parts) > 2:
                assert parts[2] in TORCH_FREE, (path, name)


def test_torch_free_engine_modules_load_no_torch():
    code = ("import sys\n" + "".join("import gmmplugin.engine.%s\n" % m for m in TORCH_FREE)
            + "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if "
              "m.startswith('torch'))[:3]\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr


def test_plugin_layer_loads_no_torch_in_a_fresh_interpreter():
    """What the GUI imports to list protocols and open forms and viewers."""
    code = ("import runpy, sys\n"
            "runpy.run_path(%r)['setup_environment']()\n"
            "import gmmplugin, gmmplugin.protocols, gmmplugin.viewers, gmmplugin.convert\n"
            "import gmmplugin.wizards\n"
            "gmmplugin.Plugin\n"
            "for name in dir(gmmplugin.protocols):\n"
            "    cls = getattr(gmmplugin.protocols, name)\n"
            "    if isinstance(cls, type):\n"
            "        cls()._validate\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
            "assert not bad, bad[:3]\n"
            % os.path.join(PKG, "tests", "scipion_env.py"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr


def test_engine_runs_without_scipion(tmp_path):
    help_ = _engine(["--help"], tmp_path)
    assert help_.returncode == 0, help_.stderr
    for command in ("simulate", "reconstruct", "fit", "train", "analyze", "refine-poses",
                    "refine-models"):
        assert command in help_.stdout
    sim = _engine(["--device", "cpu", "simulate", "--model", data_path("5a7u.pdb"),
                   "--out-dir", "sim", "--n", "40", "--box", "32", "--apix", "2.5",
                   "--snr", "0"], tmp_path)
    assert sim.returncode == 0, sim.stderr
    rec = _engine(["--device", "cpu", "reconstruct", "--particles", "sim/particles.star",
                   "--out-dir", "rec", "--pad", "1"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert "FSC 0.143 at" in rec.stdout
    assert (tmp_path / "rec" / "map.mrc").exists() and (tmp_path / "rec" / "map.json").exists()


def test_engine_errors_are_one_line_without_scipion(tmp_path):
    out = _engine(["train", "--particles", "missing.star", "--gmm", "g.npz",
                   "--out-dir", "t"], tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["ERROR: particles file not found: missing.star"]


@pytest.mark.parametrize("module", ["gmmplugin.engine.commands.%s" % m for m in
                                    ("simulate", "reconstruct", "fit", "train", "analyze",
                                     "refine_poses", "refine_models")])
def test_every_command_module_has_the_command_interface(module):
    import importlib
    m = importlib.import_module(module)
    assert isinstance(m.NAME, str) and isinstance(m.HELP, str)
    assert callable(m.add_args) and callable(m.main)
