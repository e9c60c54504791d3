"""The plugin's workflow templates, run as a user runs them in batch: found by
pyworkflow's plugin template lookup (what ``scipion3 template`` and the
template chooser use), fields filled by alias, written as a workflow, then
``pyworkflow.project.scripts.create`` and ``...scripts.schedule`` in
subprocesses. The projects run concurrently (Scheduled protocols mostly wait);
every output of every protocol is checked on a tiny simulated dataset.

The cryoSPARC template needs scipion-em-cryosparc2's importer, which runs pyem
(installed by Scipion in a conda environment of its own): without it that
template is only instantiated, not run."""
import os
import subprocess
import sys
import time
import unittest

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.tests import data_path
from gmmplugin.tests.cryosparc_data import cryosparc_importer_problem, write_cryosparc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
N, BOX, APIX = 400, 32, 3.0
TEMPLATES = ("gmm_relion", "gmm_cryosparc", "gmm_flexible_round", "gmm_atomic_series")
TIMEOUT = 1200


def plugin_template(name):
    """The template of this plugin called ``name``, as ``scipion3 template`` finds it."""
    from pyworkflow.template import TemplateList
    found = TemplateList()
    found.addPluginTemplates("gmmplugin-" + name)
    assert len(found.templates) == 1, [t.getObjId() for t in found.templates]
    return found.templates[0]


def workflow_file(name, **values):
    """The workflow (.json) of template ``name`` with its fields set by alias."""
    t = plugin_template(name)
    t.replaceEnvVariables()
    t.parseContent()
    for alias, value in values.items():
        assert t.setParamValue(alias, str(value)) == 1, alias
    return t.createTemplateFile()


