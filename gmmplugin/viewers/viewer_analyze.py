"""Viewers for GmmProtAnalyze / GmmProtTrain: latent scatter, volume series,
classes with FSC, Gaussian displacement quiver."""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pwem.viewers import EmProtocolViewer
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from ..engine import layout, plots
from ..engine.io import read_fsc, read_map
from ..engine.settings import SCORE_NAMES
from ..protocols import GmmProtAnalyze, GmmProtTrain
from ..protocols.protocol_analyze import series_label
from .views import chimerax_or_fallback, data_or_fallback, plot_window, shown


def vseries_script(path, files):
    """ChimeraX script playing the frames as a volume series."""
    with open(path, "w") as f:
        f.write("open %s vseries true\n" % " ".join(os.path.abspath(x) for x in files))
        f.write("vseries play #1 loop true maxFrameRate 4\n")
    return path


def analysis_files(protocol):
    """(info dict, analysis arrays, output folder) of a GmmProtAnalyze run."""
    return (protocol.readResult("analysis_info"), np.load(protocol._getFileName("analysis")),
            protocol._getExtraPath())


class GmmAnalyzeViewer(EmProtocolViewer):
    """Latent space, volume series, classes and displacements."""
    _label = "latent space viewer"
    _targets = [GmmProtAnalyze]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayLatent", params.LabelParam,
                      label="Latent space coloured by class, with the volume series")
        form.addParam("displayScore", params.LabelParam,
                      label="Latent space coloured by outlier score")
        form.addParam("displayConfidence", params.LabelParam,
                      label="Latent space coloured by latent confidence",
                      help="How well each particle's own image determines its place "
                           "along the motion of the latent space (1 = pinned down, 0 = "
                           "no better than the population's spread), from the training.")
        form.addParam("displayLandscape", params.LabelParam,
                      label="Population landscape (-ln of the particle density)",
                      help="Where the particles are, with the basins' minima and the "
                           "fraction of particles in each; a picture of the population, "
                           "not a free energy.")
        form.addParam("series", params.EnumParam, default=0,
                      choices=[series_label(s) for s in self._seriesNames()] or ["none"],
                      label="Volume series",
                      help="Which volume series to show: along a principal axis (PC1 = "
                           "the largest variation), along a class's principal curve, or "
                           "along the path between the anchors.")
        form.addParam("displaySeries", params.LabelParam,
                      label="Volume series (ChimeraX, or a montage)")
        form.addParam("displayClasses", params.LabelParam, label="Class volumes and FSC")
        form.addParam("displayQuiver", params.LabelParam,
                      label="Gaussian displacements between the series' ends")

    def _seriesNames(self):
        """The analysis's volume series ("pc1", "class1", "path", …)."""
        info = self.protocol.readResult("analysis_info") if self.protocol else None
        if not info:
            return []
        return info.get("series") or list(dict.fromkeys(f["series"]
                                                        for f in info["frames"]))

    def _chosen(self):
        """The series chosen in the form (None when the analysis has none)."""
        names = self._seriesNames()
        i = self.series.get() or 0
        return names[i] if 0 <= i < len(names) else None

    def _getVisualizeDict(self):
        return {"displayLatent": self._showLatent, "displayScore": self._showScore,
                "displayConfidence": self._showConfidence,
                "displaySeries": self._showSeries, "displayClasses": self._showClasses,
                "displayQuiver": self._showQuiver, "displayLandscape": self._showLandscape}

    def _frames(self, info, kind="gmm_frame"):
        """Maps of the chosen series: decoded GMMs ("gmm_frame") or
        reconstructions ("frame") that exist."""
        series = self._chosen()
        files = [self.protocol._frameFile(kind, series, f["frame"])
                 for f in info["frames"] if f["series"] == series]
        return [f for f in files if os.path.exists(f)]

    def _trajectory(self, info):
        """The frames of the series chosen in the form."""
        return [f for f in info["frames"] if f["series"] == self._chosen()]

    @staticmethod
    def _curves(info):
        """Every series' frames in the 2-D view, by label."""
        curves = {}
        for f in info["frames"]:
            if "zred" in f:
                curves.setdefault(series_label(f["series"]), []).append(f["zred"])
        return curves

    @shown
    def _showLatent(self, param=None):
        info, res, _ = analysis_files(self.protocol)
        return [plot_window(plots.plot_latent_scatter(res["zred"], res["labels"] + 1,
                                                      categorical=True,
                                                      points=self._curves(info)))]

    @shown
    def _showConfidence(self, param=None):
        info, res, _ = analysis_files(self.protocol)
        if "confidence" not in res.files:
            return [self.infoMessage("These latents carry no confidence (the training "
                                     "that wrote them did not compute it).",
                                     "No latent confidence")]
        return [plot_window(plots.plot_latent_scatter(res["zred"], res["confidence"],
                                                      "latent confidence"))]

    @shown
    def _showScore(self, param=None):
        info, res, _ = analysis_files(self.protocol)
        return [plot_window(plots.plot_latent_scatter(res["zred"], res["score"],
                                                      "outlier score"))]

    @shown
    def _showLandscape(self, param=None):
        land = np.load(self.protocol._getFileName("landscape"))
        info = self.protocol.readResult("analysis_info")
        return [plot_window(plots.plot_landscape(
            land["energy"], land["xedges"], land["yedges"], land["minima"],
            land["populations"], int(land["counts"].sum()), curves=self._curves(info),
            centres={"class %d" % c["class"]: c["zred"] for c in info["classes"]
                     if "zred" in c}))]

    def _noTrajectory(self, info):
        return [self.infoMessage("The analysis computed no volume series.",
                                 "No volume series")]

    @shown
    def _showSeries(self, param=None):
        info, _, d = analysis_files(self.protocol)
        files = self._frames(info, "gmm_frame") or self._frames(info, "frame")
        if not files:
            return self._noTrajectory(info)

        def montage():
            return [plot_window(plots.plot_volume_series(
                [read_map(f)[0] for f in files], title=series_label(self._chosen())))]
        return chimerax_or_fallback(self, vseries_script(os.path.join(d, "vseries.cxc"),
                                                         files), montage)

    @shown
    def _showClasses(self, param=None):
        info, _, d = analysis_files(self.protocol)
        curves, maps, labels = {}, [], []
        for c in info["classes"]:
            name = layout.name("class", cls=c["class"])
            fn = self.protocol._getFileName("map_fsc", name=name)
            if os.path.exists(fn):
                curves["class %d (%d)" % (c["class"], c["size"])] = read_fsc(fn)
                maps.append(self.protocol._getFileName("map", name=name))
                labels.append("class %d" % c["class"])
        fsc = plot_window(plots.plot_fsc(curves, title="Class half-map FSC"))

        def montage():
            return [plot_window(plots.plot_volume_series([read_map(f)[0] for f in maps],
                                                         labels, title="Class maps"))]
        return [fsc] + data_or_fallback(self.protocol.Classes.getFileName(), montage)

    @shown
    def _showQuiver(self, param=None):
        info, _, d = analysis_files(self.protocol)
        series = self._chosen()
        ends = sorted(f["frame"] for f in self._trajectory(info))
        if not ends:
            return self._noTrajectory(info)
        a = self.protocol._getFileName("gmm_frame_params", series=series, frame=ends[0])
        b = self.protocol._getFileName("gmm_frame_params", series=series, frame=ends[-1])
        if not (os.path.exists(a) and os.path.exists(b)):
            return [self.infoMessage("No decoded frames: the analysis did not find the "
                                     "trained networks.", "No decoded frames")]
        return [plot_window(plots.plot_quiver(np.load(a), np.load(b),
                                              title="%s: first -> last frame"
                                              % series_label(series)))]


