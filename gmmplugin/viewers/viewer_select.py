"""Viewer for GmmProtSelectLatent: the selection on the latent plot, and the
interactive latent window (to look at the GMM anywhere in the latent space)."""
import pyworkflow.protocol.params as params
from pwem.viewers import EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, View

from ..convert import gmm_flex_attr
from ..engine import plots
from ..protocols import GmmProtSelectLatent
from .views import plot_window, shown


class _WindowView(View):
    """A Scipion view that opens a Tk window built by ``make(master)``."""

    def __init__(self, make, master):
        View.__init__(self)
        self.make, self.master = make, master
        self.window = None

    def show(self):
        self.window = self.make(self.master)


class GmmSelectViewer(EmProtocolViewer):
    """The selected particles on the latent plot, and the latent window."""
    _label = "latent selection viewer"
    _targets = [GmmProtSelectLatent]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displaySelection", params.LabelParam,
                      label="Selection on the latent plot")
        form.addParam("displayWindow", params.LabelParam,
                      label="Latent window (right-click: the GMM at that point)")

    def _getVisualizeDict(self):
        return {"displaySelection": self._showSelection, "displayWindow": self._showWindow}

    @shown
    def _showSelection(self, param=None):
        _, zred, keep, polygons = self.protocol._selected()
        return [plot_window(plots.plot_selection(zred, keep, polygons))]

    @shown
    def _showWindow(self, param=None):
        from ..engine.selection import format_polygons, read_selection
        from .latent_selection import (Decoding, LatentSelectionWindow, StartOnFirstUse,
                                       latent_arrays)
        inp = self.protocol.inputParticles.get()
        zred, z, classes = latent_arrays(inp)
        _, _, _, polygons = self.protocol._selected()
        _, class_ids = read_selection(self.protocol._getFileName("selection"))
        checkpoint, gmm = gmm_flex_attr(inp, "modelPath"), gmm_flex_attr(inp, "gmmPath")
        decoding = None
        if checkpoint and gmm:
            folder = self.protocol._getExtraPath("decoded")
            decoding = StartOnFirstUse(lambda: Decoding(checkpoint, gmm, folder))
        return [_WindowView(lambda master: LatentSelectionWindow(
            master, zred, z, classes, format_polygons(polygons), decoding,
            title="Latent space of %s" % self.protocol.getObjLabel(),
            class_ids=" ".join(map(str, class_ids)) if classes is not None else ""),
            self.getTkRoot() or self.formWindow)]
