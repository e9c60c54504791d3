"""Viewer for GmmProtFitNeutral: FSC (GMM map vs input), slices and
projections side by side, and a ChimeraX overlay of the map and the centres."""
import os
import shutil
import subprocess

import numpy as np
import pyworkflow.protocol.params as params
from pwem.viewers import EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from ..protocols import GmmProtFitNeutral
from . import plots


def chimerax_script(path, map_file, points_file, level=None):
    """Write a ChimeraX command file overlaying the map (transparent surface)
    and the Gaussian centres (spheres coloured by width)."""
    lines = ["open %s" % os.path.abspath(map_file),
             "open %s" % os.path.abspath(points_file),
             "volume #1 style surface transparency 0.6" +
             (" level %g" % level if level is not None else ""),
             "style #2 sphere", "color bfactor #2 palette bluered", "view"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def chimerax_program():
    """ChimeraX from Scipion's chimera plugin if installed, else from PATH."""
    try:
        from chimera import Plugin as ChimeraPlugin
        prog = ChimeraPlugin.getProgram()
        if prog:
            return prog
    except Exception:
        pass
    return shutil.which("chimerax") or shutil.which("ChimeraX")


class GmmFitNeutralViewer(EmProtocolViewer):
    """FSC curve, input vs GMM slices and projections, ChimeraX overlay."""
    _label = "gmm - neutral GMM viewer"
    _targets = [GmmProtFitNeutral]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayFsc", params.LabelParam, label="FSC: GMM map vs input")
        form.addParam("displaySlices", params.LabelParam,
                      label="Input and GMM map: central slices and projections")
        form.addParam("displayChimera", params.LabelParam,
                      label="ChimeraX: map with the Gaussian centres")

    def _getVisualizeDict(self):
        return {"displayFsc": self._showFsc, "displaySlices": self._showSlices,
                "displayChimera": self._showChimera}

    def _input_map(self):
        from ..engine.io import read_map
        p = self.protocol
        if p.inputVolume.get() is not None:
            from ..protocols.inputs import map_file
            return read_map(map_file(p.inputVolume.get(), p._getTmpPath("view.mrc")))[0]
        return read_map(p._getExtraPath("model_map.mrc"))[0]

    def _showFsc(self, param=None):
        freq, curve = np.loadtxt(self.protocol._getExtraPath("gmm_fsc.txt"), unpack=True)
        plots.plot_fsc({"GMM map vs input": (freq, curve)}, title="Neutral GMM fit").show()
        return []

    def _showSlices(self, param=None):
        from ..engine.io import read_map
        gmm_map = read_map(self.protocol._getExtraPath("gmm_map.mrc"))[0]
        plots.plot_map_comparison(self._input_map(), gmm_map, ("input", "GMM")).show()
        return []

    def _showChimera(self, param=None):
        p = self.protocol
        script = chimerax_script(p._getExtraPath("overlay.cxc"),
                                 p._getExtraPath("gmm_map.mrc"),
                                 p._getExtraPath("gmm_points.cif"))
        prog = chimerax_program()
        if prog is None:
            self.showInfo("ChimeraX is not configured in Scipion (scipion-em-chimera) "
                          "nor on the PATH. Open %s in ChimeraX by hand." % script)
            return []
        subprocess.Popen([prog, script])
        return []
