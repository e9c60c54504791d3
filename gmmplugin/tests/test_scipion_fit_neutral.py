"""Headless Scipion: import a map (or a model) -> gmm - fit neutral GMM.

Acceptance of the neutral fit: a map of 1bd2 (box 96, 2 Å/px) fitted at 8 Å
with the automatic number of Gaussians reproduces the map with FSC ≥ 0.9 at
every frequency below 1/8 Å⁻¹; the same from the atomic model alone.
"""
import os

import gemmi
import mrcfile
import numpy as np
from pwem.protocols import ProtImportPdb, ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject

from gmmplugin.engine.atoms import read_atoms
from gmmplugin.engine.fit_neutral import map_from_atoms
from gmmplugin.engine.fourier import fsc, shell_resolutions
from gmmplugin.engine.gmm import Gmm
from gmmplugin.engine.io import write_map
from gmmplugin.protocols import GmmProtFitNeutral
from gmmplugin.tests import check_every_viewer_entry, data_path

BOX, APIX, RES = 96, 2.0, 8.0


def fsc_below(curve, box, apix, res):
    r = shell_resolutions(box, apix)
    shells = np.arange(1, len(r))
    return curve[shells[r[shells] >= res]]


class TestFitNeutral(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        xyz, z, _, _ = read_atoms(data_path("1bd2.pdb"))
        vol, _, _, _, _ = map_from_atoms(xyz, z, 4.0, apix=APIX, box=BOX)
        cls.map_file = os.path.abspath(os.path.join(cls.proj.getTmpPath(), "1bd2.mrc"))
        write_map(cls.map_file, vol, APIX)
        cls.importVol = cls.newProtocol(ProtImportVolumes, filesPath=cls.map_file,
                                        samplingRate=APIX, objLabel="import 1bd2 map")
        cls.launchProtocol(cls.importVol)

    def _check_outputs(self, prot, target):
        gmm = Gmm.load(prot.Gmm.getFileName())
        self.assertEqual(len(gmm), prot.Gmm.getNumGaussians())
        out_map = mrcfile.read(prot.Volume.getFileName().split(":")[0])
        self.assertEqual(out_map.shape, target.shape)
        st = gemmi.read_structure(prot.Points.getFileName())
        self.assertEqual(st[0].count_atom_sites(), len(gmm))
        curve = fsc(out_map, target)
        below = fsc_below(curve, target.shape[0], prot.Gmm.getSamplingRate(), RES)
        print("%s: N=%d, min FSC below 1/%g Å: %.3f" % (prot.getObjLabel(), len(gmm), RES,
                                                       below.min()))
        self.assertGreaterEqual(below.min(), 0.9)
        self.assertTrue(any("FSC" in line for line in prot.summary()))
        return gmm

    def test_fit_map_automatic_n(self):
        prot = self.newProtocol(GmmProtFitNeutral, targetResolution=RES,
                                objLabel="fit 1bd2 map")
        prot.inputVolume.set(self.importVol)
        prot.inputVolume.setExtended("outputVolume")
        self.launchProtocol(prot)
        self._check_outputs(prot, mrcfile.read(self.map_file))
        check_every_viewer_entry(self, prot)

    def test_fit_model_only(self):
        imp = self.newProtocol(ProtImportPdb, inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
                               pdbFile=data_path("1bd2.pdb"), objLabel="import 1bd2 model")
        self.launchProtocol(imp)
        prot = self.newProtocol(GmmProtFitNeutral, targetResolution=RES,
                                objLabel="fit 1bd2 model")
        prot.inputAtomStruct.set(imp)
        prot.inputAtomStruct.setExtended("outputPdb")
        self.launchProtocol(prot)
        target = mrcfile.read(prot._getExtraPath("model_map.mrc"))
        self._check_outputs(prot, target)
        # the centres overlay the model (same frame as the input coordinates)
        xyz, _, _, _ = read_atoms(data_path("1bd2.pdb"))
        pts = gemmi.read_structure(prot.Points.getFileName())
        p = np.array([a.pos.tolist() for r in pts[0].all() for a in [r.atom]])
        d = np.sqrt(((p[:200, None] - xyz[None]) ** 2).sum(-1)).min(1)
        self.assertLess(np.median(d), 2.5)

    def test_validation_messages(self):
        prot = self.newProtocol(GmmProtFitNeutral, targetResolution=3.0)
        self.assertIn("Give a consensus map", prot.validate()[0])
        prot.inputVolume.set(self.importVol)
        prot.inputVolume.setExtended("outputVolume")
        self.assertTrue(any("Nyquist" in e for e in prot.validate()))
