"""GmmProtAnalyze: classes, volume series and outliers from a GMM latent space."""
import os

import numpy as np
import pyworkflow.object as pwobj
import pyworkflow.protocol.params as params
from pwem.objects import SetOfClasses3D, SetOfParticlesFlex, SetOfVolumesFlex, VolumeFlex
from pwem.protocols import ProtAnalysis3D, ProtFlexBase

from ..constants import FLEX_PROGRAM
from ..convert import flex_item, gmm_flex_attr, validate_particles, write_latents
from ..engine import checks, layout, paths
from .protocol_base import GmmProtBase

REDUCTIONS = ["PCA", "UMAP"]
CLUSTERINGS = ["valley", "gmm", "kmeans"]    # the engine's names of the form's choices
CLUSTERING_LABELS = {"valley": "density valleys (minimum-density hyperplanes)",
                     "gmm": "a Gaussian mixture with full covariances", "kmeans": "k-means"}
K_CHOICE = {"valley": "until no class has a density valley",
            "gmm": "by the Bayesian information criterion",
            "kmeans": "by the silhouette score"}


# Output name -> class (a dict: two outputs may share a class, which an Enum
# would silently turn into aliases).
CLASSES, VOLUMES, GMM_VOLUMES, PATH_VOLUMES, PATH_GMM_VOLUMES, PARTICLES, OUTLIERS = (
    "Classes", "Volumes", "GmmVolumes", "PathVolumes", "PathGmmVolumes", "Particles",
    "Outliers")
OUTPUTS = {CLASSES: SetOfClasses3D,
           VOLUMES: SetOfVolumesFlex,        # reconstructions of every series' frames
           GMM_VOLUMES: SetOfVolumesFlex,    # decoded GMM maps of the same frames
           PATH_VOLUMES: SetOfVolumesFlex,   # the path between the anchors, reconstructed
           PATH_GMM_VOLUMES: SetOfVolumesFlex,   # and decoded
           PARTICLES: SetOfParticlesFlex,    # inliers
           OUTLIERS: SetOfParticlesFlex}
PATH = "path"                                # the engine's name of the anchors' series


def _span(values):
    """"n" or "lo–hi" of some counts."""
    lo, hi = min(values), max(values)
    return "%d" % lo if lo == hi else "%d–%d" % (lo, hi)


def series_label(series):
    """'pc1' -> 'PC1', 'class2' -> 'class 2', 'path' -> 'path'."""
    if series.startswith("pc"):
        return series.upper()
    if series.startswith("class"):
        return "class " + series[len("class"):]
    return series


