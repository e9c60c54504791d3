"""What every gmmplugin protocol shares: GPU form parameters and engine runs."""
import pyworkflow.protocol.params as params

from .. import Plugin


def add_gpu_params(form):
    """The standard Scipion GPU settings (shown in the Run section of the form)."""
    form.addHidden(params.USE_GPU, params.BooleanParam, default=True,
                   label="Use GPU for execution",
                   help="Run the engine on a CUDA GPU when one is available; "
                        "otherwise (or if No) it runs on the CPU.")
    form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                   label="Choose GPU IDs",
                   help="GPU ids to use (e.g. 0 or 1,2); the engine uses the first.")


def run_engine(protocol, command, args):
    """Run ``python -m gmmplugin.engine.cli <command> <args>`` via runJob on the
    protocol's chosen device, so the job can be queued like any Scipion job."""
    env, device = Plugin.getGpuEnviron(protocol)
    protocol.runJob(Plugin.getPython(), "%s %s" % (Plugin.getEngineArgs(command, device),
                                                    args),
                    env=env, numberOfMpi=1)
