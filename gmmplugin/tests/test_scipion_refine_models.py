"""Headless Scipion: import a PDB and a small volume series -> gmm - refine
atomic model series (few steps): outputs exist, gemmi reads them, they carry
their latent coordinates and validation figures, and they fit their maps."""
import os
import unittest

import gemmi
import mrcfile
import numpy as np
import pytest
from pwem.objects import AtomStruct, SetOfAtomStructFlex
from pwem.protocols import ProtImportPdb, ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject

from gmmplugin.engine.atomic import monlib
from gmmplugin.tests.perturb import swing
from gmmplugin.engine.atoms import atoms_to_params
from gmmplugin.engine.gmm import render_volume_fourier
from gmmplugin.engine.io import write_map
from gmmplugin.protocols import GmmProtRefineModels
from gmmplugin.tests import check_every_viewer_entry, data_path

RES, APIX, BOX = 5.0, 1.5, 48
ANGLES = (0.0, 6.0, 12.0)

# unittest's SkipTest: a skip for pytest and for Scipion's runner (unittest) alike
if not os.path.isdir(monlib.DEBIAN_MONOMERS) and not os.environ.get("GMM_MONOMERS"):
    raise unittest.SkipTest("CCP4 monomer library (refmac-dictionary) not installed")


def _series(folder):
    """Maps of 5a7u with its C-terminal half swung by ANGLES, in the model's
    frame (MRC origin), and the true coordinates."""
    import torch
    st = gemmi.read_structure(data_path("5a7u.pdb"))
    st.remove_hydrogens()
    st.remove_waters()
    xyz = np.array([a.pos.tolist() for r in st[0][0] for a in r])
    z = np.array([a.element.atomic_number for r in st[0][0] for a in r], float)
    half = np.arange(len(xyz)) >= len(xyz) // 2
    centre = xyz.mean(0)
    origin = centre - (BOX // 2) * APIX
    sigma = float(np.sqrt(1 + (0.225 * RES) ** 2))
    paths, truths = [], []
    for i, a in enumerate(ANGLES):
        t = swing(xyz, half, a)
        p = torch.as_tensor(atoms_to_params(t - centre, z, sigma), dtype=torch.float64)
        with torch.no_grad():
            vol = render_volume_fourier(p, BOX, APIX).float().numpy()
        path = os.path.join(folder, "frame_%02d.mrc" % i)
        write_map(path, vol, APIX)
        with mrcfile.open(path, "r+") as m:
            m.header.origin = tuple(float(v) for v in origin)
        paths.append(path)
        truths.append(t)
    return paths, truths


class TestRefineModels(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = os.path.abspath(cls.proj.getTmpPath())
        cls.paths, cls.truths = _series(folder)
        cls.importPdb = cls.newProtocol(ProtImportPdb,
                                        inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
                                        pdbFile=data_path("5a7u.pdb"), objLabel="import 5a7u")
        cls.launchProtocol(cls.importPdb)
        cls.importVols = cls.newProtocol(ProtImportVolumes, filesPath=folder,
                                         filesPattern="frame_*.mrc", samplingRate=APIX,
                                         objLabel="import series")
        cls.launchProtocol(cls.importVols)
        cls.importVol = cls.newProtocol(ProtImportVolumes, filesPath=cls.paths[0],
                                        samplingRate=APIX, objLabel="import frame 0")
        cls.launchProtocol(cls.importVol)

    def _prot(self, label):
        prot = self.newProtocol(GmmProtRefineModels, targetResolution=RES, numPatches=4,
                                steps="15 15 15", objLabel=label)
        prot.inputAtomStruct.set(self.importPdb)
        prot.inputAtomStruct.setExtended("outputPdb")
        return prot

    def test_series(self):
        prot = self._prot("refine series")
        prot.inputVolumes.set(self.importVols)
        prot.inputVolumes.setExtended("outputVolumes")
        self.launchProtocol(prot)
        models = prot.AtomStructs
        self.assertIsInstance(models, SetOfAtomStructFlex)
        self.assertEqual(models.getSize(), len(ANGLES))
        for f, item in enumerate(models.iterItems(orderBy="id")):
            st = gemmi.read_structure(item.getFileName())
            self.assertGreater(st[0].count_atom_sites(), 200)
            self.assertEqual([float(v) for v in item.getZFlex()], [float(f)])
            self.assertGreater(item._gmmFrc.get(), 0.8)
            self.assertLess(item._gmmBondRmsz.get(), 3.0)
        self.assertTrue(any("model(s) refined" in line for line in prot.summary()))
        # the viewer's plotting function works on these outputs, headless
        from gmmplugin.engine import plots
        rows = prot._validation()
        fig = plots.plot_model_validation(rows, out_png=prot._getExtraPath("validation.png"))
        self.assertTrue(os.path.exists(prot._getExtraPath("validation.png")))
        fig.clf()
        check_every_viewer_entry(self, prot)

    def test_single_map(self):
        prot = self._prot("refine single")
        prot.inputVolume.set(self.importVol)
        prot.inputVolume.setExtended("outputVolume")
        self.launchProtocol(prot)
        self.assertIsInstance(prot.AtomStruct, AtomStruct)
        st = gemmi.read_structure(prot.AtomStruct.getFileName())
        self.assertGreater(st[0].count_atom_sites(), 200)

    def test_validate_errors(self):
        prot = self._prot("refine nothing")
        errors = prot.validate()
        self.assertTrue(any("either one map or a volume series" in e for e in errors))
        prot.inputVolumes.set(self.importVols)
        prot.inputVolumes.setExtended("outputVolumes")
        prot.targetResolution.set(1.0)
        prot.steps.set("1 2")
        errors = prot.validate()
        self.assertTrue(any("Nyquist" in e for e in errors))
        self.assertTrue(any("three whole numbers" in e for e in errors))
