"""Viewer for GmmProtReconstruct: FSC curve, central slices, the map."""
import pyworkflow.protocol.params as params
from pwem.viewers import EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from ..engine import plots
from ..engine.io import read_fsc, read_map
from ..protocols import GmmProtReconstruct
from .views import data_or_fallback, map_slices, plot_window, shown


class GmmReconstructViewer(EmProtocolViewer):
    """Half-map FSC, central slices and the reconstructed map."""
    _label = "reconstruction viewer"
    _targets = [GmmProtReconstruct]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayFsc", params.LabelParam, label="Half-map FSC curve")
        form.addParam("displaySlices", params.LabelParam, label="Central slices")
        form.addParam("displayVolume", params.LabelParam, label="Map in the data viewer",
                      help="Scipion's data viewer (xmipp); without it, the central slices.")

    def _getVisualizeDict(self):
        return {"displayFsc": self._showFsc, "displaySlices": self._showSlices,
                "displayVolume": self._showVolume}

    def _mapFile(self):
        return self.protocol._getFileName("map", name="map")

    @shown
    def _showFsc(self, param=None):
        freq, curve = read_fsc(self.protocol._getFileName("map_fsc", name="map"))
        return [plot_window(plots.plot_fsc({"half maps": (freq, curve)}))]

    @shown
    def _showSlices(self, param=None):
        vol, _ = read_map(self._mapFile())
        return [plot_window(plots.plot_central_slices({"map": vol}))]

    @shown
    def _showVolume(self, param=None):
        return data_or_fallback(self._mapFile(), lambda: [map_slices([self._mapFile()],
                                                                     ["map"])])
