"""GmmProtRefineOrientations: refine each particle's pose against its own GMM."""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import FSC, SetOfParticles, SetOfParticlesFlex, Volume
from pwem.protocols import ProtAnalysis3D, ProtFlexBase

from ..convert import (gmm_flex_attr, map_file, update_transforms, validate_particles,
                       write_latents)
from ..engine import checks, layout
from ..engine.particles import Particles
from .protocol_base import GmmProtBase


# Output name -> class (a dict: two outputs may share a class, which an Enum
# would silently turn into aliases).
PARTICLES, VOLUME, FSC_CURVE = "Particles", "Volume", "FSC"
OUTPUTS = {PARTICLES: SetOfParticles,     # a SetOfParticlesFlex when the input has latents
           VOLUME: Volume, FSC_CURVE: FSC}


class GmmProtRefineOrientations(GmmProtBase, ProtAnalysis3D, ProtFlexBase):
    """Refine every particle's orientation and shift by gradient descent on the
    noise-whitened correlation (the maximum-likelihood score) between the
    particle and the CTF-modulated projection of its own decoded GMM (or of the
    neutral GMM), starting from its input pose and bounded by the limits.
    With a flexible molecule the consensus poses are a compromise; refined
    poses sharpen reconstructions of the flexible parts."""
    _label = "refine orientations"
    _possibleOutputs = OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      pointerCondition="hasAlignmentProj", important=True,
                      label="Input particles",
                      help="The Particles output of 'heterogeneity training' (each "
                           "particle is refined against its decoded GMM), or plain "
                           "particles together with a neutral GMM.")
        form.addParam("inputGmm", params.PointerParam, pointerClass="GmmModel",
                      allowsNull=True, label="Neutral GMM (plain particles)",
                      help="Needed when the particles carry no GMM latents.")
        form.addParam("maxAngularChange", params.FloatParam, default=10.0,
                      label="Max angular change (deg)",
                      help="No particle's orientation changes by more than this.")
        form.addParam("maxShiftChange", params.FloatParam, default=5.0,
                      label="Max shift change (Å)",
                      help="No particle's in-plane shift changes by more than this.")
        form.addParam("iterations", params.IntParam, default=60, label="Iterations",
                      help="Gradient steps per particle (first quarter at half the "
                           "resolution for a wider capture range). Fewer are faster; raise "
                           "it when the log shows poses still improving at the end.")
        form.addParam("significance", params.FloatParam, default=0.05,
                      expertLevel=params.LEVEL_ADVANCED, label="Move significance",
                      help="A particle keeps its input pose unless the refined pose fits "
                           "its image significantly better (likelihood-ratio test, "
                           "χ² with 5 degrees of freedom, at this level). Within the "
                           "noise a pose is only determined to about a degree; the test "
                           "stops correct poses from wandering inside that range. "
                           "0 accepts every refined pose.")
        form.addParam("maxResolution", params.FloatParam, default=8.0,
                      label="Max resolution (Å)",
                      help="High end of the frequency band used for alignment.")
        form.addParam("focusMask", params.PointerParam, pointerClass="VolumeMask",
                      allowsNull=True, label="Focus mask (optional)",
                      help="Align on the Gaussians inside the mask only; the rest is "
                           "subtracted from the particles (signal subtraction).")
        form.addParam("retrain", params.BooleanParam, default=False,
                      label="Retrain with the refined poses?",
                      help="One more training round (continuing the input's networks) "
                           "so the latents match the new poses.")
        form.addParam("retrainEpochs", params.IntParam, default=5, condition="retrain",
                      label="Extra epochs",
                      help="The most epochs of the retraining round, added to those "
                           "already run; like the training, it stops earlier once the "
                           "held-out particles' score levels off.")
        self._defineEngineParams(form, nodes=True)

    # -- helpers -----------------------------------------------------------------------
    def _flex_attr(self, name):
        val = gmm_flex_attr(self.inputParticles.get(), name)
        return val if val and (not isinstance(val, str) or os.path.exists(val) or
                               name == "latentDim") else None

    def _gmm_path(self):
        if self.inputGmm.get() is not None:
            return os.path.abspath(self.inputGmm.get().getFileName())
        return self._flex_attr("gmmPath")

    def _decoded(self):
        return self._flex_attr("modelPath") is not None and self._gmm_path() is not None

    # -- steps ---------------------------------------------------------------------------
    def _insertAllSteps(self):
        self._insertSteps(self.convertInputStep, (self.refineStep, True),
                          *([(self.retrainStep, True)] if self.retrain.get() else []),
                          (self.reconstructStep, True), self.createOutputStep)

    def convertInputStep(self, inputs):
        inp = self.inputParticles.get()
        self.convertParticles(inp)
        if isinstance(inp, SetOfParticlesFlex):
            write_latents(inp, self._getFileName("latents_in"))

    def refineStep(self, inputs):
        args = ["--particles %s" % self._getFileName("particles"),
                "--gmm %s" % self._gmm_path(), "--out-dir %s" % self._getExtraPath(),
                "--max-res %g" % self.maxResolution.get(),
                "--max-angle %g" % self.maxAngularChange.get(),
                "--max-shift %g" % self.maxShiftChange.get(),
                "--iterations %d" % self.iterations.get(),
                "--significance %g" % self.significance.get()]
        if self._decoded():
            args += ["--checkpoint %s" % self._flex_attr("modelPath"),
                     "--latents %s" % self._getFileName("latents_in")]
        if self.focusMask.get() is not None:
            args.append("--focus-mask %s" % map_file(self.focusMask.get(),
                                                    self._getTmpPath("focus.mrc")))
        self.runEngine("refine-poses", " ".join(args))

    def retrainStep(self, inputs):
        """More epochs of the input's networks, with their own settings, on the
        refined poses (the engine reads the settings from the checkpoint)."""
        args = ["--particles %s" % self._getFileName("particles_refined"),
                "--gmm %s" % self._gmm_path(), "--out-dir %s" % self._retrainDir(),
                "--continue-from %s" % self._flex_attr("modelPath"),
                "--more-epochs %d" % self.retrainEpochs.get()]
        self.runEngine("train", " ".join(args))

    def _retrainDir(self):
        return self._getExtraPath("retrain")

    def reconstructStep(self, inputs):
        self.runEngine("reconstruct", "--particles %s --out-dir %s --name map" % (
            self._getFileName("particles_refined"), self._getExtraPath()))

    def createOutputStep(self, inputs):
        inp = self.inputParticles.get()
        refined = Particles.load(self._getFileName("particles_refined"))
        lat_path = layout.path(self._retrainDir(), "latents")
        new_z = None
        if os.path.exists(lat_path):
            lat = np.load(lat_path)
            new_z = dict(zip(lat["ids"].tolist(), lat["z"].tolist()))
        flex = isinstance(inp, SetOfParticlesFlex)
        out = (self._createSetOfParticlesFlex(progName=inp.getFlexInfo().getProgName())
               if flex else self._createSetOfParticles())
        update_transforms(inp, out, refined.rotations, refined.shifts, refined.ids,
                          None if new_z is None else
                          (lambda p: p.setZFlex(new_z[p.getObjId()])))
        if flex:
            out.setFlexInfo(inp.getFlexInfo())
            if new_z is not None:
                out.getFlexInfo().setAttr("modelPath", os.path.abspath(
                    layout.path(self._retrainDir(), "checkpoint")))
                out.getFlexInfo().setAttr("latentsPath", os.path.abspath(lat_path))
        out.setHasCTF(inp.hasCTF())
        out.setAlignmentProj()
        vol, fsc = self.volumeAndFsc()
        self._defineOutputs(**{PARTICLES: out, VOLUME: vol, FSC_CURVE: fsc})
        self._defineTransformRelation(self.inputParticles, out)
        for o in (vol, fsc):
            self._defineSourceRelation(self.inputParticles, o)
        if self.inputGmm.get() is not None:
            self._defineSourceRelation(self.inputGmm, out)

    def _recon_info(self):
        return self.readResult("map_info", name="map")

    def _refine_info(self):
        return self.readResult("refine_info")

    def _validate(self):
        errors = validate_particles(self.inputParticles.get())
        if errors:
            return errors
        if self._gmm_path() is None:
            errors.append("The particles carry no GMM latents from a training run: select "
                          "a neutral GMM.")
        if self.retrain.get() and not self._decoded():
            errors.append("Retraining needs the Particles output of a training run.")
        errors += self.problems(
            lambda: checks.positive(self.maxAngularChange.get(), "the max angular change"),
            lambda: checks.positive(self.maxShiftChange.get(), "the max shift change",
                                    allow_zero=True),
            lambda: checks.positive(self.iterations.get(), "the number of iterations"),
            lambda: checks.fraction(self.significance.get(), "the move significance"),
            lambda: checks.resolution_within_nyquist(
                self.maxResolution.get(), self.inputParticles.get().getSamplingRate()))
        if self.retrain.get():
            errors += self.problems(lambda: checks.positive(self.retrainEpochs.get(),
                                                            "the number of extra epochs"))
        return errors + self._gmm_errors() + self._validateNodes()

    def _gmm_errors(self):
        """The chosen GMM must cover the particles' box and, with trained networks,
        be the GMM they were trained on; a focus mask must match the particles."""
        parts, gmm, errors = self.inputParticles.get(), self.inputGmm.get(), []
        if gmm is not None:
            errors += self.problems(lambda: checks.same_extent(
                gmm.getBoxSize(), gmm.getSamplingRate(), parts.getXDim(),
                parts.getSamplingRate(), "the GMM"))
        trained = self._flex_attr("gmmPath")
        if gmm is not None and trained and self._flex_attr("modelPath"):
            with np.load(trained) as f:
                n_trained = len(f["params"])
            if gmm.getNumGaussians() and gmm.getNumGaussians() != n_trained:
                errors.append("The particles' networks were trained on a GMM of %d "
                              "Gaussians; the selected GMM has %d. Select that GMM or "
                              "none." % (n_trained, gmm.getNumGaussians()))
        mask = self.focusMask.get()
        if mask is not None:
            errors += self.problems(lambda: checks.same_extent(
                mask.getDim()[0], mask.getSamplingRate(), parts.getXDim(),
                parts.getSamplingRate(), "the focus mask"))
        return errors

    def _summary(self):
        info = self._refine_info()
        if info is None:
            return ["Output not ready yet."]
        lines = ["%d particles refined against their %s GMM: median change %.2f° and "
                 "%.2f Å; %.1f particles/s (%d iterations)."
                 % (info["particles"], info["source"], info["median_angle_change"],
                    info["median_shift_change_A"], info["particles_per_s"],
                    info["iterations"])]
        if "moved_fraction" in info:
            lines.append("%.1f%% of the poses moved (significantly better than the input "
                         "at level %g)." % (100 * info["moved_fraction"], info["significance"]))
        if self._recon_info() is not None:
            lines.append("Reconstruction: FSC 0.143 at %.2f Å."
                         % self._recon_info()["resolution_0143"])
        return lines

    def _methods(self):
        info = self._refine_info()
        if info is None:
            return []
        return ["Particle orientations were refined locally (gmmplugin) by gradient descent "
                "on the %s against each particle's %s Gaussian mixture model (limits %g° "
                "and %g Å); a refined pose replaced the input only when a likelihood-ratio "
                "test favoured it at level %g." % (
                    "FRC" if info.get("objective") == "frc" else "noise-whitened correlation",
                    info["source"], self.maxAngularChange.get(), self.maxShiftChange.get(),
                    info.get("significance", 0))]

    def _citations(self):
        return ["Chen2021"]