class GmmTrainViewer(EmProtocolViewer):
    """Training curve and latent space of a training run."""
    _label = "training viewer"
    _targets = [GmmProtTrain]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayCurve", params.LabelParam, label="Training curve")
        form.addParam("displayLatent", params.LabelParam,
                      label="Latent space (PCA), coloured by each particle's final score")
        form.addParam("displayConfidence", params.LabelParam,
                      label="Latent space (PCA), coloured by latent confidence",
                      help="How well each particle's own image determines its place "
                           "along the motion of the latent space (the principal curve "
                           "of all latents): 1 = pinned down, 0 = no better than the "
                           "population's spread. Low values: views or defoci that "
                           "hardly show the change.")

    def _getVisualizeDict(self):
        return {"displayCurve": self._showCurve, "displayLatent": self._showLatent,
                "displayConfidence": self._showConfidence}

    def _info(self):
        return self.protocol.readResult("training")

    @staticmethod
    def _score_name(info):
        """The label of the score the run trained with."""
        return SCORE_NAMES[info["config"]["loss"]]

    @shown
    def _showCurve(self, param=None):
        info = self._info()
        return [plot_window(plots.plot_training(info["history"],
                                                score=self._score_name(info)))]

    @shown
    def _showLatent(self, param=None):
        lat = np.load(self.protocol._getFileName("latents"))
        return [plot_window(plots.plot_latent_scatter(
            lat["zred"], lat["frc"], "final " + self._score_name(self._info())))]

    @shown
    def _showConfidence(self, param=None):
        lat = np.load(self.protocol._getFileName("latents"))
        if "confidence" not in lat.files:
            return [self.infoMessage("This training wrote no latent confidence.",
                                     "No latent confidence")]
        return [plot_window(plots.plot_latent_scatter(lat["zred"], lat["confidence"],
                                                      "latent confidence"))]
