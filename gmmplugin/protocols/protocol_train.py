"""GmmProtTrain: every particle -> a latent vector of the GMM decoder."""
import enum
import os

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.object import Integer
from pwem.objects import ParticleFlex, SetOfParticlesFlex
from pwem.protocols import ProtAnalysis3D, ProtFlexBase

from ..constants import FLEX_PROGRAM, PARTICLES_FILE
from ..convert import particles_to_engine, pose_to_matrix, validate_particles
from ..engine.symmetry import parse_symmetry, symmetry_operators
from .inputs import map_file
from .protocol_base import add_gpu_params, read_json, run_engine

CTF_FULL, CTF_PHASE_FLIP = 0, 1
LOSS_FRC, LOSS_WHITENED = 0, 1
LOSS_NAMES = {LOSS_FRC: "frc", LOSS_WHITENED: "whitened"}


class TrainOutputs(enum.Enum):
    Particles = SetOfParticlesFlex


class GmmProtTrain(ProtAnalysis3D, ProtFlexBase):
    """Heterogeneity training (e2gmm): an encoder maps each particle (through
    the gradient of its similarity score w.r.t. the neutral GMM) to a latent
    vector; a decoder maps latent vectors to changes of the Gaussians
    (positions, amplitudes, widths), trained so that each particle's decoded
    GMM, projected with its pose and CTF, matches the particle (Fourier ring
    correlation, or optionally a noise-whitened correlation).
    Output: the particles with their latent vectors (SetOfParticlesFlex)."""
    _label = "gmm - heterogeneity training"
    _possibleOutputs = TrainOutputs

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
                      help="Output of 'gmm - fit neutral GMM' on the consensus map of "
                           "these particles.")
        form.addParam("latentDim", params.IntParam, default=4, label="Latent dimension",
                      help="Size of the latent vector (1-16). 4 is a good start; 2 for "
                           "direct plotting of a single cyclic motion.")
        form.addParam("maxResolution", params.FloatParam, default=8.0,
                      label="Max resolution (Å)",
                      help="High end of the resolution band. Particles are Fourier-cropped so "
                           "that this is their Nyquist frequency, which sets the speed.")
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
                           "training. FRC (default): the mean Fourier ring "
                           "correlation of the e2gmm paper, every ring with the same "
                           "weight. Noise-whitened correlation: every Fourier pixel "
                           "weighted by the inverse noise power of its ring (the "
                           "maximum-likelihood score), so noisy high-resolution rings "
                           "count less. In the benchmarks it read a small domain's "
                           "closed-loop motion better on one dataset and worse on "
                           "another, and separated a compositional change slightly less "
                           "well; other cases were within seed-to-seed spread "
                           "(benchmarks/RESULTS.md, 'Similarity score'). A run can only "
                           "be continued with the score it started with.")
        form.addSection(label="Training")
        form.addParam("numEpochs", params.IntParam, default=10, label="Epochs",
                      help="Passes over all particles (the total, also when continuing a "
                           "run). 10 were enough for 5,000 simulated particles; more "
                           "particles need fewer.")
        form.addParam("batchSize", params.IntParam, default=64, label="Batch size",
                      help="Particles per optimisation step. Larger batches are faster on "
                           "a GPU and use more memory (about batch × Gaussians × box).")
        form.addParam("learningRate", params.FloatParam, default=1e-3,
                      expertLevel=params.LEVEL_ADVANCED, label="Learning rate (Adam)",
                      help="Peak learning rate, reached after a one-epoch warm-up and "
                           "then decayed (cosine).")
        form.addParam("klWeight", params.FloatParam, default=5e-3,
                      expertLevel=params.LEVEL_ADVANCED, label="Latent KL weight",
                      help="Weight of the variational term that pulls the latents towards "
                           "a standard normal (0 = plain latent noise). It switches off "
                           "latent dimensions that explain nothing; too large, it also "
                           "switches off weak motions, and it folds closed-loop (cyclic) "
                           "motions into one dimension: try 1e-3 or 0 for those. 5e-3 "
                           "kept a 30° domain swing at SNR 0.1 on both realistic and "
                           "ideal inputs (see benchmarks/RESULTS.md).")
        form.addParam("seed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label="Random seed",
                      help="Seed of the network initialisation and particle order; the "
                           "same seed and input give the same result on the same device.")
        form.addSection(label="Latent refinement")
        form.addParam("refineClasses", params.IntParam, default=0,
                      label="Classes (0 = off)",
                      help="After training, re-read each particle's latent by masked 3D "
                           "classification: k-means splits the latent space into this "
                           "many classes, each class is reconstructed from its particles "
                           "(two half sets), the maps are compared inside the region "
                           "where they differ, and every particle's latent becomes the "
                           "posterior-weighted mean of the class centres, judged against "
                           "the other half set's maps. It recovers state that the "
                           "encoder's one-gradient view misses, e.g. a small domain on a "
                           "closed loop: in the benchmarks it raised the circular "
                           "correlation of a 14 Å loop from 0.83 to 0.92 (36 classes, 4 "
                           "rounds, 20,000 particles, 2-D latents, 6 Å; the true models "
                           "reach 0.94 on those images) and, in an earlier version with "
                           "fixed centres, of a 7 Å loop from 0.80 to 0.87 (limit "
                           "0.89); on a continuous 30° swing (5,000 "
                           "particles, 4-D latents) PC1's correlation with the angle "
                           "rose from 0.91 to 0.97, and with half the particles lacking "
                           "the domain the composition stayed separated (ARI 1.00) while "
                           "the swing's correlation rose from 0.91 to 0.98. It needs "
                           "enough particles per class (a warning says when there are "
                           "too few). It is off by default because on a CPU it costs "
                           "about as much as the training again (benchmarks/RESULTS.md, "
                           "'Latent refinement'). Cost: "
                           "per round one reconstruction and one comparison with every "
                           "class per particle; memory about 64 bytes × classes × (2 × "
                           "box at that resolution)³. The encoder's own latents are kept "
                           "in latents.npz (z_encoder).")
        form.addParam("refineIterations", params.IntParam, default=4,
                      condition="refineClasses > 0", label="Rounds",
                      help="Classification rounds after the first reconstructions. "
                           "After each round the class centres move to the mean "
                           "encoder latent of their particles, and the log reports how "
                           "far (in neighbour distances): a falling figure means the "
                           "classification is settling (0.10-0.15 after the fourth "
                           "round in the loop benchmarks, which still gained from it; "
                           "the figure can also rise when centres of one state crowd "
                           "together).")
        form.addParam("refineResolution", params.FloatParam, default=0.0,
                      condition="refineClasses > 0", label="Resolution (Å)",
                      help="Finest resolution of the comparison (0 = the training's max "
                           "resolution). It can be finer than the training band: "
                           "classification uses the particle images directly, and the "
                           "class maps are filtered by their half-set FSC, so shells "
                           "without class-specific signal do not add noise.")
        add_gpu_params(form)

    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.trainStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep)

    def convertInputStep(self):
        particles_to_engine(self.inputParticles.get(), self._getExtraPath(PARTICLES_FILE),
                            self._getTmpPath())

    def _continue_checkpoint(self):
        if self.doContinue.get() and self.continueRun.get() is not None:
            return self.continueRun.get()._getExtraPath("work", "checkpoint.pt")
        return None

    def trainStep(self):
        args = ["--particles %s" % self._getExtraPath(PARTICLES_FILE),
                "--gmm %s" % os.path.abspath(self.inputGmm.get().getFileName()),
                "--out-dir %s" % self._getExtraPath(),
                "--latent-dim %d" % self.latentDim.get(), "--epochs %d" % self.numEpochs.get(),
                "--batch %d" % self.batchSize.get(), "--lr %g" % self.learningRate.get(),
                "--max-res %g" % self.maxResolution.get(),
                "--min-res %g" % self.minResolution.get(),
                "--vary-positions %d" % self.varyPositions.get(),
                "--vary-amplitudes %d" % self.varyAmplitudes.get(),
                "--vary-widths %d" % self.varyWidths.get(),
                "--ctf-mode %s" % ("full" if self.ctfMode.get() == CTF_FULL else "phase_flip"),
                "--seed %d" % self.seed.get(), "--latent-kl %g" % self.klWeight.get(),
                "--loss %s" % LOSS_NAMES[self.lossFunction.get()],
                "--symmetry %s" % self._symmetry(),
                "--refine-classes %d" % self.refineClasses.get(),
                "--refine-iterations %d" % self.refineIterations.get(),
                "--refine-res %g" % self.refineResolution.get()]
        if self.focusMask.get() is not None:
            args.append("--focus-mask %s" % map_file(self.focusMask.get(),
                                                    self._getTmpPath("focus.mrc")))
        ck = self._continue_checkpoint()
        if ck:
            args.append("--continue-from %s" % os.path.abspath(ck))
        elif os.path.exists(self._getExtraPath("work", "checkpoint.pt")):
            args.append("--resume")   # this run was interrupted: pick up where it stopped
        run_engine(self, "train", " ".join(args))

    def createOutputStep(self):
        from sklearn.decomposition import PCA
        inp = self.inputParticles.get()
        lat = np.load(self._getExtraPath("latents.npz"))
        ids, z = lat["ids"], lat["z"]
        zred = PCA(n_components=min(2, z.shape[1])).fit_transform(z) if len(z) > 2 else z
        row = {int(i): r for r, i in enumerate(ids)}
        info = self._info()
        out = self._createSetOfParticlesFlex(progName=FLEX_PROGRAM)
        out.copyInfo(inp)
        out.setHasCTF(inp.hasCTF())
        out.setAlignmentProj()
        flex = out.getFlexInfo()
        flex.setAttr("modelPath", info["checkpoint"])
        flex.setAttr("gmmPath", os.path.abspath(self.inputGmm.get().getFileName()))
        flex.setAttr("latentDim", int(self.latentDim.get()))
        flex.setAttr("maxResolution", float(self.maxResolution.get()))
        flex.setAttr("minResolution", float(self.minResolution.get()))
        flex.setAttr("latentsPath", os.path.abspath(self._getExtraPath("latents.npz")))
        flex.setAttr("symmetry", self._symmetry())
        if "source_ids" in lat:
            self._appendExpanded(inp, out, lat, z, zred)
        else:
            for p in inp.iterItems(orderBy="id"):
                r = row.get(p.getObjId())
                if r is None:
                    continue
                out.append(self._flexItem(p, p.getObjId(), z[r], zred[r]))
        self._defineOutputs(**{TrainOutputs.Particles.name: out})
        self._defineSourceRelation(self.inputParticles, out)
        self._defineSourceRelation(self.inputGmm, out)

    @staticmethod
    def _flexItem(particle, obj_id, z, zred):
        f = ParticleFlex(progName=FLEX_PROGRAM)
        f.copyInfo(particle)
        f.setObjId(obj_id)
        f.setZFlex(z.tolist())
        f.setZRed(zred.tolist())
        return f

    def _appendExpanded(self, inp, out, lat, z, zred):
        """One item per (particle, symmetry copy): the engine's expanded pose, a new
        id, and the source particle id and copy index to trace it back."""
        from ..engine.data import Particles
        expanded = Particles.load(self._getExtraPath("particles_expanded.npz"))
        rows = {}
        for r, src in enumerate(lat["source_ids"]):
            rows.setdefault(int(src), []).append(r)
        pose_row = {int(i): r for r, i in enumerate(expanded.ids)}
        apix = inp.getSamplingRate()
        for p in inp.iterItems(orderBy="id"):
            for r in rows.get(p.getObjId(), []):
                e = pose_row[int(lat["ids"][r])]
                f = self._flexItem(p, int(lat["ids"][r]), z[r], zred[r])
                f.getTransform().setMatrix(pose_to_matrix(expanded.rotations[e],
                                                          expanded.shifts[e], apix))
                f._gmmSourceId = Integer(p.getObjId())
                f._gmmSymCopy = Integer(int(lat["copies"][r]))
                out.append(f)

    def _symmetry(self):
        return (self.symmetry.get() or "c1").strip().lower()

    def _info(self):
        return read_json(self._getExtraPath("training.json"))

    def _validate(self):
        parts = self.inputParticles.get()
        errors = validate_particles(parts, needs_ctf=self.ctfMode.get() == CTF_FULL)
        gmm = self.inputGmm.get()
        if gmm is None:
            errors.append("Select the neutral GMM.")
        elif parts is not None and not errors and gmm.getBoxSize():
            ext_p = parts.getXDim() * parts.getSamplingRate()
            ext_g = gmm.getBoxSize() * gmm.getSamplingRate()
            if abs(ext_p - ext_g) > 0.02 * ext_p:
                errors.append("The GMM was fitted to a %.1f Å box but the particles' box is "
                              "%.1f Å; fit it on the consensus map of these particles."
                              % (ext_g, ext_p))
        if self.klWeight.get() < 0:
            errors.append("The latent KL weight must be >= 0.")
        if not 1 <= self.latentDim.get() <= 16:
            errors.append("The latent dimension must be between 1 and 16.")
        if parts is not None and self.maxResolution.get() < 2 * parts.getSamplingRate():
            errors.append("Max resolution (%.2f Å) is finer than the particles' Nyquist "
                          "limit (%.2f Å)." % (self.maxResolution.get(),
                                                2 * parts.getSamplingRate()))
        if self.maxResolution.get() >= self.minResolution.get():
            errors.append("Max resolution must be a smaller number (finer) than min "
                          "resolution.")
        if not (self.varyPositions.get() or self.varyAmplitudes.get()
                or self.varyWidths.get()):
            errors.append("Let at least positions, amplitudes or widths vary.")
        try:
            parse_symmetry(self._symmetry())
        except ValueError as e:
            errors.append(str(e)[0].upper() + str(e)[1:] + ".")
        mask = self.focusMask.get()
        if mask is not None and gmm is not None and gmm.getBoxSize():
            if mask.getDim()[0] != gmm.getBoxSize():
                errors.append("The focus mask box (%d) differs from the GMM's map box (%d)."
                              % (mask.getDim()[0], gmm.getBoxSize()))
        errors += self._refinement_errors(parts)
        if self.doContinue.get():
            errors += self._continue_errors()
        if parts is not None and parts.isPhaseFlipped() and self.ctfMode.get() == CTF_FULL:
            errors.append("The particles are phase-flipped: set CTF handling to "
                          "'phase-flipped'.")
        return errors

    def _refinement_errors(self, parts):
        """The engine's own checks of the refinement settings (one message), plus
        the resolution against these particles' Nyquist."""
        from ..engine.refine_latents import RefineLatentsConfig
        k, res = self.refineClasses.get(), self.refineResolution.get()
        if k == 0:
            return []
        if res < 0:
            return ["The latent refinement resolution must be >= 0 (0 = max resolution)."]
        if res and parts is not None and res < 2 * parts.getSamplingRate():
            return ["The latent refinement resolution (%.2f Å) is finer than the "
                    "particles' Nyquist limit (%.2f Å)." % (res, 2 * parts.getSamplingRate())]
        cfg = RefineLatentsConfig(classes=k, iterations=self.refineIterations.get(),
                                  max_res=res or self.maxResolution.get(),
                                  min_res=self.minResolution.get())
        try:
            cfg.validate(parts.getSize() if parts is not None else 4 * max(k, 2))
        except ValueError as e:
            return [str(e)[0].upper() + str(e)[1:] + "."]
        return []

    def _continue_errors(self):
        """The run to continue must have the same network shape and fewer epochs."""
        prev = self.continueRun.get()
        if prev is None:
            return ["Select the run to continue."]
        if not os.path.exists(prev._getExtraPath("work", "checkpoint.pt")):
            return ["The run to continue has no checkpoint (it trained no epoch)."]
        info = read_json(prev._getExtraPath("training.json"))
        if info is None:
            return []      # interrupted run: the engine checks the checkpoint itself
        cfg, errors = info.get("config", {}), []
        mine = {"latent_dim": self.latentDim.get(),
                "vary_positions": self.varyPositions.get(),
                "vary_amplitudes": self.varyAmplitudes.get(),
                "vary_widths": self.varyWidths.get(),
                "loss": LOSS_NAMES[self.lossFunction.get()]}
        cfg = dict(cfg, loss=cfg.get("loss", "frc"))    # runs before the option used the FRC
        diffs = [k.replace("_", " ") if k != "loss" else "similarity score"
                 for k, v in mine.items() if k in cfg and cfg[k] != v]
        if diffs:
            errors.append("The run to continue used another %s: use the same values."
                          % ", ".join(diffs))
        gmm = self.inputGmm.get()
        n_gmm = gmm.getNumGaussians() if gmm is not None else None
        if n_gmm and info.get("gaussians") and n_gmm != info["gaussians"]:
            errors.append("The run to continue used a GMM of %d Gaussians; this one has %d."
                          % (info["gaussians"], n_gmm))
        done = len(info.get("history", []))
        if self.numEpochs.get() <= done:
            errors.append("The run to continue has already trained %d epochs: ask for more "
                          "(the number of epochs is the total)." % done)
        return errors

    def _warnings(self):
        from ..engine.refine_latents import FEW_PER_CLASS
        parts, warnings = self.inputParticles.get(), []
        if (parts is not None and self.ctfMode.get() == CTF_PHASE_FLIP
                and not parts.isPhaseFlipped()):
            warnings.append("The particles are not marked as phase-flipped, but CTF "
                            "handling is 'phase-flipped'. Continue only if they were "
                            "flipped elsewhere.")
        k = self.refineClasses.get()
        if parts is not None and k >= 2:
            try:
                n = parts.getSize() * len(symmetry_operators(self._symmetry()))
            except ValueError:
                n = parts.getSize()          # _validate reports the bad symmetry
            if n / (2 * k) < FEW_PER_CLASS:
                warnings.append("Latent refinement with %d classes leaves %.0f particles "
                                "per class and half set; the benchmarks that gained had "
                                "at least %d, fewer make noisy class maps. Consider "
                                "fewer classes."
                                % (k, n / (2 * k), FEW_PER_CLASS))
        return warnings

    def _summary(self):
        info = self._info()
        if info is None:
            return ["Output not ready yet."]
        lines = ["%d particles, %d Gaussians, latent dimension %d, %d epochs in %.0f s."
                 % (info["particles"], info["gaussians"], info["config"]["latent_dim"],
                    len(info["history"]), info["seconds"]),
                 "Final loss %.5f; %.0f particles/s per epoch." %
                 (info["final_loss"], info["particles_per_s"])]
        if info["config"].get("loss") == "whitened":
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
        if info.get("symmetry", "c1") != "c1":
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
                    "a noise-whitened correlation" if c.get("loss") == "whitened"
                    else "an FRC", c["min_res"], c["max_res"])]
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
