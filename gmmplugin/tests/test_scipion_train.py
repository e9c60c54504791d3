"""Headless Scipion pipeline on a tiny heterogeneous dataset:
RELION import -> gmm reconstruct (consensus) -> fit neutral GMM -> train,
checking that the latents follow the simulated motion, the output set keeps
every particle's id, and that 'continue' resumes instead of restarting."""
import os

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.protocols import GmmProtFitNeutral, GmmProtReconstruct, GmmProtTrain
from gmmplugin.tests import check_every_viewer_entry, data_path, import_simulated_particles
from gmmplugin.viewers import GmmAnalyzeViewer

N, BOX, APIX = 600, 32, 3.0


class TestTrainPipeline(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        out = os.path.abspath(os.path.join(cls.proj.getTmpPath(), "sim"))
        cls.star = simulate(data_path("1hvr.pdb"), out,
                            SimulationSettings(n_particles=N, box=BOX, apix=APIX, snr=0.5,
                                               seed=21),
                            Heterogeneity(move="B", motion="rotate", amount=40.0))
        cls.truth = np.load(os.path.join(out, "ground_truth.npz"))
        imp = import_simulated_particles(cls, cls.star, APIX)
        cls.imp = imp
        rec = cls.newProtocol(GmmProtReconstruct, objLabel="consensus")
        rec.inputParticles.set(imp)
        rec.inputParticles.setExtended("outputParticles")
        cls.launchProtocol(rec)
        fit = cls.newProtocol(GmmProtFitNeutral, targetResolution=8.0)
        fit.inputVolume.set(rec)
        fit.inputVolume.setExtended("Volume")
        cls.launchProtocol(fit)
        cls.fit = fit
        train = cls._train(epochs=6)
        cls.train = train

    @classmethod
    def _train(cls, epochs, previous=None, **kw):
        prot = cls.newProtocol(GmmProtTrain, numEpochs=epochs, latentDim=2, batchSize=32,
                               learningRate=1e-3, maxResolution=8.0,
                               objLabel="train %d" % epochs, **kw)
        prot.inputParticles.set(cls.imp)
        prot.inputParticles.setExtended("outputParticles")
        prot.inputGmm.set(cls.fit)
        prot.inputGmm.setExtended("Gmm")
        if previous is not None:
            prot.doContinue.set(True)
            prot.continueRun.set(previous)
        cls.launchProtocol(prot)
        return prot

    def test_latents_follow_motion_and_ids_match(self):
        out = self.train.Particles
        self.assertEqual(out.getSize(), N)
        self.assertEqual(out.getFlexInfo().getProgName(), "GMMPLUGIN")
        ids, z = [], []
        for p in out.iterItems(orderBy="id"):
            ids.append(p.getObjId())
            z.append(p.getZFlex())
            self.assertEqual(len(p.getZFlex()), 2)
            self.assertEqual(len(p.getZRed()), 2)
        self.assertEqual(sorted(ids), sorted(p.getObjId() for p in self.imp.outputParticles))
        z = np.array(z)
        # imported ids follow the star file's row order: truth row = id - 1
        t = self.truth["conformation"][np.array(ids) - 1]
        rho = abs(spearmanr(PCA(1).fit_transform(z)[:, 0], t).correlation)
        print("tiny dataset: |rho(PC1, angle)| = %.3f" % rho)
        self.assertGreaterEqual(rho, 0.7)
        self.assertTrue(os.path.exists(self.train._getExtraPath("training_curve.png")))
        self.assertTrue(os.path.exists(out.getFlexInfo().getAttr("modelPath")))

    def test_continue_resumes_and_refines_latents(self):
        """A continued run, this time with latent refinement: the output's zFlex are
        the refined latents, the encoder's are kept, summary and methods say so."""
        more = self._train(epochs=8, previous=self.train, refineLatents=True,
                           refineClasses=4, refineIterations=1)
        log = open(more.getLogPaths()[0]).read()
        self.assertIn("continuing from epoch 6", log)
        self.assertNotIn("epoch 1/8", log)
        self.assertIn("epoch 8/8", log)
        self.assertIn("latent refinement round 1/1", log)
        self.assertEqual(more.Particles.getSize(), N)
        lat = np.load(more._getExtraPath("latents.npz"))
        row = {int(i): r for r, i in enumerate(lat["ids"])}
        for p in more.Particles.iterItems():
            np.testing.assert_allclose(p.getZFlex(), lat["z"][row[p.getObjId()]], rtol=1e-5)
        self.assertFalse(np.allclose(lat["z"], lat["z_encoder"]))
        self.assertIn("Latent refinement (4 classes, to 8.0 Å, rounds: 1)",
                      " ".join(more._summary()))
        self.assertIn("Class centres moved by", " ".join(more._summary()))
        self.assertIn("masked 3D classification", " ".join(more._methods()))
        self.assertIn("mean encoder latent of their particles", " ".join(more._methods()))

    def test_bad_continue_and_analysis_settings_are_rejected_by_validate(self):
        def continue_errors(**kw):
            if "refineClasses" in kw:
                kw["refineLatents"] = True
            prot = self.newProtocol(GmmProtTrain, **dict(dict(latentDim=2, maxResolution=8.0),
                                                         **kw))
            prot.inputParticles.set(self.imp)
            prot.inputParticles.setExtended("outputParticles")
            prot.inputGmm.set(self.fit)
            prot.inputGmm.setExtended("Gmm")
            prot.doContinue.set(True)
            prot.continueRun.set(self.train)
            return " ".join(prot._validate())
        self.assertEqual(continue_errors(numEpochs=9), "")
        # an automatic band is the neutral GMM's 8 Å: the same as the run continued
        self.assertEqual(continue_errors(numEpochs=9, maxResolution=0.0), "")
        self.assertIn("latent dim", continue_errors(numEpochs=9, latentDim=3))
        self.assertIn("vary widths", continue_errors(numEpochs=9, varyWidths=True))
        self.assertIn("similarity score", continue_errors(numEpochs=9, lossFunction=1))
        self.assertIn("already trained 6 epochs", continue_errors(numEpochs=6))
        self.assertIn("at least 2 classes", continue_errors(numEpochs=9, refineClasses=1))
        self.assertIn("needs at least 800 particles",
                      continue_errors(numEpochs=9, refineClasses=200))
        self.assertIn("finer than the particles' Nyquist",
                      continue_errors(numEpochs=9, refineClasses=4, refineResolution=5.0))
        self.assertIn("at least 1 round",
                      continue_errors(numEpochs=9, refineClasses=4, refineIterations=0))
        # settings that would train nothing are refused before the conversion step
        self.assertIn("Epochs and batch size must be positive", continue_errors(numEpochs=0))
        self.assertIn("Epochs and batch size must be positive",
                      continue_errors(numEpochs=9, batchSize=-1))
        self.assertEqual(continue_errors(numEpochs=9, batchSize=0), "")   # automatic
        self.assertIn("learning rate must be positive",
                      continue_errors(numEpochs=9, learningRate=0.0))
        few = self.newProtocol(GmmProtTrain, refineLatents=True, refineClasses=6)
        few.inputParticles.set(self.imp)
        few.inputParticles.setExtended("outputParticles")
        self.assertIn("leaves 50 particles per class", " ".join(few._warnings()))
        few.refineClasses.set(0)
        self.assertEqual(few._warnings(), [])

        from gmmplugin.protocols import GmmProtAnalyze
        ana = self.newProtocol(GmmProtAnalyze, reconstructionBox=33)
        ana.inputParticles.set(self.train)
        ana.inputParticles.setExtended("Particles")
        self.assertIn("reconstruction box", " ".join(ana._validate()))
        ana.reconstructionBox.set(16)
        self.assertEqual(ana._validate(), [])
        # the confidence in the frame maps takes the trained networks
        from gmmplugin.convert import gmm_flex_attr
        ana.weightByConfidence.set(True)
        self.assertEqual(ana._validate(), [])
        ck = str(gmm_flex_attr(self.train.Particles, "modelPath"))
        os.rename(ck, ck + ".away")
        try:
            self.assertIn("needs the trained networks", " ".join(ana._validate()))
        finally:
            os.rename(ck + ".away", ck)

    def test_analyze_outputs_and_viewer_plots(self):
        from pwem.objects import SetOfClasses3D, SetOfParticlesFlex, SetOfVolumesFlex

        from gmmplugin.protocols import GmmProtAnalyze
        from gmmplugin.engine import plots
        from gmmplugin.viewers.viewer_analyze import analysis_files, vseries_script
        prot = self.newProtocol(GmmProtAnalyze, numClasses=2, numPCs=1, numFrames=4,
                                particlesPerFrame=150, outlierFraction=0.05,
                                clustering=2,          # k-means: convex classes (a hull)
                                pathAnchors="class:1; class:2", weightByConfidence=True)
        prot.inputParticles.set(self.train)
        prot.inputParticles.setExtended("Particles")
        self.launchProtocol(prot)
        self.assertIsInstance(prot.Classes, SetOfClasses3D)
        self.assertEqual(prot.Classes.getSize(), 2)
        self.assertEqual(sum(c.getSize() for c in prot.Classes), N)
        for c in prot.Classes:
            self.assertTrue(os.path.exists(c.getRepresentative().getFileName()))
        self.assertIsInstance(prot.Volumes, SetOfVolumesFlex)
        # PC1, each class's principal curve and the path, 4 frames each
        self.assertEqual(prot.Volumes.getSize(), 16)
        self.assertEqual(prot.GmmVolumes.getSize(), 16)
        self.assertEqual({v.getObjLabel() for v in prot.Volumes}, {
            "%s frame %d" % (s, f) for s in ("PC1", "class 1", "class 2", "path")
            for f in range(1, 5)})
        self.assertEqual(prot.PathVolumes.getSize(), 4)
        self.assertEqual(prot.PathGmmVolumes.getSize(), 4)
        for v in prot.PathVolumes:
            self.assertEqual(v._gmmSeries.get(), "path")
            self.assertEqual(len(v.getZFlex()), 2)
            self.assertGreater(v._gmmOccupancy.get(), 0)
            self.assertTrue(os.path.exists(v.getFileName()))
        self.assertIsInstance(prot.Particles, SetOfParticlesFlex)
        self.assertEqual(prot.Particles.getSize() + prot.Outliers.getSize(), N)
        self.assertAlmostEqual(prot.Outliers.getSize() / N, 0.05, delta=0.02)
        # frames follow the motion: mean true angle of each frame's particles is monotonic
        info, res, d = analysis_files(prot)
        from gmmplugin.engine.analyze import frame_members
        pc1 = [f["series"] == "pc1" for f in info["frames"]]
        means = [self.truth["conformation"][np.array(m) - 1].mean()
                 for m, keep in zip(frame_members(res), pc1) if keep]
        rho = spearmanr(np.arange(len(means)), means).correlation
        print("frame means", np.round(means, 2))
        self.assertGreaterEqual(abs(rho), 0.9)
        # the path from class 1 to class 2 follows the motion too
        path = [self.truth["conformation"][np.array(m) - 1].mean()
                for m, f in zip(frame_members(res), info["frames"]) if f["series"] == "path"]
        print("path frame means", np.round(path, 2))
        self.assertGreaterEqual(abs(spearmanr(np.arange(4), path).correlation), 0.9)
        self.assertEqual(info["weights"], "confidence")
        # with the confidence, each frame's map widens shell by shell, from its
        # own particles up to at most three times as many
        for f in info["frames"]:
            self.assertIsNotNone(f["shell_particles"])          # 150 particles each
            shells = np.array(f["shell_particles"])
            self.assertTrue(np.all(np.diff(shells) >= 0))
            self.assertTrue(f["particles"] <= shells[-1] <= 3 * f["particles"])
            self.assertEqual(shells[0], f["particles"])
        # the confidence reached the engine with the direction it was read along
        with np.load(prot._getFileName("latents_in")) as lat_in:
            self.assertEqual(lat_in["motion"].shape, lat_in["z"].shape)
        self.assertIn("in each Fourier shell from up to three times as many",
                      " ".join(prot._methods()))
        self.assertIn("Frame maps widened by the confidence", " ".join(prot._summary()))
        self.assertIn("class's principal curve", " ".join(prot._methods()))
        self.assertIn("from the 150 particles nearest to it", " ".join(prot._methods()))
        self.assertIn("Path through class:1; class:2", " ".join(prot._summary()))
        # particles keep their latent confidence through the analysis
        conf = [p._gmmConfidence.get() for p in prot.Particles.iterItems()]
        self.assertTrue(all(0 <= c <= 1 for c in conf))
        # every viewer plotting function runs headless
        tmp = self.proj.getTmpPath()
        plots.plot_latent_scatter(res["zred"], res["labels"] + 1, categorical=True,
                                  out_png=os.path.join(tmp, "lat.png"))
        plots.plot_latent_scatter(res["zred"], res["score"], "score",
                                  out_png=os.path.join(tmp, "score.png"))
        from gmmplugin.engine.io import read_map
        frames = [read_map(os.path.join(d, "pc1_gmm_%02d.mrc" % i))[0] for i in range(1, 5)]
        plots.plot_volume_series(frames, out_png=os.path.join(tmp, "series.png"))
        plots.plot_quiver(np.load(os.path.join(d, "pc1_gmm_01.npy")),
                          np.load(os.path.join(d, "pc1_gmm_04.npy")),
                          out_png=os.path.join(tmp, "quiver.png"))
        vseries_script(os.path.join(tmp, "v.cxc"), ["a.mrc", "b.mrc"])
        for name in ("lat.png", "score.png", "series.png", "quiver.png"):
            self.assertGreater(os.path.getsize(os.path.join(tmp, name)), 1000)
        # every entry of every viewer of the chain shows something, without xmipp
        # or ChimeraX (their fallbacks), and a missing trajectory is a message
        shown = {}
        for p in (self.train, prot):
            shown.update(check_every_viewer_entry(self, p))
        self.assertIn("GmmAnalyzeViewer.displayClasses", shown)
        self.assertGreaterEqual(len(shown["GmmAnalyzeViewer.displayClasses"]), 2)
        self.assertIn("GmmAnalyzeViewer.displayConfidence", shown)
        self.assertIn("GmmTrainViewer.displayConfidence", shown)
        viewer = GmmAnalyzeViewer(project=self.proj, protocol=prot)
        viewer.setProtocol(prot)
        viewer.series.set(info["series"].index("path"))
        self.assertIn("path", viewer._showQuiver()[0].getFigure().get_suptitle())
        self._check_selection(prot)

    def _check_selection(self, analysis):
        """Selecting class 1 by its id, and by a polygon around it in zRed, gives
        exactly its particles with their latents; the rest is the complement."""
        from scipy.spatial import ConvexHull

        from gmmplugin.engine.selection import format_polygons
        from gmmplugin.protocols import GmmProtSelectLatent
        inliers = {p.getObjId(): (p._gmmClass.get(), list(p.getZFlex()), list(p.getZRed()))
                   for p in analysis.Particles.iterItems()}
        wanted = sorted(i for i, (c, _, _) in inliers.items() if c == 1)
        zred = np.array([inliers[i][2] for i in wanted])
        hull = zred[ConvexHull(zred).vertices]

        def selected(**params):
            sel = self.newProtocol(GmmProtSelectLatent, **params)
            sel.inputParticles.set(analysis)
            sel.inputParticles.setExtended("Particles")
            self.assertEqual(sel.validate(), [])
            self.launchProtocol(sel)
            return sel

        for sel in (selected(classIds="1", keepComplement=True),
                    selected(polygons=format_polygons([hull]), keepComplement=True)):
            got = {p.getObjId(): list(p.getZFlex()) for p in sel.Particles.iterItems()}
            self.assertEqual(sorted(got), wanted)
            for i in wanted:
                self.assertEqual(got[i], inliers[i][1])              # latents kept
            rest = sorted(p.getObjId() for p in sel.Complement.iterItems())
            self.assertEqual(sorted(rest + wanted), sorted(inliers))
            self.assertIn("%d of %d particles selected" % (len(wanted), len(inliers)),
                          sel.summary()[0])
            check_every_viewer_entry(self, sel)
        # bad selections are refused before any step
        bad = self.newProtocol(GmmProtSelectLatent, polygons="0,0 1,1")
        bad.inputParticles.set(analysis)
        bad.inputParticles.setExtended("Particles")
        self.assertTrue(any("needs at least 3" in e for e in bad.validate()))
        bad = self.newProtocol(GmmProtSelectLatent, classIds="1")
        bad.inputParticles.set(self.train)
        bad.inputParticles.setExtended("Particles")
        self.assertTrue(any("carry no classes" in e for e in bad.validate()))
        bad = self.newProtocol(GmmProtSelectLatent)
        bad.inputParticles.set(self.train)
        bad.inputParticles.setExtended("Particles")
        self.assertTrue(any("at least one polygon" in e for e in bad.validate()))
        bad.minConfidence.set(1.5)
        self.assertTrue(any("confidence must be in [0, 1)" in e for e in bad.validate()))
        # the most confident particles, alone and within class 1
        conf = {p.getObjId(): p._gmmConfidence.get() for p in self.train.Particles}
        cut = float(np.median(list(conf.values())))
        sel = self.newProtocol(GmmProtSelectLatent, minConfidence=cut)
        sel.inputParticles.set(self.train)
        sel.inputParticles.setExtended("Particles")
        self.launchProtocol(sel)
        self.assertEqual(sorted(p.getObjId() for p in sel.Particles),
                         sorted(i for i, c in conf.items() if c >= cut))
        self.assertIn("latent confidence ≥", sel.summary()[0])
        both = selected(classIds="1", minConfidence=cut)
        self.assertEqual(sorted(p.getObjId() for p in both.Particles),
                         [i for i in wanted if conf[i] >= cut])

    def test_refine_orientations_and_relion_round_trip(self):
        from pwem.objects import SetOfParticles
        from relion.convert import writeSetOfParticles

        from gmmplugin.convert import matrix_to_pose
        from gmmplugin.engine.geometry import rotation_angle_deg
        from gmmplugin.protocols import GmmProtRefineOrientations
        prot = self.newProtocol(GmmProtRefineOrientations, iterations=10,
                                maxAngularChange=5.0, maxShiftChange=3.0)
        prot.inputParticles.set(self.train)
        prot.inputParticles.setExtended("Particles")
        self.launchProtocol(prot)
        out = prot.Particles
        self.assertEqual(out.getSize(), N)
        inp = {p.getObjId(): p.getTransform().getMatrix().copy()
               for p in self.train.Particles.iterItems()}
        changes = []
        for p in out.iterItems():
            self.assertEqual(len(p.getZFlex()), 2)          # latents kept
            A1, _ = matrix_to_pose(p.getTransform().getMatrix(), APIX)
            A0, _ = matrix_to_pose(inp[p.getObjId()], APIX)
            changes.append(rotation_angle_deg(A0[None], A1[None])[0])
        self.assertLessEqual(max(changes), 5.0 + 1e-3)      # bounded
        # the viewer's pose changes are the set's, and kept poses did not move
        from gmmplugin.engine import plots
        from gmmplugin.viewers import GmmRefineOrientationsViewer
        from gmmplugin.viewers.viewer_refine_orientations import pose_changes
        from pwem import Domain
        from pyworkflow.viewer import DESKTOP_TKINTER
        self.assertIn(GmmRefineOrientationsViewer, Domain.findViewers(prot, DESKTOP_TKINTER))
        check_every_viewer_entry(self, prot)
        angle, shift, moved = pose_changes(prot)
        self.assertAlmostEqual(float(np.median(angle)), float(np.median(changes)), places=2)
        self.assertTrue((angle[~moved] < 1e-3).all() and (shift[~moved] < 1e-3).all())
        png = os.path.join(self.proj.getTmpPath(), "poses.png")
        plots.plot_pose_changes(angle, shift, moved, out_png=png)
        self.assertGreater(os.path.getsize(png), 1000)
        self.assertTrue(os.path.exists(prot.Volume.getFileName()))
        # refined poses survive Scipion's RELION writer and its star reader (the
        # code path of ProtImportParticles, which itself refuses the absolute image
        # paths the writer produces here)
        from pwem.constants import ALIGN_PROJ
        from relion.convert import readSetOfParticles
        star = os.path.abspath(os.path.join(self.proj.getTmpPath(), "refined.star"))
        writeSetOfParticles(out, star, outputDir=os.path.dirname(star))
        back_set = SetOfParticles(filename=os.path.join(self.proj.getTmpPath(), "back.sqlite"))
        back_set.setAcquisition(out.getAcquisition().clone())   # as the importer's form
        readSetOfParticles(star, back_set, readAcquisition=False, alignType=ALIGN_PROJ,
                           pixelSize=APIX)
        back = list(back_set.iterItems(orderBy="id"))
        orig = list(out.iterItems(orderBy="id"))
        self.assertEqual(len(back), len(orig))
        for a, b in zip(orig, back):
            self.assertTrue(np.allclose(a.getTransform().getMatrix(),
                                        b.getTransform().getMatrix(), atol=1e-3))
