"""Headless Scipion: GmmProtTrain with symmetry c2 expands the particles.

A C2 dimer of 1hvr chain A whose flap domains swing independently: RELION
import + the simulated consensus map -> fit -> train (c2). The output holds
two items per particle that trace back to it (_gmmSourceId, _gmmSymCopy),
whose poses differ by the 2-fold, and whose latents follow the subunit each
copy sees."""
import os

import numpy as np
from pwem.protocols import ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from gmmplugin.convert import matrix_to_pose
from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.engine.symmetry import symmetry_operators
from gmmplugin.protocols import GmmProtFitNeutral, GmmProtTrain
from gmmplugin.tests import data_path, import_simulated_particles

N, BOX, APIX = 600, 32, 3.6


class TestTrainSymmetry(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        out = os.path.abspath(os.path.join(cls.proj.getTmpPath(), "sim"))
        het = Heterogeneity(move="A:43-78", motion="rotate", amount=30.0, symmetry="c2",
                            subunit="A")
        star = simulate(data_path("1hvr.pdb"), out,
                        SimulationSettings(n_particles=N, box=BOX, apix=APIX, snr=1.0,
                                           seed=5), het)
        cls.truth = np.load(os.path.join(out, "ground_truth.npz"))["conformation"]
        imp = import_simulated_particles(cls, star, APIX)
        vol = cls.newProtocol(ProtImportVolumes, samplingRate=APIX,
                              filesPath=os.path.join(out, "maps", "state_t0.50.mrc"))
        cls.launchProtocol(vol)
        fit = cls.newProtocol(GmmProtFitNeutral, targetResolution=8.0)
        fit.inputVolume.set(vol)
        fit.inputVolume.setExtended("outputVolume")
        cls.launchProtocol(fit)
        train = cls.newProtocol(GmmProtTrain, numEpochs=5, latentDim=2, batchSize=32,
                                learningRate=1e-3, maxResolution=8.0, symmetry="c2")
        train.inputParticles.set(imp)
        train.inputParticles.setExtended("outputParticles")
        train.inputGmm.set(fit)
        train.inputGmm.setExtended("Gmm")
        cls.launchProtocol(train)
        cls.imp, cls.train, cls.fit = imp, train, fit

    def test_expanded_output(self):
        out = self.train.Particles
        self.assertEqual(out.getSize(), 2 * N)
        self.assertEqual(out.getFlexInfo().getAttr("symmetry"), "c2")
        src_pose = {p.getObjId(): p.getTransform().getMatrix().copy()
                    for p in self.imp.outputParticles}
        R2 = symmetry_operators("c2")[1]
        copies, src, z = [], [], []
        for p in out.iterItems(orderBy="id"):
            s, k = p._gmmSourceId.get(), p._gmmSymCopy.get()
            src.append(s)
            copies.append(k)
            z.append(p.getZFlex())
            A, sh = matrix_to_pose(p.getTransform().getMatrix(), APIX)
            A0, sh0 = matrix_to_pose(src_pose[s], APIX)
            expect = A0 if k == 0 else A0 @ R2.T        # A·R_gᵀ
            self.assertTrue(np.allclose(A, expect, atol=1e-5))
            self.assertTrue(np.allclose(sh, sh0, atol=1e-4))
        src, copies = np.array(src), np.array(copies)
        self.assertEqual(sorted(set(src)), sorted(src_pose))
        self.assertTrue(np.all(np.bincount(src)[1:] == 2))
        self.assertEqual(sorted(set(copies)), [0, 1])
        pc = PCA(1).fit_transform(np.array(z))[:, 0]
        seen = []
        for k in (0, 1):
            sel = copies == k
            rho = [abs(spearmanr(pc[sel], self.truth[src[sel] - 1, j])[0]) for j in (0, 1)]
            print("copy %d: |rho| with subunit 0, 1: %.2f, %.2f" % (k, rho[0], rho[1]))
            self.assertGreaterEqual(max(rho), 0.6)
            self.assertLessEqual(min(rho), 0.2)
            seen.append(int(np.argmax(rho)))
        self.assertNotEqual(seen[0], seen[1])
        self.assertTrue(any("Symmetry C2" in line for line in self.train.summary()))

    def test_validate_rejects_unsupported_symmetry(self):
        prot = self.newProtocol(GmmProtTrain, symmetry="i2")
        prot.inputParticles.set(self.imp)
        prot.inputParticles.setExtended("outputParticles")
        prot.inputGmm.set(self.fit)
        prot.inputGmm.setExtended("Gmm")
        errors = prot._validate()
        self.assertTrue(any("Unsupported symmetry 'i2'" in e and "Cn" in e for e in errors),
                        errors)
