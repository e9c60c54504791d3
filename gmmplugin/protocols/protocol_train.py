"""GmmProtTrain: every particle -> a latent vector of the GMM decoder."""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticlesFlex
from pwem.protocols import ProtAnalysis3D, ProtFlexBase

from ..constants import FLEX_PROGRAM
from ..convert import append_flex_particles, map_file, mask_voxels, validate_particles
from ..engine import checks
from ..engine.particles import Particles
from ..engine.settings import (AUTOMATIC_BATCH_MAX, FEW_PER_CLASS, PROJECTION_BYTES,
                               RefineLatentsConfig, TrainConfig, automatic_classes,
                               automatic_max_res)
from ..engine.symmetry import parse_symmetry, symmetry_operators
from .protocol_base import GmmProtBase

CTF_FULL, CTF_PHASE_FLIP = 0, 1
LOSS_FRC, LOSS_WHITENED = 0, 1
LOSS_NAMES = {LOSS_FRC: "frc", LOSS_WHITENED: "whitened"}
HELD_OUT = TrainConfig.held_out     # fraction of particles that decides when to stop


# Output name -> class (a dict: two outputs may share a class, which an Enum
# would silently turn into aliases).
PARTICLES = "Particles"
OUTPUTS = {PARTICLES: SetOfParticlesFlex}


