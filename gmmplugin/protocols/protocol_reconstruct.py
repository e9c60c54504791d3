"""GmmProtReconstruct: CTF-corrected direct Fourier reconstruction of particles."""
import pyworkflow.protocol.params as params
from pwem.objects import FSC, Volume
from pwem.protocols import ProtReconstruct3D

from ..convert import validate_particles
from ..engine import checks
from .protocol_base import GmmProtBase


# Output name -> class (a dict: two outputs may share a class, which an Enum
# would silently turn into aliases).
VOLUME, FSC_CURVE = "Volume", "FSC"
OUTPUTS = {VOLUME: Volume, FSC_CURVE: FSC}


class GmmProtReconstruct(GmmProtBase, ProtReconstruct3D):
    """Reconstruct a 3D map from aligned particles by direct Fourier inversion
    with CTF correction (Wiener-style), from two random half sets, with the
    gold-standard FSC. The same reconstructor is used for the classes and
    trajectories of the GMM analysis; run it on its own to check that imported
    poses and CTFs are right before training."""
    _label = "reconstruct"
    _possibleOutputs = OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      pointerCondition="hasAlignmentProj", important=True,
                      label="Input particles",
                      help="Particles with 3D alignment (angles, shifts) and CTF.")
        form.addParam("boxSize", params.IntParam, default=0, label="Reconstruction box (px)",
                      help="Fourier-crop particles to this (even) box before "
                           "reconstruction, for speed; the pixel size grows "
                           "accordingly. 0 keeps the particle box.")
        form.addParam("wiener", params.FloatParam, default=0.05,
                      expertLevel=params.LEVEL_ADVANCED, label="Wiener regularisation",
                      help="τ = this × (mean CTF² weight of each Fourier shell) is "
                           "added to the denominator; larger values damp voxels "
                           "near CTF zeros and rarely sampled directions.")
        form.addParam("padding", params.IntParam, default=2,
                      expertLevel=params.LEVEL_ADVANCED, label="Padding factor",
                      help="Real-space zero padding before insertion (2 is accurate; "
                           "1 is faster).")
        form.addParam("batchSize", params.IntParam, default=64,
                      expertLevel=params.LEVEL_ADVANCED, label="Batch size",
                      help="Particles inserted per step; larger is faster on a GPU and "
                           "uses more memory.")
        self._defineEngineParams(form, nodes=True)

    # -- steps -------------------------------------------------------------------
    def _insertAllSteps(self):
        self._insertSteps(self.convertInputStep, (self.reconstructStep, True),
                          self.createOutputStep)

    def convertInputStep(self, inputs):
        self.convertParticles(self.inputParticles.get())

    def reconstructStep(self, inputs):
        args = ("--particles %s --out-dir %s --name map --wiener %g --pad %d --batch %d"
                % (self._getFileName("particles"), self._getExtraPath(),
                   self.wiener.get(), self.padding.get(), self.batchSize.get()))
        if self.boxSize.get():
            args += " --box %d" % self.boxSize.get()
        self.runEngine("reconstruct", args)

    def createOutputStep(self, inputs):
        vol, fsc = self.volumeAndFsc()
        self._defineOutputs(**{VOLUME: vol, FSC_CURVE: fsc})
        self._defineSourceRelation(self.inputParticles, vol)
        self._defineSourceRelation(self.inputParticles, fsc)

    # -- info ----------------------------------------------------------------------
    def _info(self):
        return self.readResult("map_info", name="map")

    def _validate(self):
        errors = validate_particles(self.inputParticles.get())
        box = self.boxSize.get()
        if box and not errors:
            if box % 2 or box > self.inputParticles.get().getXDim():
                errors.append("The reconstruction box must be even and at most the "
                              "particle box (%d px)." % self.inputParticles.get().getXDim())
        errors += self.problems(
            lambda: checks.positive(self.padding.get(), "the padding factor"),
            lambda: checks.positive(self.wiener.get(), "the Wiener regularisation",
                                    allow_zero=True),
            lambda: checks.positive(self.batchSize.get(), "the batch size"))
        return errors + self._validateNodes()

    def _summary(self):
        info = self._info()
        if info is None:
            return ["Output not ready yet."]
        return ["Reconstructed %d particles at %.3f Å/px (box %d)."
                % (info["particles"], info["apix"], info["box"]),
                "Gold-standard FSC 0.143 resolution: %.2f Å." % info["resolution_0143"]]

    def _methods(self):
        info = self._info()
        if info is None:
            return []
        return ["A 3D map was reconstructed from %d particles by direct Fourier "
                "inversion with CTF correction (gmmplugin, Wiener constant %g × mean "
                "shell weight, padding %d); the FSC between independent half-set maps "
                "fell below 0.143 at %.2f Å."
                % (info["particles"], self.wiener.get(), self.padding.get(),
                   info["resolution_0143"])]

    def _citations(self):
        return ["Chen2021"]
