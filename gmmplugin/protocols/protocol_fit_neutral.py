"""GmmProtFitNeutral: the neutral GMM from a consensus map and/or an atomic model."""
import os

import pyworkflow.protocol.params as params
from pwem.objects import AtomStruct, Volume
from pwem.protocols import ProtAnalysis3D

from ..convert import map_file, mask_voxels
from ..engine import checks
from ..objects import GmmModel
from .protocol_base import GmmProtBase


# Output name -> class (a dict: two outputs may share a class, which an Enum
# would silently turn into aliases).
GMM, VOLUME, POINTS = "Gmm", "Volume", "Points"
OUTPUTS = {GMM: GmmModel, VOLUME: Volume, POINTS: AtomStruct}


class GmmProtFitNeutral(GmmProtBase, ProtAnalysis3D):
    """Fit the neutral Gaussian mixture model: N Gaussians (centre, amplitude,
    width) whose map reproduces the consensus map up to the target resolution.
    It is the frame every later step perturbs. Seeds come from the map's
    density (k-means) or from an atomic model; the fit maximises the FSC with
    the map, coarse to fine. With only a model, the map is computed from the
    atoms at the target resolution."""
    _label = "fit neutral GMM"
    _possibleOutputs = OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume",
                      allowsNull=True, important=True, label="Consensus map",
                      help="The consensus refinement map (unsharpened or mildly "
                           "sharpened). Leave empty to build the GMM from the atomic "
                           "model alone.")
        form.addParam("inputMask", params.PointerParam, pointerClass="VolumeMask",
                      allowsNull=True, label="Mask (optional)",
                      help="Gaussians whose centres fall outside this mask are "
                           "dropped. Same box and sampling as the map.")
        form.addParam("inputAtomStruct", params.PointerParam, pointerClass="AtomStruct",
                      allowsNull=True, label="Atomic model (optional)",
                      help="Seeds the Gaussians from atoms (k-means of the heavy "
                           "atoms to the number of Gaussians). Coordinates are taken "
                           "in the map's frame (its MRC header origin), as a model "
                           "viewer overlays them. Without a map, the GMM is fitted to "
                           "a map computed from the atoms.")
        form.addParam("targetResolution", params.FloatParam, default=8.0,
                      label="Target resolution (Å)",
                      help="The GMM reproduces the map up to this resolution. Later "
                           "heterogeneity training works at a similar resolution; "
                           "6–10 Å is typical.")
        form.addParam("numGaussians", params.IntParam, default=0,
                      label="Number of Gaussians",
                      help="0 = automatic: the molecular volume / (resolution/2)³.")
        self._defineEngineParams(form)

    def _insertAllSteps(self):
        self._insertSteps((self.fitStep, True), self.createOutputStep)

    def fitStep(self, inputs):
        args = "--resolution %g --n %d --out-dir %s" % (
            self.targetResolution.get(), self.numGaussians.get(), self._getExtraPath())
        vol = self.inputVolume.get()
        if vol is not None:
            args += " --map %s --apix %g" % (map_file(vol, self._getTmpPath("input.mrc")),
                                             vol.getSamplingRate())
        if self.inputAtomStruct.get() is not None:
            args += " --model %s" % os.path.abspath(self.inputAtomStruct.get().getFileName())
        if self.inputMask.get() is not None:
            args += " --mask %s" % map_file(self.inputMask.get(), self._getTmpPath("mask.mrc"))
        self.runEngine("fit", args)

    def createOutputStep(self, inputs):
        info = self._info()
        gmm = GmmModel(filename=self._getFileName("gmm"), samplingRate=info["apix"],
                       boxSize=info["box"], resolution=info["resolution"],
                       numGaussians=info["n_gaussians"])
        vol = Volume(location=self._getFileName("gmm_map"))
        vol.setSamplingRate(info["apix"])
        points = AtomStruct(filename=self._getFileName("gmm_points"), pseudoatoms=True)
        points.setVolume(vol)
        self._defineOutputs(**{GMM: gmm, VOLUME: vol, POINTS: points})
        for src in (self.inputVolume, self.inputAtomStruct):
            if src.get() is not None:
                for out in (gmm, vol, points):
                    self._defineSourceRelation(src, out)

    def _info(self):
        return self.readResult("fit_info")

    def _validate(self):
        errors = []
        vol, mask = self.inputVolume.get(), self.inputMask.get()
        model = self.inputAtomStruct.get()
        res = self.targetResolution.get()
        if vol is None and model is None:
            return ["Give a consensus map, an atomic model, or both."]
        errors += self.problems(lambda: checks.positive(res or 0, "the target resolution"))
        if vol is not None and res and res > 0:
            errors += self.problems(lambda: checks.resolution_within_nyquist(
                res, vol.getSamplingRate(), "the target resolution", "the map's"))
        if mask is not None:
            if vol is None:
                errors.append("A mask needs a consensus map.")
            else:
                if abs(mask.getSamplingRate() - vol.getSamplingRate()) > \
                        1e-3 * vol.getSamplingRate():
                    errors.append("The mask sampling (%.4f Å/px) differs from the map's "
                                  "(%.4f Å/px)." % (mask.getSamplingRate(),
                                                    vol.getSamplingRate()))
                if mask.getDim() != vol.getDim():
                    errors.append("The mask box %s differs from the map box %s."
                                  % (mask.getDim(), vol.getDim()))
                elif mask_voxels(mask) == 0:
                    errors.append("The mask is empty (no voxel above 0.5).")
        if self.numGaussians.get() < 0:
            errors.append("The number of Gaussians must be 0 (automatic) or positive.")
        return errors

    def _summary(self):
        info = self._info()
        if info is None:
            return ["Output not ready yet."]
        return ["%d Gaussians fitted at %.1f Å in %.0f s (from %s)."
                % (info["n_gaussians"], info["resolution"], info["seconds"], info["source"]),
                "FSC(GMM map, input): 0.5 at %.2f Å, 0.143 at %.2f Å."
                % (info["fsc_05"], info["fsc_0143"])]

    def _methods(self):
        info = self._info()
        if info is None:
            return []
        return ["A neutral Gaussian mixture model of %d Gaussians was fitted to the %s at "
                "%.1f Å resolution (gmmplugin; FSC-maximising, coarse-to-fine fit after "
                "Chen & Ludtke 2021). The FSC between the GMM map and the input fell "
                "below 0.5 at %.2f Å and 0.143 at %.2f Å; the fit took %.0f s."
                % (info["n_gaussians"], {"map": "consensus map", "model": "atomic model",
                                         "map+model": "consensus map, seeded by the "
                                                      "atomic model"}[info["source"]],
                   info["resolution"], info["fsc_05"], info["fsc_0143"], info["seconds"])]

    def _citations(self):
        return ["Chen2021", "Chen2025"]