class GmmProtTrain(GmmProtBase, ProtAnalysis3D, ProtFlexBase):
    """Heterogeneity training (e2gmm): an encoder maps each particle (through
    the gradient of its similarity score w.r.t. the neutral GMM) to a latent
    vector; a decoder maps latent vectors to changes of the Gaussians
    (positions, amplitudes, widths), trained so that each particle's decoded
    GMM, projected with its pose and CTF, matches the particle.
    Output: the particles with their latent vectors (SetOfParticlesFlex), each
    with its latent confidence (_gmmConfidence, 0-1: how well its own image
    determines its latent) and spread (_gmmLatentSd, latent units)."""
    _label = "heterogeneity training"
    _possibleOutputs = OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("doContinue", params.BooleanParam, default=False,
                      label="Continue a previous run?",
                      help="Resume the networks of a previous training run from its last "
                           "checkpoint (set more epochs than it ran).")
        form.addParam("continueRun", params.PointerParam, pointerClass="GmmProtTrain",
                      condition="doContinue", allowsNull=True, label="Previous run",
                      help="The training run to continue.")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      pointerCondition="hasAlignmentProj", important=True,
                      label="Input particles",
                      help="Particles with 3D alignment and CTF, e.g. from a RELION or "
                           "cryoSPARC consensus refinement.")
        form.addParam("inputGmm", params.PointerParam, pointerClass="GmmModel",
                      important=True, label="Neutral GMM",
                      help="Output of 'fit neutral GMM' on the consensus map of these "
                           "particles.")
        form.addParam("latentDim", params.IntParam, default=4, label="Latent dimension",
                      help="Size of the latent vector (1-16). 4 is a good start; 2 lets "
                           "a single closed-loop (cyclic) motion be plotted directly.")
        form.addParam("maxResolution", params.FloatParam, default=0.0,
                      label="Max resolution (Å)",
                      help="High end of the resolution band. Particles are Fourier-cropped so "
                           "that this is their Nyquist frequency, which sets the speed. "
                           "Finer values see smaller changes and cost more (an epoch's "
                           "cost grows with the square of 1/resolution). 0 = automatic: "
                           "the resolution the neutral GMM was fitted at (finer detail is "
                           "not in the model), but no finer than 6 Å; the log and the "
                           "summary say what was used.")
        form.addParam("minResolution", params.FloatParam, default=100.0,
                      expertLevel=params.LEVEL_ADVANCED, label="Min resolution (Å)",
                      help="Low end of the resolution band.")
        form.addSection(label="What varies")
        form.addParam("varyPositions", params.BooleanParam, default=True,
                      label="Vary positions", help="Conformational changes.")
        form.addParam("varyAmplitudes", params.BooleanParam, default=True,
                      label="Vary amplitudes", help="Compositional changes / occupancy.")
        form.addParam("varyWidths", params.BooleanParam, default=False,
                      label="Vary widths", help="Local resolution / flexibility changes.")
        form.addParam("focusMask", params.PointerParam, pointerClass="VolumeMask",
                      allowsNull=True, label="Focus mask (optional)",
                      help="Only Gaussians whose centres lie inside this mask may change "
                           "(focused analysis). Same box as the consensus map.")
        form.addParam("symmetry", params.StringParam, default="c1", label="Symmetry",
                      help="Point-group symmetry of the consensus: c1 (none), Cn or Dn "
                           "(RELION convention: n-fold about z, Dn's 2-fold about x). With "
                           "symmetry every particle is expanded into one copy per group "
                           "element (pose A·Rgᵀ) and only the Gaussians of one asymmetric "
                           "unit may vary, so each subunit of each particle gets its own "
                           "latent vector. The output then holds n×G particles, each "
                           "with its source particle id (_gmmSourceId) and copy index "
                           "(_gmmSymCopy). A focus mask further restricts the varying "
                           "Gaussians to its part of the asymmetric unit.")
        form.addParam("ctfMode", params.EnumParam, choices=["full CTF", "phase-flipped"],
                      default=CTF_FULL, label="CTF handling",
                      help="full CTF: the projection of the GMM is multiplied by each "
                           "particle's CTF (raw particles). phase-flipped: for particles "
                           "whose phases were already corrected (|CTF| is used).")
        form.addParam("lossFunction", params.EnumParam,
                      choices=["FRC", "noise-whitened correlation"], default=LOSS_FRC,
                      expertLevel=params.LEVEL_ADVANCED, label="Similarity score",
                      help="How a particle is compared with the projection of its GMM, "
                           "both for the encoder's input (the score's gradient) and for "
                           "training. FRC (default): the mean Fourier ring correlation "
                           "of the e2gmm paper, every ring with the same weight. "
                           "Noise-whitened correlation: every Fourier pixel weighted by "
                           "the inverse noise power of its ring (the maximum-likelihood "
                           "score), so noisy high-resolution rings count less; try it for "
                           "a small domain moving on a closed loop. A run can only be "
                           "continued with the score it started with.")
        form.addSection(label="Training")
        form.addParam("stopOnPlateau", params.BooleanParam, default=True,
                      label="Stop when the held-out score levels off?",
                      help="Keep 5 % of the particles (at most 1000) out of the "
                           "optimisation and score them after every epoch. When their "
                           "score stops improving for two epochs (and at least 300 "
                           "optimisation steps, which on a small set is more epochs), the "
                           "learning rate is halved (a stalled score often rises again at a lower rate); "
                           "after the third halving, the next stall ends the training. "
                           "The held-out particles still get their latents. Sets under "
                           "1000 particles always train the number of epochs below. No: "
                           "train exactly that many epochs, the learning rate decaying "
                           "over all of them.")
        form.addParam("numEpochs", params.IntParam, default=20, label="Epochs (at most)",
                      help="With stopping at a plateau, the most passes over the particles "
                           "(the log and the summary say why the training stopped: raise "
                           "it when they say the cap was reached while the score still "
                           "rose); otherwise the exact number. It is the total, also when "
                           "continuing a run.")
        form.addParam("batchSize", params.IntParam, default=0,
                      label="Batch size (0 = automatic)",
                      help="Particles per optimisation step; 0 = automatic: the most whose "
                           "step fits in half of the memory free when training starts "
                           "(GPU memory, or RAM when training on the CPU), at most %d, "
                           "the batch the learning rate was tuned at; the log says what "
                           "was chosen and why. A step needs about batch × Gaussians × "
                           "1.5 box × %d bytes. Set a number when other jobs will take "
                           "memory from the device later, or to repeat a run exactly on "
                           "another machine." % (AUTOMATIC_BATCH_MAX, PROJECTION_BYTES))
        form.addParam("learningRate", params.FloatParam, default=1e-3,
                      expertLevel=params.LEVEL_ADVANCED, label="Learning rate (Adam)",
                      help="Peak learning rate, reached after a one-epoch warm-up, then "
                           "halved at each plateau of the held-out score (or decayed over "
                           "all epochs when the training does not stop at a plateau).")
        form.addParam("klWeight", params.FloatParam, default=5e-3,
                      expertLevel=params.LEVEL_ADVANCED, label="Latent KL weight",
                      help="Weight of the variational term that pulls the latents towards "
                           "a standard normal (0 = plain latent noise). It switches off "
                           "latent dimensions that explain nothing; too large, it also "
                           "switches off weak motions, and it folds closed-loop (cyclic) "
                           "motions into one dimension: lower it (1e-3 or 0) for those.")
        form.addParam("seed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label="Random seed",
                      help="Seed of the network initialisation and particle order; the "
                           "same seed and input give the same result on the same device.")
        form.addSection(label="Latent refinement")
        form.addParam("refineLatents", params.BooleanParam, default=False,
                      label="Refine latents by 3D classification?",
                      help="After training, re-read each particle's latent against "
                           "reconstructions of classes along the latent space (below). "
                           "It sharpens the latents at the cost of about one more "
                           "training's time on a CPU; the log and the summary give the "
                           "time it took. Sets too small for enough particles per class "
                           "skip it (the log says so). The refined latents gather at the "
                           "class centres: the automatic classes of 'analyze latent "
                           "space' read such latents poorly, so check them against the "
                           "encoder's (outlier scores use the encoder's latents).")
        form.addParam("refineClasses", params.IntParam, default=0,
                      condition="refineLatents", label="Classes (0 = automatic)",
                      help="After training, re-read each particle's latent by masked 3D "
                           "classification: k-means splits the latent space into this "
                           "many classes, each class is reconstructed from its particles "
                           "(two half sets), the maps are compared inside the region "
                           "where they differ, and every particle's latent becomes the "
                           "posterior-weighted mean of the class centres, judged against "
                           "the other half set's maps. It recovers state that the "
                           "encoder's one-gradient view misses (small domains, closed "
                           "loops, continuous motions). Use it when the latent plot looks "
                           "blurred or a known motion is weak in it; it needs enough "
                           "particles per class (a warning says when there are too few). "
                           "Cost: per round one reconstruction and one comparison with "
                           "every class per particle, about as much as the training again "
                           "on a CPU; memory about 64 bytes × classes × (2 × box at that "
                           "resolution)³. The encoder's own latents are kept as well. "
                           "0 = automatic: enough classes that each keeps 120 particles "
                           "per half set, from 4 to 36, fewer if memory is short.")
        form.addParam("refineIterations", params.IntParam, default=4,
                      condition="refineLatents", label="Rounds",
                      help="Classification rounds after the first reconstructions. "
                           "After each round the class centres move to the mean encoder "
                           "latent of their particles, and the log reports how far (in "
                           "neighbour distances): a falling figure means the "
                           "classification is settling; it can also rise when centres of "
                           "one state crowd together. Add rounds while it keeps falling.")
        form.addParam("refineResolution", params.FloatParam, default=0.0,
                      condition="refineLatents", label="Resolution (Å)",
                      help="Finest resolution of the comparison (0 = the training's max "
                           "resolution). It can be finer than the training band: "
                           "classification uses the particle images directly, and the "
                           "class maps are filtered by their half-set FSC, so shells "
                           "without class-specific signal do not add noise.")
        form.addParam("likelihoodSteps", params.IntParam, default=5,
                      label="Likelihood steps per particle",
                      help="Last, each particle's latent moves to where its own image "
                           "fits best: a few Gauss-Newton steps on its noise-whitened "
                           "likelihood through the decoder, at its pose and CTF, with a "
                           "prior centred on its encoder latent that spreads as its "
                           "neighbourhood in the latent space does (the nearest fifth "
                           "of the particles), wider along the local motion (a latent "
                           "moves only "
                           "where image and prior together favour it). It closes the gap "
                           "between one encoder for all particles and each particle's "
                           "own best latent, so motions read more sharply from the "
                           "latents; it costs a fraction of the training's time (the log "
                           "and the summary give it). The encoder's latents are kept as "
                           "well, and the outlier scores of 'analyze latent space' use "
                           "them. 5 steps are enough to converge; 0 = off.")
        form.addParam("likelihoodSignificance", params.FloatParam, default=0.0,
                      condition="likelihoodSteps > 0", expertLevel=params.LEVEL_ADVANCED,
                      label="Significance of a move",
                      help="If > 0, a refined latent replaces the encoder's only when "
                           "its likelihood gain is significant at this level (a "
                           "likelihood-ratio test, as the pose refinement uses). 0 keeps "
                           "every move that raises the posterior.")
        self._defineEngineParams(form, nodes=True)

    # -- steps ---------------------------------------------------------------------------
    def _insertAllSteps(self):
        self._insertSteps(self.convertInputStep, (self.trainStep, True),
                          self.createOutputStep)

    def convertInputStep(self, inputs):
        self.convertParticles(self.inputParticles.get())

    def _continueCheckpoint(self):
        if self.doContinue.get() and self.continueRun.get() is not None:
            return self.continueRun.get()._getFileName("checkpoint")
        return None

    def _engineArgs(self):
        args = ["--particles %s" % self._getFileName("particles"),
                "--gmm %s" % os.path.abspath(self.inputGmm.get().getFileName()),
                "--out-dir %s" % self._getExtraPath(),
                "--latent-dim %d" % self.latentDim.get(), "--epochs %d" % self.numEpochs.get(),
                "--held-out %g" % (HELD_OUT if self.stopOnPlateau.get() else 0),
                "--batch %d" % self.batchSize.get(), "--lr %g" % self.learningRate.get(),
                "--max-res %g" % self.maxResolution.get(),     # 0: the engine chooses
                "--min-res %g" % self.minResolution.get(),
                "--vary-positions %d" % self.varyPositions.get(),
                "--vary-amplitudes %d" % self.varyAmplitudes.get(),
                "--vary-widths %d" % self.varyWidths.get(),
                "--ctf-mode %s" % ("full" if self.ctfMode.get() == CTF_FULL else "phase_flip"),
                "--seed %d" % self.seed.get(), "--latent-kl %g" % self.klWeight.get(),
                "--loss %s" % LOSS_NAMES[self.lossFunction.get()],
                "--symmetry %s" % self._symmetry(),
                "--refine-classes %d" % self._refineClassesArg(),
                "--refine-iterations %d" % self.refineIterations.get(),
                "--refine-res %g" % self.refineResolution.get(),
                "--likelihood-steps %d" % self.likelihoodSteps.get(),
                "--likelihood-significance %g" % self.likelihoodSignificance.get()]
        if self.focusMask.get() is not None:
            args.append("--focus-mask %s" % map_file(self.focusMask.get(),
                                                    self._getTmpPath("focus.mrc")))
        return args

    def trainStep(self, inputs):
        args = self._engineArgs()
        ck = self._continueCheckpoint()
        if ck:
            args.append("--continue-from %s" % ck)
        elif os.path.exists(self._getFileName("checkpoint")):
            args.append("--resume")   # this run was interrupted: pick up where it stopped
        self.runEngine("train", " ".join(args))

    def createOutputStep(self, inputs):
        inp = self.inputParticles.get()
        lat = np.load(self._getFileName("latents"))
        out = self._createSetOfParticlesFlex(progName=FLEX_PROGRAM)
        out.copyInfo(inp)
        out.setHasCTF(inp.hasCTF())
        out.setAlignmentProj()
        flex = out.getFlexInfo()
        flex.setAttr("modelPath", self._info()["checkpoint"])
        flex.setAttr("gmmPath", os.path.abspath(self.inputGmm.get().getFileName()))
        flex.setAttr("latentDim", int(self.latentDim.get()))
        flex.setAttr("maxResolution", float(self._info()["config"]["max_res"]))
        flex.setAttr("minResolution", float(self.minResolution.get()))
        flex.setAttr("latentsPath", self._getFileName("latents"))
        flex.setAttr("symmetry", self._symmetry())
        expanded = (Particles.load(self._getFileName("expanded"))
                    if "source_ids" in lat else None)
        append_flex_particles(inp, out, lat, expanded)
        self._defineOutputs(**{PARTICLES: out})
        self._defineSourceRelation(self.inputParticles, out)
        self._defineSourceRelation(self.inputGmm, out)

    def _symmetry(self):
        return (self.symmetry.get() or "c1").strip().lower()

    def _info(self):
        return self.readResult("training")

    def _refineClassesArg(self):
        """The engine's --refine-classes: 0 = off, -1 = automatic, or the number."""
        if not self.refineLatents.get():
            return 0
        return self.refineClasses.get() or -1

    def _maxResolution(self):
        """The training band's high end: the form's value, or (0) the automatic
        choice from the neutral GMM's resolution."""
        if self.maxResolution.get() > 0:
            return self.maxResolution.get()
        gmm, parts = self.inputGmm.get(), self.inputParticles.get()
        apix = parts.getSamplingRate() if parts is not None else 0.0
        return automatic_max_res(gmm.getResolution() if gmm is not None else None,
                                 apix or 0.0)[0]

    # -- checks --------------------------------------------------------------------------
    def _trainConfig(self):
        return TrainConfig(latent_dim=self.latentDim.get(), epochs=self.numEpochs.get(),
                           held_out=HELD_OUT if self.stopOnPlateau.get() else 0.0,
                           # 0 (automatic) is chosen by the engine
                           batch_size=self.batchSize.get() or AUTOMATIC_BATCH_MAX,
                           learning_rate=self.learningRate.get(),
                           max_res=self._maxResolution(),
                           min_res=self.minResolution.get(),
                           vary_positions=self.varyPositions.get(),
                           vary_amplitudes=self.varyAmplitudes.get(),
                           vary_widths=self.varyWidths.get(), latent_kl=self.klWeight.get(),
                           loss=LOSS_NAMES[self.lossFunction.get()])

    def _validate(self):
        parts, gmm = self.inputParticles.get(), self.inputGmm.get()
        errors = validate_particles(parts, needs_ctf=self.ctfMode.get() == CTF_FULL)
        if gmm is None:
            errors.append("Select the neutral GMM.")
        elif parts is not None and not errors:
            errors += self.problems(lambda: checks.same_extent(
                gmm.getBoxSize(), gmm.getSamplingRate(), parts.getXDim(),
                parts.getSamplingRate(), "the GMM"))
        errors += self.problems(self._trainConfig().validate,
                                lambda: parse_symmetry(self._symmetry()))
        if parts is not None and parts.getSamplingRate():
            errors += self.problems(lambda: checks.resolution_within_nyquist(
                self._maxResolution(), parts.getSamplingRate()))
        if not (self.varyPositions.get() or self.varyAmplitudes.get()
                or self.varyWidths.get()):
            errors.append("Let at least positions, amplitudes or widths vary.")
        mask = self.focusMask.get()
        if mask is not None and mask_voxels(mask) == 0:
            errors.append("The focus mask is empty (no voxel above 0.5).")
        if mask is not None and gmm is not None and gmm.getBoxSize():
            errors += self.problems(lambda: checks.same_extent(
                mask.getDim()[0], mask.getSamplingRate(), gmm.getBoxSize(),
                gmm.getSamplingRate(), "the focus mask", "the GMM's map"))
        errors += self._refinementErrors(parts)
        if self.likelihoodSteps.get() < 0 or not 0 <= self.likelihoodSignificance.get() < 1:
            errors.append("Likelihood steps must be >= 0 and their significance in [0, 1).")
        if self.doContinue.get():
            errors += self._continueErrors()
        if parts is not None and parts.isPhaseFlipped() and self.ctfMode.get() == CTF_FULL:
            errors.append("The particles are phase-flipped: set CTF handling to "
                          "'phase-flipped'.")
        return errors + self._validateNodes()

    def _refinementErrors(self, parts):
        """The engine's own checks of the refinement settings."""
        k, res = self._refineClassesArg(), self.refineResolution.get()
        if k == 0:
            return []
        if k < 0:                      # automatic: the engine's choice from the particles
            k = automatic_classes(parts.getSize() if parts is not None else 0)[0]
            if k == 0:
                return []
        if res < 0:
            return ["The latent refinement resolution must be >= 0 (0 = max resolution)."]
        n = parts.getSize() if parts is not None else 4 * max(k, 2)
        cfg = RefineLatentsConfig(classes=k, iterations=self.refineIterations.get(),
                                  max_res=res or self._maxResolution(),
                                  min_res=self.minResolution.get())
        found = self.problems(lambda: cfg.validate(n))
        if res and parts is not None and parts.getSamplingRate():
            found += self.problems(lambda: checks.resolution_within_nyquist(
                res, parts.getSamplingRate(), "the latent refinement resolution"))
        return found

    def _continueErrors(self):
        """The run to continue must have the same network shape and fewer epochs."""
        prev = self.continueRun.get()
        if prev is None:
            return ["Select the run to continue."]
        if not os.path.exists(prev._getFileName("checkpoint")):
            return ["The run to continue has no checkpoint (it trained no epoch)."]
        info = prev.readResult("training")
        if info is None:
            return []      # interrupted run: the engine checks the checkpoint itself
        cfg, errors = info["config"], []
        mine = {"latent_dim": self.latentDim.get(),
                "vary_positions": self.varyPositions.get(),
                "vary_amplitudes": self.varyAmplitudes.get(),
                "vary_widths": self.varyWidths.get(),
                "loss": LOSS_NAMES[self.lossFunction.get()]}
        diffs = [k.replace("_", " ") if k != "loss" else "similarity score"
                 for k, v in mine.items() if cfg[k] != v]
        if diffs:
            errors.append("The run to continue used another %s: use the same values."
                          % ", ".join(diffs))
        gmm = self.inputGmm.get()
        n_gmm = gmm.getNumGaussians() if gmm is not None else None
        if n_gmm and n_gmm != info["gaussians"]:
            errors.append("The run to continue used a GMM of %d Gaussians; this one has %d."
                          % (info["gaussians"], n_gmm))
        done = len(info["history"])
        if self.numEpochs.get() <= done:
            errors.append("The run to continue has already trained %d epochs: ask for more "
                          "(the number of epochs is the total)." % done)
        return errors

    def _warnings(self):
        parts, warnings = self.inputParticles.get(), []
        if (parts is not None and self.ctfMode.get() == CTF_PHASE_FLIP
                and not parts.isPhaseFlipped()):
            warnings.append("The particles are not marked as phase-flipped, but CTF "
                            "handling is 'phase-flipped'. Continue only if they were "
                            "flipped elsewhere.")
        k = self.refineClasses.get() if self.refineLatents.get() else 0
        if parts is not None and k >= 2:
            try:
                n = parts.getSize() * len(symmetry_operators(self._symmetry()))
            except ValueError:
                n = parts.getSize()          # _validate reports the bad symmetry
            if n / (2 * k) < FEW_PER_CLASS:
                warnings.append("Latent refinement with %d classes leaves %.0f particles "
                                "per class and half set; below %d the class maps are too "
                                "noisy to gain from. Consider fewer classes."
                                % (k, n / (2 * k), FEW_PER_CLASS))
        return warnings

    # -- reports -------------------------------------------------------------------------
    def _summary(self):
        info = self._info()
        if info is None:
            return ["Output not ready yet."]
        lines = ["%d particles, %d Gaussians, latent dimension %d, %d epochs in %.0f s."
                 % (info["particles"], info["gaussians"], info["config"]["latent_dim"],
                    len(info["history"]), info["seconds"]),
                 "Final loss %.5f; %.0f particles/s per epoch." %
                 (info["final_loss"], info["particles_per_s"]),
                 "Stopped after %d epochs: %s." % (len(info["history"]),
                                                  info.get("stopped_because") or "done"),
                 "Training band %g-%.1f Å%s." % (
                     info["config"]["min_res"], info["config"]["max_res"],
                     " (automatic, from the neutral GMM)"
                     if self.maxResolution.get() <= 0 else "")]
        if info["config"]["loss"] == "whitened":
            lines.append("Similarity score: noise-whitened correlation (not the FRC).")
        ref = info.get("latent_refinement")
        if ref:
            last = ref["history"][-1]
            lines.append("Latent refinement (%d classes, to %.1f Å, rounds: %d) in %.0f s; "
                         "in the last round %.1f %% of particles changed class and the "
                         "mean best-class posterior was %.2f."
                         % (ref["classes"], ref["max_res"], ref["iterations"],
                            ref["seconds"], 100 * last["changed_class"],
                            last["mean_confidence"]))
            if "centre_shift" in last:
                lines.append("Class centres moved by %.2f neighbour distances in the last "
                             "round (a falling figure: settling)." % last["centre_shift"])
        conf = info.get("latent_confidence")
        ml = (conf or {}).get("refinement")
        if ml:
            lines.append("Latents refined on each particle's likelihood (%d steps) in %.0f "
                         "s: %.0f %% moved, median move %.3g (latent units)."
                         % (ml["iterations"], ml["seconds"], 100 * ml["moved"],
                            ml["median_shift"]))
        if conf:
            lines.append("Latent confidence (how well each image determines its place "
                         "along the motion, "
                         "0-1): median %.2f, 10th-90th percentile %.2f-%.2f."
                         % (conf["median"], conf["p10"], conf["p90"]))
        if info["symmetry"] != "c1":
            lines.append("Symmetry %s: particles expanded; %d Gaussians (one asymmetric "
                         "unit) varied." % (info["symmetry"].upper(),
                                            info["varying_gaussians"]))
        return lines

    def _methods(self):
        info = self._info()
        if info is None:
            return []
        c = info["config"]
        lines = ["Heterogeneity was analysed with a Gaussian mixture model decoder "
                 "(gmmplugin, after Chen & Ludtke 2021): %d particles were mapped to a "
                 "%d-dimensional latent space over %d epochs, with %s loss between "
                 "%.0f and %.1f Å including each particle's CTF."
                 % (info["particles"], c["latent_dim"], len(info["history"]),
                    "a noise-whitened correlation" if c["loss"] == "whitened"
                    else "an FRC", c["min_res"], c["max_res"])]
        if info.get("held_out"):
            lines.append("The learning rate was halved whenever the score of %d held-out "
                         "particles, not used for optimisation, stopped improving for two "
                         "epochs and 300 steps; the training ended at the plateau after the "
                         "third halving, or at %d epochs after a cosine cool-down over the "
                         "last quarter."
                         % (info["held_out"], c["epochs"]))
        ref = info.get("latent_refinement")
        if ref:
            lines.append("The latents were then refined by %d rounds of masked 3D "
                         "classification into %d classes along the latent space (to %.1f Å, "
                         "gold-standard half sets); after each round the class centres "
                         "moved to the mean encoder latent of their particles, and each "
                         "particle's latent is the posterior mean of the class centres."
                         % (ref["iterations"], ref["classes"], ref["max_res"]))
        return lines

    def _citations(self):
        return ["Chen2021", "Zhong2021"]
