"""cryoSPARC import chain: the simulated particles written as a cryoSPARC
particle dataset (cryosparc-tools), imported with Scipion's ProtImportParticles
from cryoSPARC (scipion-em-cryosparc2's importer), reconstructed and compared
with the truth: the FSC must match the RELION chain's on the same particles,
and a flipped pose or shift convention must fail. Then trained on.

Skipped (with the reason) where the importer cannot run: it needs pyem in an
environment Scipion installs (``scipion3 installb pyem``)."""
import os
import unittest

import mrcfile
import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from gmmplugin.engine.fourier import fsc
from gmmplugin.engine.simulate import SimulationSettings, simulate
from gmmplugin.protocols import GmmProtFitNeutral, GmmProtReconstruct, GmmProtTrain
from gmmplugin.tests import data_path, import_simulated_particles
from gmmplugin.tests.cryosparc_data import cryosparc_importer_problem, write_cryosparc

BOX, APIX, N = 32, 3.0, 1000


def _simulate(folder, n=N):
    star = simulate(data_path("1hvr.pdb"), folder,
                    SimulationSettings(n_particles=n, box=BOX, apix=APIX, snr=0.0, seed=17))
    return star, mrcfile.read(os.path.join(folder, "maps", "consensus.mrc"))


class TestCryosparcFile(unittest.TestCase):
    """The written .cs holds the simulator's poses, shifts and CTFs (read back
    with cryosparc-tools), whatever Scipion can import."""

    def test_written_dataset_reads_back(self):
        try:
            from cryosparc.dataset import Dataset
        except ImportError:
            raise unittest.SkipTest("cryosparc-tools not installed")
        import tempfile

        from scipy.spatial.transform import Rotation

        from gmmplugin.engine.starfile import read_star
        with tempfile.TemporaryDirectory() as tmp:
            star, _ = _simulate(os.path.join(tmp, "sim"), n=50)
            cs = Dataset.load(write_cryosparc(star, os.path.join(tmp, "J7")))
            p = read_star(star)
            A = Rotation.from_rotvec(cs["alignments3D/pose"].astype(np.float64)).as_matrix()
            self.assertLess(np.abs(A - p.rotations).max(), 1e-5)
            np.testing.assert_allclose(cs["alignments3D/shift"] * APIX, p.shifts, atol=1e-4)
            np.testing.assert_allclose(cs["ctf/df1_A"], p.ctf[:, 0], rtol=1e-6)
            np.testing.assert_allclose(np.rad2deg(cs["ctf/df_angle_rad"]), p.ctf[:, 2],
                                       atol=1e-4)
            self.assertEqual(cs["blob/idx"].tolist(), p.frame.tolist())
            self.assertTrue(all(os.path.exists(os.path.join(tmp, b))
                                for b in set(cs["blob/path"])))


class TestCryosparcChain(BaseTest):
    @classmethod
    def setUpClass(cls):
        problem = cryosparc_importer_problem()
        if problem:
            raise unittest.SkipTest(problem)
        setupTestProject(cls)
        tmp = os.path.abspath(cls.proj.getTmpPath())
        star, cls.truth = _simulate(os.path.join(tmp, "sim"))
        cls.relion = import_simulated_particles(cls, star, APIX, "import RELION")
        cls.imports = {flip: cls._import_cs(write_cryosparc(
            star, os.path.join(tmp, "cs_%s" % flip, "J%d" % i), flip), flip)
            for i, flip in enumerate(("none", "pose", "shift"), 1)}

    @classmethod
    def _import_cs(cls, cs, flip):
        from pwem.protocols import ProtImportParticles
        prot = cls.newProtocol(ProtImportParticles,
                               importFrom=ProtImportParticles.IMPORT_FROM_CRYOSPARC,
                               csFile=cs, samplingRate=APIX, magnification=50000,
                               haveDataBeenPhaseFlipped=False, voltage=300,
                               sphericalAberration=2.7, amplitudeContrast=0.1,
                               objLabel="import cryoSPARC (%s flipped)" % flip)
        cls.launchProtocol(prot)
        return prot

    def _reconstruct(self, imp):
        rec = self.newProtocol(GmmProtReconstruct)
        rec.inputParticles.set(imp)
        rec.inputParticles.setExtended("outputParticles")
        self.launchProtocol(rec)
        return rec, fsc(mrcfile.read(rec.Volume.getFileName()), self.truth)

    def test_fsc_matches_relion_chain_and_wrong_conventions_fail(self):
        shells = np.arange(1, int(BOX / 2.5) + 1)          # to 2.5 × the pixel size
        _, ref = self._reconstruct(self.relion)
        rec, got = self._reconstruct(self.imports["none"])
        diff = np.abs(got[shells] - ref[shells])
        print("cryoSPARC vs RELION chain, FSC with the truth: max |difference| %.4f"
              % diff.max())
        self.assertLessEqual(diff.max(), 0.02)
        for flip in ("pose", "shift"):
            _, bad = self._reconstruct(self.imports[flip])
            print("%s flipped: mean FSC %.3f" % (flip, bad[shells].mean()))
            self.assertLess(bad[shells].mean(), 0.5)
        # and the latent chain trains on it
        fit = self.newProtocol(GmmProtFitNeutral, targetResolution=9.0)
        fit.inputVolume.set(rec)
        fit.inputVolume.setExtended("Volume")
        self.launchProtocol(fit)
        train = self.newProtocol(GmmProtTrain, numEpochs=2, latentDim=2, batchSize=32)
        train.inputParticles.set(self.imports["none"])
        train.inputParticles.setExtended("outputParticles")
        train.inputGmm.set(fit)
        train.inputGmm.setExtended("Gmm")
        self.launchProtocol(train)
        self.assertEqual(train.Particles.getSize(), N)