def _script(log, script, *args):
    """Run one of pyworkflow's project scripts; its output goes to ``log`` (a file,
    not a pipe: the protocols 'schedule' starts keep its output open)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with open(log, "a") as f:
        code = subprocess.call([sys.executable, "-m", "pyworkflow.project.scripts." + script]
                               + list(args), env=env, stdout=f, stderr=subprocess.STDOUT,
                               timeout=300)
    assert code == 0, open(log).read()[-3000:]


# pyworkflow's schedule script assumes one import at the root: it schedules the
# workflow below each root, so a protocol with inputs from two imports (a model
# and a map series) would be scheduled, and run, twice
SEVERAL_ROOTS = {"gmm_atomic_series"}


def _schedule_each_once(name):
    """What the schedule script does (Project.scheduleProtocol, waiting time by
    level), each protocol once."""
    from pyworkflow.protocol import INITIAL_SLEEP_TIME
    here = os.getcwd()
    project = _load(name)
    try:
        os.chdir(project.getPath())
        done = set()
        for root in project.getRunsGraph().getRootNodes():
            for child in root.getChildren():
                workflow, _ = project._getSubworkflow(child.run)
                for prot, level in workflow.values():
                    if prot.getObjId() not in done:
                        done.add(prot.getObjId())
                        project.scheduleProtocol(prot,
                                                 initialSleepTime=level * INITIAL_SLEEP_TIME)
    finally:
        os.chdir(here)


def _load(name):
    from pyworkflow.project import Manager
    return Manager().loadProject(name)


def _runs(project):
    """The project's runs by class name, a second run of a class as 'Name 2'
    (a workflow's labels are not kept when a project loads it)."""
    runs = {}
    for r in sorted(project.getRuns(refresh=True), key=lambda r: r.getObjId()):
        name = r.getClassName()
        runs["%s %d" % (name, 2) if name in runs else name] = r
    return runs


class TestTemplates(BaseTest):
    """One project per template, created and scheduled by pyworkflow's scripts."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        tmp = os.path.abspath(cls.proj.getTmpPath())
        star = simulate(data_path("1hvr.pdb"), os.path.join(tmp, "sim"),
                        SimulationSettings(n_particles=N, box=BOX, apix=APIX, snr=0.5,
                                           seed=11),
                        Heterogeneity(move="B", motion="rotate", amount=40.0))
        acq = dict(apix=APIX, voltage=300, cs=2.7, q=0.1)
        gmm = dict(resolution=9.0, latentDim=2, epochs=2, trainResolution=8.0)
        cls.values = {"gmm_relion": dict(star=star, **acq, **gmm),
                      "gmm_flexible_round": dict(star=star, epochs2=3, **acq, **gmm)}
        cls.skipped = {}
        cs = write_cryosparc(star, os.path.join(tmp, "cryosparc", "J1"))
        cls.values["gmm_cryosparc"] = dict(csFile=cs, **acq, **gmm)
        problem = cryosparc_importer_problem()
        if problem:
            cls.skipped["gmm_cryosparc"] = problem
        from gmmplugin.engine.atomic import monlib
        if os.path.isdir(monlib.DEBIAN_MONOMERS) or os.environ.get("GMM_MONOMERS"):
            from gmmplugin.tests.test_scipion_refine_models import APIX as MAP_APIX, _series
            folder = os.path.join(tmp, "maps")
            os.makedirs(folder)
            cls.maps, _ = _series(folder)
            cls.values["gmm_atomic_series"] = dict(
                model=data_path("5a7u.pdb"), maps=folder, pattern="frame_*.mrc",
                apix=MAP_APIX, resolution=5.0, patches=4, steps="15 15 15")
        else:
            cls.skipped["gmm_atomic_series"] = "CCP4 monomer library not installed"
        cls.workflows = {name: workflow_file(name, **values)
                         for name, values in cls.values.items()}
        # concurrently: Scipion's scheduled protocols spend most of the time waiting
        cls.projects, cls.seconds = {}, {}
        start = time.time()
        for name, path in cls.workflows.items():
            if name in cls.skipped:
                continue
            project = "%s_%s_%d" % (cls.__name__, name, os.getpid())
            log = os.path.join(tmp, project + ".log")
            _script(log, "create", project, path)
            if name in SEVERAL_ROOTS:
                _schedule_each_once(project)
            else:
                _script(log, "schedule", project)
            cls.projects[name] = project
        cls._wait(start)

    @classmethod
    def _wait(cls, start):
        pending = dict(cls.projects)
        while pending and time.time() - start < TIMEOUT:
            time.sleep(5)
            for name, project in list(pending.items()):
                runs = _runs(_load(project)).values()
                if any(r.isFailed() or r.isAborted() for r in runs):
                    del pending[name]
                elif all(r.isFinished() for r in runs):
                    cls.seconds[name] = time.time() - start
                    del pending[name]
        print("templates finished after (s):", {k: round(v) for k, v in cls.seconds.items()})

    def _finished_runs(self, name):
        if name in self.skipped:
            raise unittest.SkipTest("%s not run: %s" % (name, self.skipped[name]))
        runs = _runs(_load(self.projects[name]))
        for label, run in runs.items():
            if not run.isFinished():
                log = run.getLogPaths()[1] if run.getLogPaths() else ""
                tail = open(log).read()[-3000:] if os.path.exists(log) else ""
                self.fail("%s: run '%s' is %s\n%s" % (name, label, run.getStatus(), tail))
        self._check_every_output(runs)
        return runs

    def _check_every_output(self, runs):
        """Every output of every run exists: sets are non-empty and each item's
        file is there, single objects' files are there."""
        from pwem.objects import EMSet
        from pwem.objects import SetOfMicrographs
        for label, run in runs.items():
            outputs = list(run.iterOutputAttributes())
            self.assertTrue(outputs, "%s has no output" % label)
            for key, out in outputs:
                if isinstance(out, SetOfMicrographs):     # names only, from the .star
                    self.assertGreater(out.getSize(), 0)
                elif isinstance(out, EMSet):
                    self.assertGreater(out.getSize(), 0, "%s.%s is empty" % (label, key))
                    for item in out.iterItems():
                        fn = item.getFileName() if hasattr(item, "getFileName") else None
                        if fn:
                            self.assertTrue(os.path.exists(fn.split(":")[0]),
                                            "%s.%s: %s" % (label, key, fn))
                elif hasattr(out, "getFileName") and out.getFileName():
                    self.assertTrue(os.path.exists(out.getFileName()), "%s.%s" % (label, key))

    def _check_latent_chain(self, runs, latent_dim=2):
        self.assertEqual(runs["ProtImportParticles"].outputParticles.getSize(), N)
        self.assertLess(runs["GmmProtReconstruct"]._info()["resolution_0143"], 15.0)
        self.assertGreater(runs["GmmProtFitNeutral"].Gmm.getNumGaussians(), 10)
        train = runs["GmmProtTrain"].Particles
        self.assertEqual(train.getSize(), N)
        for p in train.iterItems():
            self.assertEqual(len(p.getZFlex()), latent_dim)
        ana = runs["GmmProtAnalyze"]
        self.assertEqual(sum(c.getSize() for c in ana.Classes), N)
        self.assertEqual(ana.Particles.getSize() + (ana.Outliers.getSize()
                                                    if hasattr(ana, "Outliers") else 0), N)
        # 7 frames (the default) along 2 principal axes and each class's curve
        self.assertEqual(ana.Volumes.getSize(), 7 * (2 + ana.Classes.getSize()))
        return train

    def test_templates_are_found_with_their_fields(self):
        from gmmplugin import Plugin
        found = sorted(t.name for t in Plugin().getTemplates())
        self.assertEqual(found, sorted(TEMPLATES))
        fields = {name: {p.getAlias() for p in _parsed(name).getParams().values()}
                  for name in TEMPLATES}
        for name in ("gmm_relion", "gmm_cryosparc", "gmm_flexible_round"):
            self.assertLessEqual({"apix", "resolution", "latentDim", "epochs"}, fields[name])
        self.assertIn("star", fields["gmm_relion"])
        self.assertIn("csFile", fields["gmm_cryosparc"])
        self.assertLessEqual({"model", "maps", "apix", "resolution"},
                             fields["gmm_atomic_series"])

    def test_relion_chain(self):
        runs = self._finished_runs("gmm_relion")
        self.assertEqual(len(runs), 5)
        self._check_latent_chain(runs)

    def test_cryosparc_chain(self):
        runs = self._finished_runs("gmm_cryosparc")
        self.assertEqual(len(runs), 5)
        self._check_latent_chain(runs)

    def test_flexible_refinement_round(self):
        runs = self._finished_runs("gmm_flexible_round")
        self.assertEqual(len(runs), 7)
        train = self._check_latent_chain(runs)
        ref = runs["GmmProtRefineOrientations"]
        self.assertEqual(ref.Particles.getSize(), N)
        self.assertTrue(os.path.exists(ref.Volume.getFileName()))
        before = {p.getObjId(): np.array(p.getZFlex()) for p in train.iterItems()}
        after = {p.getObjId(): np.array(p.getZFlex()) for p in ref.Particles.iterItems()}
        self.assertEqual(sorted(before), sorted(after))
        self.assertFalse(all(np.allclose(before[i], after[i]) for i in before))  # retrained
        again = runs["GmmProtAnalyze 2"]
        self.assertEqual(sum(c.getSize() for c in again.Classes), N)
        self.assertEqual(again.Volumes.getSize(), 7 * (2 + again.Classes.getSize()))

    def test_atomic_model_series(self):
        import gemmi
        runs = self._finished_runs("gmm_atomic_series")
        self.assertEqual(len(runs), 3)
        models = runs["GmmProtRefineModels"].AtomStructs
        self.assertEqual(models.getSize(), len(self.maps))
        for item in models.iterItems():
            self.assertGreater(gemmi.read_structure(item.getFileName())[0].count_atom_sites(),
                               200)


def _parsed(name):
    t = plugin_template(name)
    t.replaceEnvVariables()
    t.parseContent()
    return t
