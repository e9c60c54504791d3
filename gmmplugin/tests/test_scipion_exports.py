"""Headless Scipion exports from a small trained latent space:
a class selected in the latent space -> cryoDRGN's z.pkl/ind.pkl (read back
equal to the training's latents) and -> RELION through scipion-em-relion's
export protocol (re-imported: same ids, images, poses and CTFs); a trajectory
of 'analyze latent space' -> a ChimeraX series script."""
import os
import unittest

import mrcfile
import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from gmmplugin.convert import matrix_to_pose
from gmmplugin.engine import export
from gmmplugin.engine.geometry import rotation_angle_deg
from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.protocols import (GmmProtAnalyze, GmmProtExportLatents, GmmProtFitNeutral,
                                 GmmProtReconstruct, GmmProtSelectLatent, GmmProtTrain)
from gmmplugin.tests import data_path, import_simulated_particles

N, BOX, APIX = 300, 32, 3.0


class TestExports(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        out = os.path.abspath(os.path.join(cls.proj.getTmpPath(), "sim"))
        star = simulate(data_path("1hvr.pdb"), out,
                        SimulationSettings(n_particles=N, box=BOX, apix=APIX, snr=0.5, seed=5),
                        Heterogeneity(move="B", motion="rotate", amount=40.0))
        imp = import_simulated_particles(cls, star, APIX)
        rec = cls._run(GmmProtReconstruct, inputParticles=(imp, "outputParticles"))
        fit = cls._run(GmmProtFitNeutral, targetResolution=9.0, inputVolume=(rec, "Volume"))
        cls.train = cls._run(GmmProtTrain, numEpochs=2, latentDim=2, batchSize=32,
                             inputParticles=(imp, "outputParticles"),
                             inputGmm=(fit, "Gmm"))
        cls.analysis = cls._run(GmmProtAnalyze, numClasses=2, numPCs=1, numFrames=3,
                                particlesPerFrame=100, clustering=2,
                                inputParticles=(cls.train, "Particles"))
        cls.sel = cls._run(GmmProtSelectLatent, classIds="1",
                           inputParticles=(cls.analysis, "Particles"))

    @classmethod
    def _run(cls, protocol_class, **params):
        inputs = {k: v for k, v in params.items() if isinstance(v, tuple)}
        prot = cls.newProtocol(protocol_class,
                               **{k: v for k, v in params.items() if k not in inputs})
        for name, (source, output) in inputs.items():
            getattr(prot, name).set(source)
            getattr(prot, name).setExtended(output)
        cls.launchProtocol(prot)
        return prot

    def _export(self, **params):
        return self._run(GmmProtExportLatents, **params)

    def test_cryodrgn_latents_of_the_training_and_of_a_class(self):
        lat = np.load(self.train._getExtraPath("latents.npz"))
        full = self._export(inputParticles=(self.train, "Particles"))
        z = export.read_pkl(full._getExtraPath("cryodrgn", "z.pkl"))
        self.assertEqual(z.dtype, np.float32)
        np.testing.assert_array_equal(z, lat["z"])                    # exact
        self.assertFalse(os.path.exists(full._getExtraPath("cryodrgn", "ind.pkl")))
        self.assertIn("z.pkl with %d particles" % N, " ".join(full.summary()))

        folder = os.path.abspath(self.proj.getTmpPath("drgn"))
        sub = self._export(inputParticles=(self.sel, "Particles"), exportFolder=folder)
        chosen = [(p.getObjId(), list(p.getZFlex())) for p in
                  self.sel.Particles.iterItems(orderBy="id")]
        for d in (sub._getExtraPath("cryodrgn"), folder):
            z = export.read_pkl(os.path.join(d, "z.pkl"))
            ind = export.read_pkl(os.path.join(d, "ind.pkl"))
            np.testing.assert_array_equal(z, lat["z"])
            self.assertEqual(lat["ids"][ind].tolist(), [i for i, _ in chosen])
            np.testing.assert_array_equal(z[ind], np.array([v for _, v in chosen],
                                                           np.float32))
        self.assertIn("ind.pkl with the rows of these %d" % len(chosen),
                      " ".join(sub.summary()))

    def test_chimerax_series_of_a_trajectory(self):
        prot = self._export(inputVolumes=(self.analysis, "Volumes"), series="pc1")
        frames = [self.analysis._frameFile("frame", "pc1", f) for f in (1, 2, 3)]
        first = open(prot._getExtraPath("series.cxc")).read().splitlines()[0]
        self.assertEqual(first, "open %s vseries true" % " ".join(frames))
        self.assertTrue(all(os.path.exists(f) for f in frames))
        self.assertIn("volume series of 3 maps", " ".join(prot.summary()))
        bad = self.newProtocol(GmmProtExportLatents)
        self.assertIn("a volume series, or both", " ".join(bad.validate()))
        bad = self.newProtocol(GmmProtExportLatents, series="pc7")
        bad.inputVolumes.set(self.analysis)
        bad.inputVolumes.setExtended("Volumes")
        self.assertIn("no series 'pc7'", " ".join(bad.validate()))

    def test_relion_export_of_a_class_reimports_identically(self):
        from pwem.protocols import ProtImportParticles
        from relion import Plugin as Relion
        from relion.protocols import ProtRelionExportParticles
        if not os.path.isdir(Relion.getHome()):
            raise unittest.SkipTest("scipion-em-relion's protocols need RELION installed "
                                    "(RELION_HOME: %s)" % Relion.getHome())
        exp = self._run(ProtRelionExportParticles, inputParticles=(self.sel, "Particles"))
        star = os.path.abspath(exp._getStarFile())
        back = self.newProtocol(ProtImportParticles,
                                importFrom=ProtImportParticles.IMPORT_FROM_RELION,
                                starFile=star, samplingRate=APIX, magnification=50000,
                                haveDataBeenPhaseFlipped=False, voltage=300,
                                sphericalAberration=2.7, amplitudeContrast=0.1,
                                objLabel="re-import")
        self.launchProtocol(back)
        orig = [p.clone() for p in self.sel.Particles.iterItems(orderBy="id")]
        again = [p.clone() for p in back.outputParticles.iterItems(orderBy="id")]
        self.assertEqual([p.getObjId() for p in again], [p.getObjId() for p in orig])
        angle, shift, defocus = [], [], []
        for a, b in zip(orig, again):
            A0, s0 = matrix_to_pose(a.getTransform().getMatrix(), APIX)
            A1, s1 = matrix_to_pose(b.getTransform().getMatrix(), APIX)
            angle.append(rotation_angle_deg(A0[None], A1[None])[0])
            shift.append(np.abs(s0 - s1).max())
            ca, cb = a.getCTF(), b.getCTF()
            defocus.append(max(abs(ca.getDefocusU() - cb.getDefocusU()),
                               abs(ca.getDefocusV() - cb.getDefocusV()),
                               abs(ca.getDefocusAngle() - cb.getDefocusAngle())))
            self.assertTrue(np.array_equal(_image(a), _image(b)))
        print("RELION export round trip: max angle %.2e deg, shift %.2e A, CTF %.2e"
              % (max(angle), max(shift), max(defocus)))
        self.assertLess(max(angle), 1e-4)
        self.assertLess(max(shift), 1e-4)
        self.assertLess(max(defocus), 1e-2)


def _image(particle):
    index, fn = particle.getLocation()
    with mrcfile.mmap(fn.split(":")[0], permissive=True) as m:
        data = m.data if m.data.ndim == 2 else m.data[max(index, 1) - 1]
        return np.array(data)
