"""Viewer for GmmProtFitNeutral: FSC (GMM map vs input), slices and
projections side by side, and a ChimeraX overlay of the map and the centres."""
import os

import pyworkflow.protocol.params as params
from pwem.viewers import EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from ..convert import map_file
from ..engine import plots
from ..engine.io import read_fsc, read_map
from ..protocols import GmmProtFitNeutral
from .views import chimerax_or_fallback, plot_window, shown


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


class GmmFitNeutralViewer(EmProtocolViewer):
    """FSC curve, input vs GMM slices and projections, ChimeraX overlay."""
    _label = "neutral GMM viewer"
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
        p = self.protocol
        if p.inputVolume.get() is not None:
            return read_map(map_file(p.inputVolume.get(), p._getTmpPath("view.mrc")))[0]
        return read_map(p._getFileName("model_map"))[0]

    @shown
    def _showFsc(self, param=None):
        freq, curve = read_fsc(self.protocol._getFileName("gmm_fsc"))
        return [plot_window(plots.plot_fsc({"GMM map vs input": (freq, curve)},
                                           title="Neutral GMM fit"))]

    @shown
    def _showSlices(self, param=None):
        gmm_map = read_map(self.protocol._getFileName("gmm_map"))[0]
        return [plot_window(plots.plot_map_comparison(self._input_map(), gmm_map,
                                                      ("input", "GMM")))]

    @shown
    def _showChimera(self, param=None):
        p = self.protocol
        script = chimerax_script(p._getExtraPath("overlay.cxc"), p._getFileName("gmm_map"),
                                 p._getFileName("gmm_points"))
        return chimerax_or_fallback(self, script, lambda: self._showSlices())
