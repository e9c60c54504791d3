"""Viewer for GmmProtRefineModels: validation per model and a ChimeraX
session with every model over its map (``vseries``-like stepping by frame)."""
import pyworkflow.protocol.params as params
from pwem.viewers import EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from ..protocols import GmmProtRefineModels
from ..engine import plots
from .views import chimerax_or_fallback, plot_window, shown


def models_script(path, frames):
    """ChimeraX commands: each map (transparent surface) with its model; all
    but the first hidden, so the user steps through frames with ``show``."""
    lines = []
    for i, fr in enumerate(frames):
        lines += ["open %s" % fr["map"], "open %s" % fr["model"]]
    lines.append("volume all style surface transparency 0.6")
    if len(frames) > 1:
        lines.append("hide #3-%d models" % (2 * len(frames)))
    lines.append("view")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


class GmmRefineModelsViewer(EmProtocolViewer):
    """Validation plots of the refined models and a ChimeraX overlay."""
    _label = "atomic model series viewer"
    _targets = [GmmProtRefineModels]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayValidation", params.LabelParam,
                      label="Validation per model (RMSZ, Ramachandran, clashes, FRC)")
        form.addParam("displayChimera", params.LabelParam,
                      label="ChimeraX: models over their maps")

    def _getVisualizeDict(self):
        return {"displayValidation": self._showValidation,
                "displayChimera": self._showChimera}

    def _rows(self):
        info = self.protocol._info() or {"frames": []}
        rows = self.protocol._validation()
        frc = {i: f["frc"] for i, f in enumerate(info["frames"])}
        for r in rows:
            if r.get("frame", -1) in frc:
                r["frc"] = frc[r["frame"]]
        return rows

    @shown
    def _showValidation(self, param=None):
        return [plot_window(plots.plot_model_validation(self._rows()))]

    @shown
    def _showChimera(self, param=None):
        p = self.protocol
        script = models_script(p._getExtraPath("models.cxc"), p._info()["frames"])
        return chimerax_or_fallback(self, script)
