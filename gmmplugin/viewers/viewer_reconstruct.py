"""Viewer for GmmProtReconstruct: FSC curve, central slices, the map."""
import numpy as np
import pyworkflow.protocol.params as params
from pwem.viewers import DataView, EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from ..protocols import GmmProtReconstruct
from . import plots


class GmmReconstructViewer(EmProtocolViewer):
    """Half-map FSC, central slices and the reconstructed map."""
    _label = "gmm - reconstruction viewer"
    _targets = [GmmProtReconstruct]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayFsc", params.LabelParam, label="Half-map FSC curve")
        form.addParam("displaySlices", params.LabelParam, label="Central slices")
        form.addParam("displayVolume", params.LabelParam, label="Map in the data viewer")

    def _getVisualizeDict(self):
        return {"displayFsc": self._showFsc, "displaySlices": self._showSlices,
                "displayVolume": self._showVolume}

    def _showFsc(self, param=None):
        freq, curve = np.loadtxt(self.protocol._getExtraPath("map_fsc.txt"), unpack=True)
        plots.plot_fsc({"half maps": (freq, curve)}).show()
        return []

    def _showSlices(self, param=None):
        from ..engine.io import read_map
        vol, _ = read_map(self.protocol._getExtraPath("map.mrc"))
        plots.plot_central_slices({"map": vol}).show()
        return []

    def _showVolume(self, param=None):
        return [DataView(self.protocol.Volume.getFileName())]
