"""GmmProtBase: what every gmmplugin protocol shares.

A gmmplugin protocol converts its Scipion inputs to files, runs one engine
command through ``runJob`` (so it can be queued and uses the GPUs and threads
the user chose), and registers what the engine wrote. This class holds the
form's Run settings, the engine call, the file names (``engine/layout.py``
through Scipion's filename templates) and the readers of the engine's results.
It imports no torch: the engine runs in its own process.
"""
import json
import os

import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol

from .. import Plugin
from ..convert import particles_to_engine
from ..engine import checks, layout
from ..engine.io import read_fsc

NODES_HELP = ("Machines of a queue job to share the particles among (Scipion's queue "
              "only): each runs one process per chosen GPU. The queue's job script "
              "must export MASTER_ADDR and MASTER_PORT, where the machines meet "
              "(README, 'Multi-GPU and clusters'). 1 for a single machine.")
THREADS_HELP = ("CPU threads of the engine (torch and numpy). On a GPU a few are "
                "enough; on the CPU use the cores this job may take. Scipion's queue "
                "requests this many cores.")


class GmmProtBase(EMProtocol):
    """Base of the gmmplugin protocols (not offered in the protocol tree)."""
    _label = None

    # -- form ------------------------------------------------------------------------
    @staticmethod
    def _defineEngineParams(form, threads=4, nodes=False):
        """Scipion's standard GPU settings and the engine's CPU threads; with
        ``nodes`` (protocols whose engine commands are data parallel) the
        number of queue nodes, in Scipion's MPI field, which the queue's job
        script reads as JOB_NODES."""
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True,
                       label="Use GPU for execution",
                       help="Run the engine on a CUDA GPU when one is available; "
                            "otherwise (or if No) it runs on the CPU.")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                       label="Choose GPU IDs",
                       help="GPU ids to use (e.g. 0 or 1,2). Training, reconstruction "
                            "and pose refinement with several ids run one process per "
                            "GPU, each on its share of the particles (torchrun); the "
                            "other steps use the first.")
        form.addParallelSection(threads=threads, mpi=1 if nodes else 0,
                                binThreadsHelp=THREADS_HELP)
        if nodes:
            param = form.getParam("numberOfMpi")
            param.label.set("Nodes")
            param.help.set(NODES_HELP)
            param.expertLevel.set(params.LEVEL_ADVANCED)

    # -- files -------------------------------------------------------------------------
    def _createFilenameTemplates(self):
        """Every engine output under the run's extra folder, keyed as in layout.FILES."""
        self._updateFilenamesDict({key: self._getExtraPath(name)
                                   for key, name in layout.FILES.items()})

    def _getFileName(self, key, **fields):
        self._createFilenameTemplates()   # the run's folder is known only once it is saved
        return os.path.abspath(super()._getFileName(key, **fields))

    def readResult(self, key, **fields):
        """An engine result file (JSON) as a dict, or None while it does not exist
        yet (summaries are asked for before a run finishes)."""
        path = self._getFileName(key, **fields)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    # -- steps ---------------------------------------------------------------------------
    def _inputSignature(self):
        """Which objects the run's inputs are (id, file, size). Every step takes it
        as its first argument: Scipion's Continue re-runs a step whose arguments
        changed, so a run pointed at other inputs converts and computes again
        instead of reusing what it made from the old ones."""
        parts = []
        for name, pointer in sorted(self.iterInputAttributes(), key=lambda kv: kv[0]):
            obj = pointer.get()
            if obj is None:
                parts.append("%s=none" % name)
                continue
            size = obj.getSize() if hasattr(obj, "getSize") else 1
            path = obj.getFileName() if hasattr(obj, "getFileName") else ""
            parts.append("%s=%s:%s:%s" % (name, obj.getObjId(), path, size))
        return "|".join(parts)

    def _insertSteps(self, *steps):
        """Insert ``steps`` (functions, or (function, needs GPU)) in order, each
        with the inputs' signature as its argument."""
        signature = self._inputSignature()
        for step in steps:
            func, gpu = step if isinstance(step, tuple) else (step, False)
            self._insertFunctionStep(func, signature, needsGPU=gpu)

    def convertParticles(self, partSet):
        """Write the engine's particle file for ``partSet`` (the ``particles`` file)."""
        return particles_to_engine(partSet, self._getFileName("particles"),
                                   self._getTmpPath())

    def engineNodes(self):
        """Machines the engine's data-parallel commands run on (the MPI field,
        which data-parallel protocols show as Nodes)."""
        return max(1, int(self.numberOfMpi.get() or 1))

    def _validateNodes(self):
        """Several nodes meet only inside a queue job."""
        if self.engineNodes() > 1 and not self.useQueue():
            return ["Several nodes need Scipion's queue (Use a queue engine? Yes): "
                    "the nodes are the job's."]
        return []

    def runEngine(self, command, args):
        """Run ``python -m gmmplugin.engine <command> <args>`` on the chosen device:
        data-parallel commands under torchrun, with one process per chosen GPU
        on each of the nodes (Plugin.getEngineCommand)."""
        env, device = Plugin.getGpuEnviron(self)
        threads = max(1, int(self.numberOfThreads.get() or 1))
        env["OMP_NUM_THREADS"] = str(threads)
        gpus = len(self.getGpuList()) if device != "cpu" else 1
        program, engine = Plugin.getEngineCommand(
            command, device, threads, processes=gpus, nodes=self.engineNodes(),
            job="gmmplugin-%s" % self.strId())
        self.runJob(program, "%s %s" % (engine, args), env=env, numberOfMpi=1)

    # -- outputs -------------------------------------------------------------------------
    def volumeAndFsc(self, name="map"):
        """The reconstruction the engine wrote as ``name``: a Volume with its half
        maps, and the half-map FSC."""
        from pwem.objects import FSC, Volume
        info = self.readResult("map_info", name=name)
        vol = Volume(location=self._getFileName("map", name=name))
        vol.setSamplingRate(info["apix"])
        vol.setHalfMaps([self._getFileName("map_half1", name=name),
                         self._getFileName("map_half2", name=name)])
        fsc = FSC(objLabel="half-map FSC")
        freq, curve = read_fsc(self._getFileName("map_fsc", name=name))
        fsc.setData(freq.tolist(), curve.tolist())
        return vol, fsc

    # -- checks --------------------------------------------------------------------------
    @staticmethod
    def problems(*engine_checks):
        """Form messages of the engine's own checks (zero-argument callables)."""
        return checks.problems(*engine_checks)
