"""Viewer for GmmProtRefineOrientations: how far the poses moved, and the
reconstruction from the refined poses (FSC, slices, map) as for a
reconstruction."""
import numpy as np
import pyworkflow.protocol.params as params

from ..protocols import GmmProtRefineOrientations
from ..engine import plots
from ..engine.geometry import rotation_angle_deg
from ..engine.particles import Particles, rows_of
from .viewer_reconstruct import GmmReconstructViewer
from .views import plot_window, shown


def pose_changes(protocol):
    """(angle change °, shift change Å, moved) per particle, from the engine's
    input and output particle files (matched by id)."""
    before = Particles.load(protocol._getFileName("particles"))
    after = Particles.load(protocol._getFileName("particles_refined"))
    idx = rows_of(before.ids, after.ids, "the input particles")
    angle = rotation_angle_deg(before.rotations[idx], after.rotations)
    shift = np.linalg.norm(after.shifts - before.shifts[idx], axis=1)
    stats = np.load(protocol._getFileName("refine_stats"))
    moved = dict(zip(stats["ids"].tolist(), stats["moved"].tolist()))
    return angle, shift, np.array([bool(moved.get(int(i), True)) for i in after.ids])


class GmmRefineOrientationsViewer(GmmReconstructViewer):
    """Pose changes, then the map of the refined particles."""
    _label = "orientation refinement viewer"
    _targets = [GmmProtRefineOrientations]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayChanges", params.LabelParam, label="Pose changes",
                      help="Histograms of each particle's angular and shift change; "
                           "particles whose refined pose did not pass the significance "
                           "test kept their input pose.")
        form.addParam("displayFsc", params.LabelParam, label="Half-map FSC curve")
        form.addParam("displaySlices", params.LabelParam, label="Central slices")
        form.addParam("displayVolume", params.LabelParam, label="Map in the data viewer")

    def _getVisualizeDict(self):
        return dict(super()._getVisualizeDict(), displayChanges=self._showChanges)

    @shown
    def _showChanges(self, param=None):
        return [plot_window(plots.plot_pose_changes(*pose_changes(self.protocol)))]
