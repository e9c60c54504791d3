"""gmmplugin: Gaussian-mixture-model heterogeneity analysis (e2gmm method) for Scipion.

The numerical engine lives in ``gmmplugin.engine`` (torch/numpy, no Scipion);
protocols convert Scipion sets to engine files, run the engine's command line
through ``runJob`` and register the results as Scipion outputs.
"""
import os
import sys

from .constants import GMM_PYTHON

__version__ = "0.1.0"
_references = ["Chen2021", "Chen2025", "Zhong2021"]

try:  # the engine (gmmplugin.engine) must also work where Scipion is absent
    import pwem
    import pyworkflow.utils as pwutils
except ImportError:  # pragma: no cover - exercised only without Scipion
    pwem = None


class _PluginBase(pwem.Plugin if pwem else object):
    pass


class Plugin(_PluginBase):
    """The engine runs in a Python interpreter with torch; by default the one
    running Scipion (a pip install brings everything). Set GMM_PYTHON in
    scipion.conf to use another environment (e.g. one with a CUDA build of torch).
    """
    _url = "https://github.com/gmmplugin/scipion-em-gmm"
    _pathVars = []
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(GMM_PYTHON, sys.executable)

    @classmethod
    def getEnviron(cls):
        env = pwutils.Environ(os.environ)
        # the engine must import this very package, wherever it is installed
        env.set("PYTHONPATH", cls.enginePath(), env.BEGIN)
        return env

    @staticmethod
    def enginePath(pkg=None):
        """A directory from which the engine's interpreter imports this package
        and nothing else. A source checkout's root holds only the project; but
        an installed package sits in Scipion's site-packages, which must not be
        put ahead of another interpreter's own torch and numpy (GMM_PYTHON), so
        then a private directory with a link to the package is used."""
        import tempfile
        pkg = pkg or os.path.dirname(os.path.abspath(__file__))
        parent = os.path.dirname(pkg)
        if os.path.basename(parent) not in ("site-packages", "dist-packages"):
            return parent
        shim = os.path.join(tempfile.gettempdir(), "gmmplugin-path-%d" % os.getuid())
        link = os.path.join(shim, "gmmplugin")
        if os.path.realpath(link) != os.path.realpath(pkg):
            os.makedirs(shim, exist_ok=True)
            tmp = "%s.%d" % (link, os.getpid())
            os.symlink(pkg, tmp)
            os.replace(tmp, link)     # atomic: concurrent protocols see one link
        return shim

    @classmethod
    def getPython(cls):
        return cls.getVar(GMM_PYTHON) or sys.executable

    @classmethod
    def getEngineArgs(cls, command, device="auto"):
        """Arguments after the interpreter: ``-m gmmplugin.engine.cli ...``."""
        return "-m gmmplugin.engine.cli --device %s %s" % (device, command)

    @classmethod
    def getGpuEnviron(cls, protocol):
        """Environment restricted to the protocol's chosen GPUs, and the device
        argument for the engine ("auto" picks the first visible GPU, or the CPU
        when there is none; "cpu" when the user switched GPUs off)."""
        env = cls.getEnviron()
        uses_gpu = protocol.usesGpu() if hasattr(protocol, "usesGpu") else False
        if uses_gpu:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in protocol.getGpuList())
            return env, "auto"
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env, "cpu"

    @classmethod
    def defineBinaries(cls, env):
        pass  # pip-installed: nothing to build
