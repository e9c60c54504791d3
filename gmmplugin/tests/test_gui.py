"""The Scipion GUI as users meet it, under a real X server (Xvfb), and the
latent selection on the demo's kind of data (a subunit present in half of the
particles).

A small finished project (import → reconstruct → fit → train → analyze →
refine orientations, and an atomic model refined into a map) is opened in
Scipion's project window; the form of every gmmplugin protocol and every entry
of every viewer of every run are opened (``gui_walk.py``). Each window must
appear, and no exception may reach the GUI's log. One PNG per window is saved
in ``gui_screenshots/`` at the repository root, for a person to look at.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

import numpy as np
import pytest
from pwem.protocols import ProtImportPdb, ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject

from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
import gmmplugin.protocols as protocols
from gmmplugin.protocols import (GmmProtAnalyze, GmmProtFitNeutral, GmmProtReconstruct,
                                 GmmProtRefineModels, GmmProtRefineOrientations,
                                 GmmProtSelectLatent, GmmProtTrain)
from gmmplugin.tests import data_path, import_simulated_particles
from gmmplugin.tests.test_protocol_tree import PIPELINE

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHOTS = os.path.join(REPO, "gui_screenshots")
N, BOX, APIX = 300, 32, 3.0

# unittest's SkipTest: a skip for pytest and for Scipion's runner (unittest) alike
if not shutil.which("Xvfb"):
    raise unittest.SkipTest("Xvfb is not installed (scripts/setup.sh installs it)")


def _connect(param, prot, name):
    param.set(prot)
    param.setExtended(name)


class TestGui(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        out = os.path.abspath(os.path.join(cls.proj.getTmpPath(), "sim"))
        star = simulate(data_path("1hvr.pdb"), out,
                        SimulationSettings(n_particles=N, box=BOX, apix=APIX, snr=0.5, seed=3),
                        Heterogeneity(remove="B", present_fraction=0.5))
        cls.truth = np.load(os.path.join(out, "ground_truth.npz"))
        imp = import_simulated_particles(cls, star, APIX)
        cls.runs = [cls._run(GmmProtReconstruct, inputParticles=(imp, "outputParticles"))]
        cls.runs.append(cls._run(GmmProtFitNeutral, targetResolution=9.0,
                                 inputVolume=(cls.runs[0], "Volume")))
        train = cls._run(GmmProtTrain, numEpochs=2, latentDim=2, batchSize=32,
                         inputParticles=(imp, "outputParticles"),
                         inputGmm=(cls.runs[1], "Gmm"))
        cls.runs.append(train)
        cls.runs.append(cls._run(GmmProtAnalyze, numClasses=2, numPCs=1, numFrames=3,
                                 particlesPerFrame=100, pathAnchors="class:1; class:2",
                                 inputParticles=(train, "Particles")))
        cls.runs.append(cls._run(GmmProtSelectLatent, classIds="1", keepComplement=True,
                                 inputParticles=(cls.runs[-1], "Particles")))
        cls.runs.append(cls._run(GmmProtRefineOrientations, iterations=4,
                                 inputParticles=(train, "Particles")))
        cls.runs.append(cls._refine_model())

    @classmethod
    def _run(cls, protocol_class, **params):
        inputs = {k: v for k, v in params.items() if isinstance(v, tuple)}
        prot = cls.newProtocol(protocol_class,
                               **{k: v for k, v in params.items() if k not in inputs})
        if hasattr(prot, "numberOfThreads"):
            prot.numberOfThreads.set(1)
        for name, (source, output) in inputs.items():
            _connect(getattr(prot, name), source, output)
        cls.launchProtocol(prot)
        return prot

    @classmethod
    def _refine_model(cls):
        from gmmplugin.engine.atomic import monlib
        if not os.path.isdir(monlib.DEBIAN_MONOMERS) and not os.environ.get("GMM_MONOMERS"):
            return None
        from gmmplugin.tests.test_scipion_refine_models import APIX as MAP_APIX, _series
        folder = os.path.abspath(os.path.join(cls.proj.getTmpPath(), "maps"))
        os.makedirs(folder, exist_ok=True)
        paths, _ = _series(folder)
        pdb = cls.newProtocol(ProtImportPdb, inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
                              pdbFile=data_path("5a7u.pdb"))
        cls.launchProtocol(pdb)
        vol = cls.newProtocol(ProtImportVolumes, filesPath=paths[0], samplingRate=MAP_APIX)
        cls.launchProtocol(vol)
        return cls._run(GmmProtRefineModels, targetResolution=5.0, numPatches=4,
                        steps="5 5 5", stages=0, inputAtomStruct=(pdb, "outputPdb"),
                        inputVolume=(vol, "outputVolume"))

    def _walk(self):
        """Run gui_walk.py on this project under a fresh Xvfb; (result, stderr)."""
        display = ":%d" % (90 + os.getpid() % 400)
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1100x24"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            shutil.rmtree(SHOTS, ignore_errors=True)
            result = os.path.join(self.proj.getTmpPath(), "gui_walk.json")
            env = dict(os.environ, DISPLAY=display, PYTHONPATH=REPO)
            run = subprocess.run([sys.executable, "-O", os.path.join(HERE, "gui_walk.py"),
                                  self.proj.getPath(), SHOTS, result],
                                 env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(run.returncode, 0, run.stderr[-3000:])
            with open(result) as f:
                return json.load(f), run.stderr
        finally:
            xvfb.terminate()
            xvfb.wait()

    def test_every_form_and_viewer_entry_opens(self):
        result, stderr = self._walk()
        self.assertEqual(result["errors"], [])
        self.assertNotIn("Traceback", stderr)
        names = [w["name"] for w in result["windows"]]
        print("GUI windows:", len(names), "screenshots in", SHOTS)
        self.assertEqual(names[0], "project_window")
        for name in PIPELINE:
            self.assertIn("form_" + name, names)
        # the protocol tree, unfolded at 3D > Analysis > Heterogeneity, lists them in order
        labels = [getattr(protocols, name).getClassLabel() for name in PIPELINE]
        self.assertEqual([t for t in result["tree"] if t in labels], labels)
        for w in result["windows"]:
            self.assertTrue(w["mapped"], w["name"])
            self.assertGreater(min(w["size"]), 50, w["name"])
            self.assertGreater(w["colours"], 8, "%s looks blank" % w["name"])
            self.assertTrue(os.path.getsize(w["png"]) > 2000, w["name"])
        errors = [m for m in result.get("messages", []) if m["type"] == 2]
        self.assertEqual(errors, [])
        # one viewer form per finished run, and something shown for each of its entries
        runs = [r for r in self.runs if r is not None]
        viewer_forms = [n for n in names if n.startswith("viewer_")]
        self.assertEqual(len(viewer_forms), len(runs))
        # the polygon wizard: a drawn polygon selects particles, a click decodes the GMM
        wizard = result["wizard"]
        self.assertGreater(wizard["in_polygon"], 0)
        self.assertGreater(wizard["selected"], wizard["in_polygon"])   # + a whole class
        self.assertIn(wizard["classes"], ("1", "2"))
        self.assertTrue(wizard["decoded"], wizard["status"])
        self.assertEqual(len(wizard["polygons"].split(";")), 1)
        self.assertIn("wizard_latent_selection", names)
        for tag in ("displayFsc", "displayLatent", "displayClasses", "displaySeries",
                    "displayChanges", "displaySelection", "displayWindow"):
            self.assertTrue(any(tag in n for n in names if not n.startswith("viewer_")),
                            "no window for %s" % tag)

    def test_selection_of_the_bound_class_by_id_and_by_polygon(self):
        """The class holding chain B, selected by its id and by a polygon around
        it in zRed, gives exactly its particles, with their latents."""
        from scipy.spatial import ConvexHull

        from gmmplugin.engine.selection import format_polygons
        analysis = self.runs[3]
        items = {p.getObjId(): (p._gmmClass.get(), list(p.getZFlex()), list(p.getZRed()))
                 for p in analysis.Particles.iterItems()}
        ids = np.array(sorted(items))
        classes = np.array([items[i][0] for i in ids])
        present = self.truth["composition"][ids - 1] == 1
        bound = max((1, 2), key=lambda c: present[classes == c].mean())
        self.assertGreater(present[classes == bound].mean(), 0.9)
        wanted = ids[classes == bound].tolist()
        hull = np.array([items[i][2] for i in wanted])
        hull = hull[ConvexHull(hull).vertices]
        for params in ({"classIds": str(bound)}, {"polygons": format_polygons([hull])}):
            sel = self.newProtocol(GmmProtSelectLatent, **params)
            _connect(sel.inputParticles, analysis, "Particles")
            self.launchProtocol(sel)
            got = {p.getObjId(): list(p.getZFlex()) for p in sel.Particles.iterItems()}
            self.assertEqual(sorted(got), wanted)
            self.assertTrue(all(got[i] == items[i][1] for i in wanted))
