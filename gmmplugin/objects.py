"""Scipion objects of the plugin."""
import pyworkflow.object as pwobj
from pwem.objects import EMFile


class GmmModel(EMFile):
    """A Gaussian mixture model file (engine ``.npz`` format, see
    ``gmmplugin.engine.gmm``) with the sampling, box and resolution of the map
    it represents."""

    def __init__(self, filename=None, samplingRate=None, boxSize=None, resolution=None,
                 numGaussians=None, **kwargs):
        EMFile.__init__(self, filename, **kwargs)
        self._samplingRate = pwobj.Float(samplingRate)
        self._boxSize = pwobj.Integer(boxSize)
        self._resolution = pwobj.Float(resolution)
        self._numGaussians = pwobj.Integer(numGaussians)

    def getSamplingRate(self):
        return self._samplingRate.get()

    def setSamplingRate(self, value):
        self._samplingRate.set(value)

    def getBoxSize(self):
        return self._boxSize.get()

    def setBoxSize(self, value):
        self._boxSize.set(value)

    def getResolution(self):
        return self._resolution.get()

    def setResolution(self, value):
        self._resolution.set(value)

    def getNumGaussians(self):
        return self._numGaussians.get()

    def setNumGaussians(self, value):
        self._numGaussians.set(value)

    def __str__(self):
        return "GmmModel (%s Gaussians, %s Å/px, box %s, %s Å)" % (
            self.getNumGaussians(), self.getSamplingRate(), self.getBoxSize(),
            self.getResolution())
