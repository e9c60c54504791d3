"""GmmProtAnalyze: classes, volume series and outliers from a GMM latent space."""
import os

import numpy as np
import pyworkflow.object as pwobj
import pyworkflow.protocol.params as params
from pwem.objects import SetOfClasses3D, SetOfParticlesFlex, SetOfVolumesFlex, VolumeFlex
from pwem.protocols import ProtAnalysis3D, ProtFlexBase

from ..constants import FLEX_PROGRAM
from ..convert import flex_item, gmm_flex_attr, validate_particles, write_latents
from ..engine import checks, layout
from .protocol_base import GmmProtBase

REDUCTIONS = ["PCA", "UMAP"]
CLUSTERINGS = ["gmm", "kmeans"]          # the engine's names of the form's choices
CLUSTERING_LABELS = {"gmm": "a Gaussian mixture with full covariances", "kmeans": "k-means"}


# Output name -> class (a dict: two outputs may share a class, which an Enum
# would silently turn into aliases).
CLASSES, VOLUMES, GMM_VOLUMES, PARTICLES, OUTLIERS = (
    "Classes", "Volumes", "GmmVolumes", "Particles", "Outliers")
OUTPUTS = {CLASSES: SetOfClasses3D,
           VOLUMES: SetOfVolumesFlex,        # reconstructions along the trajectories
           GMM_VOLUMES: SetOfVolumesFlex,    # decoded GMM maps of the same frames
           PARTICLES: SetOfParticlesFlex,    # inliers
           OUTLIERS: SetOfParticlesFlex}


class GmmProtAnalyze(GmmProtBase, ProtAnalysis3D, ProtFlexBase):
    """Turn a GMM latent space into maps: classes reconstructed in 3D,
    trajectories along the principal axes (decoded GMM maps and reconstructions
    of the particles nearest each frame), and a subset of outlier particles."""
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
                      choices=["Gaussian mixture (full covariance)", "k-means"], default=0,
                      label="Clustering",
                      help="Gaussian mixture: each class is a Gaussian with its own shape, "
                           "so a population that is both a discrete state and moving "
                           "(elongated in the latent space) stays one class. k-means: "
                           "round classes of similar size, which cut such populations "
                           "along their motion; use it to split a continuous motion "
                           "into steps.")
        form.addParam("numClasses", params.IntParam, default=0, label="Number of classes",
                      help="0 = automatic: for the Gaussian mixture, k in 1..8 with the "
                           "lowest Bayesian information criterion, then classes with no "
                           "density valley between them are merged (a state spread along "
                           "a motion stays one class); for k-means, k in 2..8 with the "
                           "best silhouette score, or 1 if no k reaches 0.25. A number "
                           "given here is used as it is.")
        form.addParam("reduction", params.EnumParam, choices=REDUCTIONS, default=0,
                      label="2D reduction", help="For display and zRed.")
        form.addSection(label="Trajectories")
        form.addParam("numPCs", params.IntParam, default=2, label="Principal axes",
                      help="Volume series along the first PCs of the latents.")
        form.addParam("numFrames", params.IntParam, default=7, label="Frames per axis",
                      help="Frames span the populated range (2nd–98th percentile).")
        form.addParam("particlesPerFrame", params.IntParam, default=500,
                      label="Particles per frame",
                      help="The particles nearest each frame point are reconstructed.")
        form.addSection(label="Outliers")
        form.addParam("outlierThreshold", params.FloatParam, default=3.5,
                      label="Outlier score threshold",
                      help="A particle's outlier score is the larger of two robust z-scores "
                           "(median/MAD): of its FRC against its decoded GMM (low = poorly "
                           "explained: junk, another protein, noise) and of its latent "
                           "distance from the rest. Particles scoring above this are "
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
                "--outlier-fraction %g" % self.outlierFraction.get(),
                "--outlier-threshold %g" % self.outlierThreshold.get(),
                "--box %d" % self.reconstructionBox.get()]
        ck, gmm = self._flex("modelPath"), self._flex("gmmPath")
        if ck and gmm and os.path.exists(str(ck)) and os.path.exists(str(gmm)):
            args += ["--checkpoint %s" % ck, "--gmm %s" % gmm]
        self.runEngine("analyze", " ".join(args))

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

        def volume_series(kind, suffix):
            vols = self._createSetOfVolumesFlex(suffix=suffix, progName=FLEX_PROGRAM)
            vols.setSamplingRate(apix)
            for fr in info["frames"]:
                fn = self._frameFile(kind, fr["pc"], fr["frame"])
                if not os.path.exists(fn):
                    continue
                v = VolumeFlex(progName=FLEX_PROGRAM)
                v.setLocation(fn)
                v.setSamplingRate(apix)
                v.setZFlex(fr["latent"])
                v.setObjLabel("PC%d frame %d" % (fr["pc"], fr["frame"]))
                vols.append(v)
            return vols

        outputs = {CLASSES: classes, VOLUMES: volume_series("frame", "frames")}
        if info["decoded"]:
            outputs[GMM_VOLUMES] = volume_series("gmm_frame", "gmmframes")

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
                    s.append(item)
            return s

        outputs[PARTICLES] = subset("inliers", False)
        if any(outlier.values()):  # no empty set for downstream protocols to trip on
            outputs[OUTLIERS] = subset("outliers", True)
        self._defineOutputs(**outputs)
        for out in outputs.values():
            self._defineSourceRelation(self.inputParticles, out)

    def _frameFile(self, kind, pc, frame):
        """The map of a trajectory frame: its reconstruction ("frame") or its
        decoded GMM ("gmm_frame")."""
        if kind == "gmm_frame":
            return self._getFileName("gmm_frame", pc=pc, frame=frame)
        return self._getFileName("map", name=layout.name("frame", pc=pc, frame=frame))

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
        if self.numFrames.get() < 2 or self.numPCs.get() < 1:
            errors.append("Use at least 1 principal axis and 2 frames.")
        if self.particlesPerFrame.get() < 2:
            errors.append("At least 2 particles per frame are needed to reconstruct.")
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
            "automatic" if info["k_chosen_automatically"] else "given",
            ", ".join("%d particles at %.1f Å" % (c["size"], c["resolution"] or 0)
                      for c in info["classes"]))]
        lines.append("%d trajectory frames; %d outliers." % (len(info["frames"]),
                                                              info["outliers"]))
        return lines

    def _methods(self):
        info = self._info()
        if info is None:
            return []
        return ["The GMM latent space was clustered by %s into %d classes%s, each "
                "reconstructed by direct Fourier inversion with CTF correction; volume series "
                "were computed along the first principal axes of the latents (gmmplugin)."
                % (CLUSTERING_LABELS[info["clustering"]], info["num_classes"],
                   " (number by the Bayesian information criterion)"
                   if info["k_chosen_automatically"] and info["clustering"] == "gmm" else "")]

    def _citations(self):
        return ["Chen2021"]