class GmmProtAnalyze(GmmProtBase, ProtAnalysis3D, ProtFlexBase):
    """Turn a GMM latent space into maps: classes reconstructed in 3D; volume
    series (decoded GMM maps and reconstructions of the particles nearest each
    frame) along the principal axes, along each class's principal curve and
    along a path through the populated latent space between anchors you name;
    the population landscape; and a subset of outlier particles."""
    _label = "analyze latent space"
    _possibleOutputs = OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam,
                      pointerClass="SetOfParticlesFlex", important=True,
                      label="Particles with GMM latents",
                      help="The Particles output of 'heterogeneity training' (or a "
                           "subset of it).")
        form.addSection(label="Classes")
        form.addParam("clustering", params.EnumParam,
                      choices=["Density valleys", "Gaussian mixture (full covariance)",
                               "k-means"], default=0,
                      label="Clustering",
                      help="Density valleys: the latent space is cut, class by class, "
                           "where the particle density drops (the hyperplane of lowest "
                           "density): states that also move (elongated or curved "
                           "populations side by side) are separated wherever the gap "
                           "between them lies, and a motion without a gap stays one "
                           "class. Gaussian mixture: each class is a Gaussian with its "
                           "own shape; good for compact or elongated states, it can cut "
                           "two parallel moving populations the wrong way. k-means: "
                           "round classes of similar size, which cut such populations "
                           "along their motion; use it to split a continuous motion "
                           "into steps.")
        form.addParam("numClasses", params.IntParam, default=0, label="Number of classes",
                      help="0 = automatic: for density valleys, cut while some class has "
                           "a valley below a quarter of its peak density whose two sides "
                           "are also apart (few of their particles' nearest neighbours "
                           "across the cut: a lobe of one population, joined to it all "
                           "along, stays in it), up to 8 classes; for the Gaussian mixture, k in 1..8 with the "
                           "lowest Bayesian information criterion, then classes with no "
                           "density valley between them are merged (a state spread along "
                           "a motion stays one class); for k-means, k in 2..8 with the "
                           "best silhouette score, or 1 if no k reaches 0.25. A number "
                           "given here is used as it is; density valleys then cut first "
                           "where the two sides are apart, through a lobe only when no "
                           "such valley is left.")
        form.addParam("reduction", params.EnumParam, choices=REDUCTIONS, default=0,
                      label="2D reduction", help="For display and zRed.")
        form.addSection(label="Trajectories")
        form.addParam("numPCs", params.IntParam, default=2, label="Principal axes",
                      help="Volume series along the first PCs of the latents (straight "
                           "lines: a motion is rarely a principal axis, see the class "
                           "curves and the path below). 0 = none.")
        form.addParam("classCurves", params.BooleanParam, default=True,
                      label="Series along each class's curve?",
                      help="A volume series along the principal curve of each class (a "
                           "curve through the middle of the class's particles, end to "
                           "end): the motion within each state, even when it is curved "
                           "or not along a principal axis of the whole set.")
        form.addParam("pathAnchors", params.StringParam, default="",
                      label="Path anchors",
                      help="A volume series along a path between states, through the "
                           "populated latent space (the path on the particles' "
                           "nearest-neighbour graph that prefers many short steps to a "
                           "few long ones, so it runs through a population rather than "
                           "across its sparse edges; smoothed): anchors in order, "
                           "separated by ';': 'class:1; class:2' (a class's central "
                           "particle), 'particle:1234' (a particle id) or "
                           "'point:0.5,-1.2' (the particle nearest a latent point, all "
                           "latent coordinates). Empty = no path. Anchors in separate "
                           "populations (e.g. two compositions) are joined across the "
                           "narrowest gap between them; the log and the summary say so, "
                           "and the frames in the gap hold no particles. Output: "
                           "PathVolumes and PathGmmVolumes.")
        form.addParam("numFrames", params.IntParam, default=7, label="Frames per series",
                      help="Frames of each volume series. Along a principal axis they "
                           "span the populated range (2nd–98th percentile).")
        form.addParam("particlesPerFrame", params.IntParam, default=0,
                      label="Particles per frame (0 = automatic)",
                      help="Each frame's map is reconstructed from this many particles, "
                           "those nearest its latent point (neighbouring frames may share "
                           "some). 0 takes the series's particles divided by its number "
                           "of frames, at least 20: the whole set along a principal axis, "
                           "the class along its curve, the classes a path runs through. "
                           "Fewer particles per frame (or more frames) separate the "
                           "motion more finely but give noisier maps; more give sharper "
                           "maps that average over a wider stretch of the motion. With "
                           "0 each series reconstructs about as many particles as the "
                           "set holds: on a very large set a fixed number (e.g. 20000) "
                           "makes the analysis faster. A frame's particles and "
                           "resolution are listed in its volume series.")
        form.addParam("weightByConfidence", params.BooleanParam, default=False,
                      label="Use the latent confidence in the maps?",
                      help="Frames: each frame's map draws, Fourier shell by shell, on "
                           "up to three times its own particles (the best determined "
                           "first) where the trained decoder and the noise predict a "
                           "cleaner map: at fine detail, where the noise limits a "
                           "frame, it takes more particles; at coarse detail, where "
                           "the spread of the states limits it, it keeps its own. The "
                           "confidence says how far each particle's true place may "
                           "lie from its latent. Classes: particles weigh in the class "
                           "maps by their confidence, to check whether a class's detail "
                           "rests on the particles whose place is well determined (it "
                           "costs signal). Turn it on for the final frame maps; it "
                           "takes about three times the frames' reconstruction time. "
                           "Needs particles from 'heterogeneity training', which carry "
                           "the confidence and the trained networks.")
        form.addSection(label="Outliers")
        form.addParam("outlierThreshold", params.FloatParam, default=3.5,
                      label="Outlier score threshold",
                      help="A particle's outlier score is the larger of two robust z-scores "
                           "(median/MAD): of its FRC against its decoded GMM (low = poorly "
                           "explained: junk, another protein, noise) and of its latent "
                           "distance from the rest, both at the encoder's latent (before "
                           "any refinement of the latents in training). Particles scoring above this are "
                           "outliers. 3.5 is the usual cut-off for robust z-scores; it "
                           "flags ~0.4% of a clean simulated set. 0 = no outliers.")
        form.addParam("outlierFraction", params.FloatParam, default=0.0,
                      expertLevel=params.LEVEL_ADVANCED, label="Outlier fraction",
                      help="If > 0, this fraction of particles with the highest outlier "
                           "score are outliers (instead of the threshold), for when you "
                           "know how much junk to expect.")
        form.addParam("reconstructionBox", params.IntParam, default=0,
                      expertLevel=params.LEVEL_ADVANCED, label="Reconstruction box (px)",
                      help="Fourier-crop particles to this box for the reconstructions "
                           "(0 = particle box).")
        self._defineEngineParams(form)

    def _insertAllSteps(self):
        self._insertSteps(self.convertInputStep, (self.analyzeStep, True),
                          self.createOutputStep)

    def _flex(self, name):
        return gmm_flex_attr(self.inputParticles.get(), name)

    def convertInputStep(self, inputs):
        inp = self.inputParticles.get()
        self.convertParticles(inp)
        write_latents(inp, self._getFileName("latents_in"), self._flex("latentsPath"))

    def analyzeStep(self, inputs):
        args = ["--particles %s" % self._getFileName("particles"),
                "--latents %s" % self._getFileName("latents_in"),
                "--out-dir %s" % self._getExtraPath(),
                "--num-classes %d" % self.numClasses.get(),
                "--clustering %s" % CLUSTERINGS[self.clustering.get()],
                "--reduction %s" % REDUCTIONS[self.reduction.get()].lower(),
                "--num-pcs %d" % self.numPCs.get(), "--num-frames %d" % self.numFrames.get(),
                "--per-frame %d" % self.particlesPerFrame.get(),
                "--class-curves %d" % int(bool(self.classCurves.get())),
                "--weights %s" % ("confidence" if self.weightByConfidence.get() else "none"),
                "--outlier-fraction %g" % self.outlierFraction.get(),
                "--outlier-threshold %g" % self.outlierThreshold.get(),
                "--box %d" % self.reconstructionBox.get()]
        if (self.pathAnchors.get() or "").strip():
            args.append('--path "%s"' % self.pathAnchors.get().strip())
        networks = self._networks()
        if networks:
            args += ["--checkpoint %s" % networks[0], "--gmm %s" % networks[1]]
        self.runEngine("analyze", " ".join(args))

    def _networks(self):
        """(checkpoint, neutral GMM) of the training the particles come from, or
        None when their files are not there."""
        ck, gmm = self._flex("modelPath"), self._flex("gmmPath")
        if ck and gmm and os.path.exists(str(ck)) and os.path.exists(str(gmm)):
            return str(ck), str(gmm)
        return None

    def _info(self):
        return self.readResult("analysis_info")

    def createOutputStep(self, inputs):
        inp = self.inputParticles.get()
        info = self._info()
        res = np.load(self._getFileName("analysis"))
        label = dict(zip(res["ids"].tolist(), (res["labels"] + 1).tolist()))
        outlier = dict(zip(res["ids"].tolist(), res["outlier"].tolist()))
        score = dict(zip(res["ids"].tolist(), res["score"].tolist()))
        zred = dict(zip(res["ids"].tolist(), res["zred"].tolist()))
        apix = info["apix"]

        classes = self._createSetOfClasses3D(inp)
        by_class = {c["class"]: c for c in info["classes"]}

        def update_item(item, row):
            item.setClassId(label.get(item.getObjId(), 0))
            item._gmmOutlierScore = pwobj.Float(score.get(item.getObjId(), 0.0))

        def update_class(cls):
            c = by_class[cls.getObjId()]
            rep = cls.getRepresentative()
            rep.setLocation(self._getFileName("map", name=layout.name("class", cls=c["class"])))
            rep.setSamplingRate(apix)
            cls._gmmResolution = pwobj.Float(c["resolution"])
            cls._gmmLatentCentre = pwobj.CsvList()
            cls._gmmLatentCentre.set(c["centre"])

        classes.classifyItems(updateItemCallback=update_item, updateClassCallback=update_class)

        def volume_series(kind, suffix, only=None):
            vols = self._createSetOfVolumesFlex(suffix=suffix, progName=FLEX_PROGRAM)
            vols.setSamplingRate(apix)
            for fr in info["frames"]:
                if only is not None and fr["series"] != only:
                    continue
                fn = self._frameFile(kind, fr["series"], fr["frame"])
                if not os.path.exists(fn):
                    continue
                v = VolumeFlex(progName=FLEX_PROGRAM)
                v.setLocation(fn)
                v.setSamplingRate(apix)
                v.setZFlex(fr["latent"])
                v.setObjLabel("%s frame %d" % (series_label(fr["series"]), fr["frame"]))
                v._gmmSeries = pwobj.String(fr["series"])
                v._gmmParticles = pwobj.Integer(fr["particles"])
                if "occupancy" in fr:
                    v._gmmOccupancy = pwobj.Integer(fr["occupancy"])
                vols.append(v)
            return vols

        outputs = {CLASSES: classes, VOLUMES: volume_series("frame", "frames")}
        if info["decoded"]:
            outputs[GMM_VOLUMES] = volume_series("gmm_frame", "gmmframes")
        if PATH in info.get("series", []):
            outputs[PATH_VOLUMES] = volume_series("frame", "path", PATH)
            if info["decoded"]:
                outputs[PATH_GMM_VOLUMES] = volume_series("gmm_frame", "pathgmm", PATH)

        def subset(suffix, keep_outliers):
            prog = inp.getFlexInfo().getProgName() or FLEX_PROGRAM   # keep the latents' owner
            s = self._createSetOfParticlesFlex(suffix=suffix, progName=prog)
            s.copyInfo(inp)
            s.setHasCTF(inp.hasCTF())
            s.setAlignmentProj()
            for p in inp.iterItems(orderBy="id"):
                if bool(outlier.get(p.getObjId(), False)) == keep_outliers:
                    item = flex_item(p, p.getObjId(), p.getZFlex(), zred[p.getObjId()], prog)
                    item._gmmClass = pwobj.Integer(label.get(p.getObjId(), 0))
                    for name in ("_gmmConfidence", "_gmmLatentSd"):
                        if getattr(p, name, None) is not None:
                            setattr(item, name, pwobj.Float(getattr(p, name).get()))
                    s.append(item)
            return s

        outputs[PARTICLES] = subset("inliers", False)
        if any(outlier.values()):  # no empty set for downstream protocols to trip on
            outputs[OUTLIERS] = subset("outliers", True)
        self._defineOutputs(**outputs)
        for out in outputs.values():
            self._defineSourceRelation(self.inputParticles, out)

    def _frameFile(self, kind, series, frame):
        """The map of a frame of a volume series ("pc1", "class2", "path"): its
        reconstruction ("frame") or its decoded GMM ("gmm_frame")."""
        if kind == "gmm_frame":
            return self._getFileName("gmm_frame", series=series, frame=frame)
        return self._getFileName("map", name=layout.name("frame", series=series,
                                                          frame=frame))

    def _validate(self):
        inp = self.inputParticles.get()
        errors = validate_particles(inp)
        if errors:
            return errors
        first = inp.getFirstItem()
        if not hasattr(first, "getZFlex") or len(first.getZFlex()) == 0:
            errors.append("The input particles carry no latent vectors (zFlex).")
        errors += self.problems(
            lambda: checks.positive(self.numClasses.get(),
                                    "the number of classes (0 = automatic)", allow_zero=True),
            lambda: checks.positive(self.outlierThreshold.get(),
                                    "the outlier score threshold (0 = no outliers)",
                                    allow_zero=True))
        if not 0 <= self.outlierFraction.get() < 0.5:
            errors.append("The outlier fraction must be in [0, 0.5).")
        if self.numFrames.get() < 2 or self.numPCs.get() < 0:
            errors.append("Use at least 2 frames per series and 0 or more principal axes.")
        anchors = (self.pathAnchors.get() or "").strip()
        if anchors:
            found = self.problems(lambda: paths.parse_anchors(anchors))
            errors += found
            k = self.numClasses.get()
            if not found and k > 0:
                errors += ["Path anchor class:%d: the analysis makes %d classes." % (c, k)
                           for kind, c in paths.parse_anchors(anchors)
                           if kind == "class" and not 1 <= c <= k]
        if self.weightByConfidence.get() and getattr(first, "_gmmConfidence", None) is None:
            errors.append("These particles carry no latent confidence to use in the "
                          "maps: use the Particles output of 'heterogeneity training' "
                          "(or switch the confidence off).")
        elif self.weightByConfidence.get() and not self._networks():
            errors.append("Using the confidence in the frame maps needs the trained "
                          "networks of 'heterogeneity training', which these particles "
                          "do not lead to (or switch the confidence off).")
        if self.particlesPerFrame.get() < 0 or self.particlesPerFrame.get() == 1:
            errors.append("Particles per frame: 0 (automatic) or at least 2, to "
                          "reconstruct.")
        box = self.reconstructionBox.get()
        if box and (box < 0 or box % 2 or box > inp.getXDim()):
            errors.append("The reconstruction box must be even and at most the particle "
                          "box (%d px)." % inp.getXDim())
        return errors

    def _summary(self):
        info = self._info()
        if info is None:
            return ["Output not ready yet."]
        lines = ["%d classes (%s, %s): %s." % (
            info["num_classes"], CLUSTERING_LABELS[info["clustering"]],
            "number chosen %s" % K_CHOICE[info["clustering"]]
            if info["k_chosen_automatically"] else "number given",
            ", ".join("%d particles at %.1f Å" % (c["size"], c["resolution"] or 0)
                      for c in info["classes"]))]
        series = info.get("series", [])
        lines.append("%d volume series (%s), %d frames in all; %d outliers."
                     % (len(series), ", ".join(series_label(s) for s in series),
                        len(info["frames"]), info["outliers"]))
        if info.get("path_anchors"):
            occ = [f.get("occupancy", 0) for f in info["frames"] if f["series"] == PATH]
            lines.append("Path through %s: occupancy of its frames (the particles "
                         "nearest each) %s."
                         % (info["path_anchors"], " ".join(map(str, occ))))
            if info.get("path_jumps_a_gap"):
                lines.append("The path's anchors lie in separate populations: it jumps "
                             "across empty latent space, where frames hold no particles "
                             "and their maps are guesses of the decoder.")
        widened = [f for f in info["frames"] if f.get("shell_particles")]
        if widened:
            lines.append("Frame maps widened by the confidence: finest detail from %s "
                         "particles, coarsest from the frames' own."
                         % _span([f["shell_particles"][-1] for f in widened]))
        return lines

    def _methods(self):
        info = self._info()
        if info is None:
            return []
        series = info.get("series", [])
        kinds = []
        if any(s.startswith("pc") for s in series):
            kinds.append("the first principal axes of the latents")
        if any(s.startswith("class") for s in series):
            kinds.append("each class's principal curve (Hastie & Stuetzle 1989)")
        if PATH in series:
            kinds.append("the shortest path between %s on the particles' nearest-neighbour "
                         "graph with squared edge lengths (a density-based distance, "
                         "Bijral et al. 2011)" % info["path_anchors"])
        sizes = [f["particles"] for f in info["frames"] if "particles" in f]
        each = ("; each frame was reconstructed from the %s particles nearest to it in the "
                "latent space" % _span(sizes)) if sizes else ""
        widened = [f["shell_particles"][-1] for f in info["frames"]
                   if f.get("shell_particles")]
        if widened:
            each += (", and in each Fourier shell from up to three times as many (%s at "
                     "the finest), as far as the change of the decoded map over the "
                     "particles' states, their posterior spread from the latent "
                     "confidence, and the half-map noise predicted a smaller error"
                     % _span(widened))
        return ["The GMM latent space was clustered by %s into %d classes%s, each "
                "reconstructed by direct Fourier inversion with CTF correction%s; volume "
                "series were computed along %s%s (gmmplugin)."
                % (CLUSTERING_LABELS[info["clustering"]], info["num_classes"],
                   " (number chosen %s)" % K_CHOICE[info["clustering"]]
                   if info["k_chosen_automatically"] else "",
                   ", particles weighted by their latent confidence"
                   if info.get("weights") == "confidence" else "",
                   "; ".join(kinds) or "no series", each)]

    def _citations(self):
        return ["Chen2021"]
