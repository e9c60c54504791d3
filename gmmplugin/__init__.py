"""gmmplugin: Gaussian-mixture-model heterogeneity analysis (e2gmm method) for Scipion.

The numerical engine lives in ``gmmplugin.engine`` (torch/numpy, no Scipion);
protocols convert Scipion sets to engine files, run the engine's command line
through ``runJob`` and register the results as Scipion outputs.

Importing this package loads nothing from Scipion: ``Plugin`` (a pwem class) is
imported when Scipion first asks for it, so ``python -m gmmplugin.engine`` runs
in an interpreter that has torch but no Scipion.
"""
from .constants import VERSION as __version__
_references = ["Chen2021", "Chen2025", "Zhong2021"]


def __getattr__(name):
    if name == "Plugin":
        from .plugin import Plugin
        return Plugin
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
