"""End to end, the convention test: simulate -> Scipion RELION import ->
gmmplugin conversion -> reconstruction -> FSC against the ground-truth map.

Also shows the test can fail: flipping the handedness, the rotation
(transpose), the shift sign or the CTF sign each gives a clearly worse map.
"""
import os

import mrcfile
import numpy as np
from pwem.constants import ALIGN_NONE
from pwem.objects import SetOfParticles
from pyworkflow.tests import BaseTest, setupTestProject

from gmmplugin.convert import (matrix_to_pose, particles_to_engine, update_transforms,
                               validate_particles)
from gmmplugin.engine.particles import Particles
from gmmplugin.engine.fourier import fsc
from gmmplugin.engine.reconstruct import reconstruct
from gmmplugin.engine.simulate import SimulationSettings, simulate
from gmmplugin.protocols import GmmProtReconstruct
from gmmplugin.tests import check_every_viewer_entry, data_path, import_simulated_particles

BOX, APIX, N = 64, 1.5, 2000


class TestConventions(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.sims = {}
        for name, snr in (("clean", 0.0), ("noisy", 0.1)):
            out = os.path.join(cls.proj.getTmpPath(), "sim_" + name)
            out = os.path.abspath(out)
            star = simulate(data_path("1hvr.pdb"), out,
                            SimulationSettings(n_particles=N, box=BOX, apix=APIX, snr=snr,
                                               seed=11 if snr else 7))
            prot = import_simulated_particles(cls, star, APIX, "import " + name)
            gt = mrcfile.read(os.path.join(out, "maps", "consensus.mrc"))
            cls.sims[name] = (prot, out, gt)

    def _reconstruct_with_protocol(self, name):
        prot = self.newProtocol(GmmProtReconstruct, objLabel="reconstruct " + name)
        prot.inputParticles.set(self.sims[name][0])
        prot.inputParticles.setExtended("outputParticles")
        self.launchProtocol(prot)
        vol = mrcfile.read(prot.Volume.getFileName())
        return prot, fsc(vol, self.sims[name][2])

    def test_noiseless_recovers_the_map_and_wrong_conventions_fail(self):
        prot, curve = self._reconstruct_with_protocol("clean")
        shells = np.arange(1, int(BOX / 2.5) + 1)          # up to 2.5 × pixel size
        print("clean FSC vs truth:", np.round(curve[shells], 3))
        self.assertGreaterEqual(curve[shells].min(), 0.9)
        self.assertIsNotNone(prot.FSC)
        self.assertLess(float(prot.FSC.calculateResolution()), 4.0)
        check_every_viewer_entry(self, prot)

        particles = Particles.load(prot._getExtraPath("particles.npz"))
        gt = self.sims["clean"][2]
        flip = np.diag([1.0, 1.0, -1.0])
        variants = {
            "handedness": lambda p: setattr(p, "rotations", p.rotations @ flip),
            "transposed rotation": lambda p: setattr(p, "rotations",
                                                     p.rotations.transpose(0, 2, 1)),
            "shift sign": lambda p: setattr(p, "shifts", -p.shifts),
            "CTF sign": lambda p: p.ctf.__setitem__((slice(None), 6), p.ctf[:, 6] + 180.0),
        }
        good = curve[shells].mean()
        for label, change in variants.items():
            p = particles.subset(np.arange(len(particles)))
            p.ctf = p.ctf.copy()
            change(p)
            bad = fsc(reconstruct(p, pad=1).full, gt)[shells].mean()
            print("%s: mean FSC %.3f (correct %.3f)" % (label, bad, good))
            self.assertLess(bad, good - 0.3, label)

    def test_snr_01_reaches_four_pixels(self):
        prot, curve = self._reconstruct_with_protocol("noisy")
        shells = np.arange(1, BOX // 4 + 1)                  # up to 4 × pixel size
        print("SNR 0.1 FSC vs truth:", np.round(curve[shells], 3))
        self.assertGreaterEqual(curve[shells].min(), 0.5)
        # Continue after pointing the finished run at other particles: it converts
        # and reconstructs again (their map is the clean one), never reuses the old
        before = open(prot._getFileName("particles"), "rb").read()
        prot.inputParticles.set(self.sims["clean"][0])
        prot.inputParticles.setExtended("outputParticles")
        self.launchProtocol(prot)
        self.assertNotEqual(open(prot._getFileName("particles"), "rb").read(), before)
        again = fsc(mrcfile.read(prot.Volume.getFileName()), self.sims["clean"][2])
        self.assertGreater(again[shells].min(), curve[shells].min())

    def test_converter_round_trip_by_id(self):
        parts = self.sims["clean"][0].outputParticles
        out = os.path.join(self.proj.getTmpPath(), "conv.npz")
        engine = particles_to_engine(parts, out)
        truth = np.load(os.path.join(self.sims["clean"][1], "ground_truth.npz"))
        order = np.searchsorted(truth["ids"], engine.ids)
        self.assertTrue(np.allclose(engine.rotations, truth["rotations"][order], atol=1e-4))
        self.assertTrue(np.allclose(engine.shifts, truth["shifts"][order], atol=1e-3))
        self.assertTrue(np.allclose(engine.ctf[:, :2], truth["ctf"][order, :2], atol=0.5))
        # back: new poses matched by id, on a subset with non-consecutive ids
        keep = engine.ids[::3]
        rows = np.searchsorted(engine.ids, keep)
        newset = SetOfParticles(filename=os.path.join(self.proj.getTmpPath(), "rt.sqlite"))
        update_transforms(parts, newset, engine.rotations[rows][::-1].copy()[::-1],
                          engine.shifts[rows], keep)
        self.assertEqual(newset.getSize(), len(keep))
        for p in newset.iterItems():
            orig = parts[p.getObjId()]
            self.assertTrue(np.allclose(p.getTransform().getMatrix(),
                                        orig.getTransform().getMatrix(), atol=1e-6))
            A, o = matrix_to_pose(p.getTransform().getMatrix(), APIX)
            r = np.searchsorted(truth["ids"], p.getObjId())
            self.assertTrue(np.allclose(o, truth["shifts"][r], atol=1e-3))

    def test_bad_inputs_give_clear_errors(self):
        parts = self.sims["clean"][0].outputParticles
        tmp = self.proj.getTmpPath()
        empty = SetOfParticles(filename=os.path.join(tmp, "empty.sqlite"))
        empty.copyInfo(parts)
        self.assertIn("empty", validate_particles(empty)[0])
        with self.assertRaisesRegex(ValueError, "empty"):
            particles_to_engine(empty, os.path.join(tmp, "e.npz"))

        def copy(name, change):
            s = SetOfParticles(filename=os.path.join(tmp, name + ".sqlite"))
            s.copyInfo(parts)
            change(s)
            for i, p in enumerate(parts.iterItems()):
                if i == 5:
                    break
                s.append(p)
            return s

        no_ctf = copy("noctf", lambda s: s.setHasCTF(False))
        self.assertTrue(any("no CTF" in e for e in validate_particles(no_ctf)))
        no_ali = copy("noali", lambda s: s.setAlignment(ALIGN_NONE))
        self.assertTrue(any("3D projection alignment" in e for e in validate_particles(no_ali)))
        with self.assertRaisesRegex(ValueError, "alignment"):
            particles_to_engine(no_ali, os.path.join(tmp, "a.npz"))
        prot = self.newProtocol(GmmProtReconstruct)
        prot.inputParticles.set(no_ctf)
        self.assertTrue(any("no CTF" in e for e in prot.validate()))
