"""Viewers for GmmProtAnalyze / GmmProtTrain: latent scatter, volume series,
classes with FSC, Gaussian displacement quiver."""
import json
import os
import subprocess

import numpy as np
import pyworkflow.protocol.params as params
from pwem.viewers import DataView, EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from ..protocols import GmmProtAnalyze, GmmProtTrain
from . import plots
from .viewer_fit_neutral import chimerax_program


def vseries_script(path, files):
    """ChimeraX script playing the frames as a volume series."""
    with open(path, "w") as f:
        f.write("open %s vseries true\n" % " ".join(os.path.abspath(x) for x in files))
        f.write("vseries play #1 loop true maxFrameRate 4\n")
    return path


def analysis_files(protocol):
    """(info dict, analysis.npz) of a GmmProtAnalyze run."""
    d = protocol._getExtraPath("analysis")
    with open(os.path.join(d, "analysis.json")) as f:
        info = json.load(f)
    return info, np.load(os.path.join(d, "analysis.npz")), d


class GmmAnalyzeViewer(EmProtocolViewer):
    """Latent space, volume series, classes and displacements."""
    _label = "gmm - latent space viewer"
    _targets = [GmmProtAnalyze]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayLatent", params.LabelParam,
                      label="Latent space coloured by class, with trajectories")
        form.addParam("displayScore", params.LabelParam,
                      label="Latent space coloured by outlier score")
        form.addParam("pc", params.IntParam, default=1, label="Trajectory (principal axis)",
                      help="Which principal axis of the latent space to show (1 = the "
                           "largest variation).")
        form.addParam("displaySeries", params.LabelParam,
                      label="Volume series (ChimeraX, or a montage)")
        form.addParam("displayClasses", params.LabelParam, label="Class volumes and FSC")
        form.addParam("displayQuiver", params.LabelParam,
                      label="Gaussian displacements between the trajectory ends")

    def _getVisualizeDict(self):
        return {"displayLatent": self._showLatent, "displayScore": self._showScore,
                "displaySeries": self._showSeries, "displayClasses": self._showClasses,
                "displayQuiver": self._showQuiver}

    def _frames(self, info, kind="gmm"):
        d = self.protocol._getExtraPath("analysis")
        pc = self.pc.get()
        files = [os.path.join(d, "pc%d_%s_%02d.mrc" % (pc, kind, f["frame"]))
                 for f in info["frames"] if f["pc"] == pc]
        return [f for f in files if os.path.exists(f)]

    def _showLatent(self, param=None):
        info, res, _ = analysis_files(self.protocol)
        plots.plot_latent_scatter(res["zred"], res["labels"] + 1, categorical=True).show()
        return []

    def _showScore(self, param=None):
        info, res, _ = analysis_files(self.protocol)
        plots.plot_latent_scatter(res["zred"], res["score"], "outlier score").show()
        return []

    def _showSeries(self, param=None):
        from ..engine.io import read_map
        info, _, d = analysis_files(self.protocol)
        files = self._frames(info, "gmm") or self._frames(info, "frame")
        prog = chimerax_program()
        if prog and files:
            subprocess.Popen([prog, vseries_script(os.path.join(d, "vseries.cxc"), files)])
            return []
        plots.plot_volume_series([read_map(f)[0] for f in files]).show()
        return []

    def _showClasses(self, param=None):
        info, _, d = analysis_files(self.protocol)
        curves = {}
        for c in info["classes"]:
            fn = os.path.join(d, "class_%02d_fsc.txt" % c["class"])
            if os.path.exists(fn):
                freq, curve = np.loadtxt(fn, unpack=True)
                curves["class %d (%d)" % (c["class"], c["size"])] = (freq, curve)
        plots.plot_fsc(curves, title="Class half-map FSC").show()
        return [DataView(self.protocol.Classes.getFileName())]

    def _showQuiver(self, param=None):
        info, _, d = analysis_files(self.protocol)
        pc = self.pc.get()
        ends = sorted(f["frame"] for f in info["frames"] if f["pc"] == pc)
        if not ends:
            self.showInfo("No trajectory along principal axis %d: the analysis computed %d."
                          % (pc, max((f["pc"] for f in info["frames"]), default=0)))
            return []
        a = os.path.join(d, "pc%d_gmm_%02d.npy" % (pc, ends[0]))
        b = os.path.join(d, "pc%d_gmm_%02d.npy" % (pc, ends[-1]))
        if not (os.path.exists(a) and os.path.exists(b)):
            self.showInfo("No decoded frames (the trained networks were not found).")
            return []
        plots.plot_quiver(np.load(a), np.load(b),
                          title="PC%d: first -> last frame" % pc).show()
        return []


class GmmTrainViewer(EmProtocolViewer):
    """Training curve and latent space of a training run."""
    _label = "gmm - training viewer"
    _targets = [GmmProtTrain]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayCurve", params.LabelParam, label="Training curve")
        form.addParam("displayLatent", params.LabelParam,
                      label="Latent space (PCA), coloured by each particle's final score")

    def _getVisualizeDict(self):
        return {"displayCurve": self._showCurve, "displayLatent": self._showLatent}

    def _info(self):
        with open(self.protocol._getExtraPath("training.json")) as f:
            return json.load(f)

    @staticmethod
    def _score_name(info):
        """The training score's label (runs before the option used the FRC)."""
        from ..engine.train import SCORE_NAMES
        return SCORE_NAMES[info["config"].get("loss", "frc")]

    def _showCurve(self, param=None):
        info = self._info()
        plots.plot_training(info["history"], score=self._score_name(info)).show()
        return []

    def _showLatent(self, param=None):
        from ..engine.analyze import reduce
        lat = np.load(self.protocol._getExtraPath("latents.npz"))
        plots.plot_latent_scatter(reduce(lat["z"]), lat["frc"],
                                  "final " + self._score_name(self._info())).show()
        return []
