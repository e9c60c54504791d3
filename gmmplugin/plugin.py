"""The Scipion plugin class: configuration variables and the engine's environment."""
import os
import sys

import pwem
import pyworkflow.utils as pwutils

from .constants import GMM_NODE_LAUNCHER, GMM_PYTHON, VERSION

ENGINE_MODULE = "gmmplugin.engine"
NODE_LAUNCHER = "srun --ntasks-per-node=1"    # SLURM's: one task per node of the job
# engine commands that share the particles among processes (engine/distributed.py)
DATA_PARALLEL = ("reconstruct", "train", "refine-poses")


class Plugin(pwem.Plugin):
    """The engine runs in a Python interpreter with torch: by default the one
    running Scipion (a pip install brings everything). To use another
    environment (e.g. one with a CUDA build of torch), install this package
    there as well (``pip install --no-deps scipion-em-gmm`` next to the engine's
    requirements) and set GMM_PYTHON in scipion.conf to its interpreter.
    """
    _url = "https://github.com/gmmplugin/scipion-em-gmm"
    _pathVars = []
    _supportedVersions = [VERSION]

    def __init__(self):
        super().__init__()
        # pyworkflow takes a plugin's name and folder from the module defining this
        # class; that is gmmplugin.plugin, so name the package itself
        self._name = __package__
        self._path = os.path.dirname(os.path.abspath(__file__))

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(GMM_PYTHON, sys.executable)
        cls._defineVar(GMM_NODE_LAUNCHER, NODE_LAUNCHER)

    @classmethod
    def getEnviron(cls):
        """Scipion's environment; for a source checkout (not installed in a
        site-packages) its root goes first on PYTHONPATH, so the engine's
        interpreter imports this very copy. The root holds only this project."""
        env = pwutils.Environ(os.environ)
        root = cls.sourceRoot()
        if root:
            env.set("PYTHONPATH", root, env.BEGIN)
        return env

    @staticmethod
    def sourceRoot(pkg=None):
        """The checkout folder holding this package, or None when it is installed
        (then the engine's interpreter finds its own installed copy)."""
        pkg = pkg or os.path.dirname(os.path.abspath(__file__))
        parent = os.path.dirname(pkg)
        if os.path.basename(parent) in ("site-packages", "dist-packages"):
            return None
        return parent

    @classmethod
    def getPython(cls):
        return cls.getVar(GMM_PYTHON) or sys.executable

    @classmethod
    def getEngineArgs(cls, command, device="auto", threads=None):
        """Arguments after the interpreter: ``-m gmmplugin.engine ...``."""
        extra = " --threads %d" % threads if threads else ""
        return "-m %s --device %s%s %s" % (ENGINE_MODULE, device, extra, command)

    @classmethod
    def getEngineCommand(cls, command, device="auto", threads=None, processes=1, nodes=1,
                         job="gmmplugin"):
        """(program, arguments before the command's own) of an engine run.

        A data-parallel command (DATA_PARALLEL) with several ``processes`` per
        node (one per GPU) or several ``nodes`` runs under torchrun
        (``python -m torch.distributed.run``). On one node it is a standalone
        torchrun. On several, GMM_NODE_LAUNCHER (SLURM's srun by default) starts
        one torchrun per node of the queue job, which meet at the c10d
        rendezvous $MASTER_ADDR:$MASTER_PORT that the queue's job script exports
        (README, "Multi-GPU and clusters"); ``job`` names the rendezvous."""
        engine = cls.getEngineArgs(command, device, threads)
        if command not in DATA_PARALLEL or (processes <= 1 and nodes <= 1):
            return cls.getPython(), engine
        run = "-m torch.distributed.run --nproc_per_node=%d" % max(1, processes)
        if nodes <= 1:
            return cls.getPython(), "%s --standalone %s" % (run, engine)
        launcher = (cls.getVar(GMM_NODE_LAUNCHER) or NODE_LAUNCHER).strip()
        program = "%s %s" % (launcher, cls.getPython())
        return program, ("%s --nnodes=%d --rdzv_backend=c10d "
                         "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT --rdzv_id=%s %s"
                         % (run, nodes, job, engine))

    @classmethod
    def getGpuEnviron(cls, protocol):
        """Environment restricted to the protocol's chosen GPUs, and the device
        argument for the engine ("auto" picks the first visible GPU, or the CPU
        when there is none; "cpu" when the user switched GPUs off)."""
        env = cls.getEnviron()
        uses_gpu = protocol.usesGpu() if hasattr(protocol, "usesGpu") else False
        if uses_gpu:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in protocol.getGpuList())
            return env, "auto"
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env, "cpu"

    @classmethod
    def defineBinaries(cls, env):
        pass  # pip-installed: nothing to build
