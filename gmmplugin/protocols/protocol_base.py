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


def read_json(path):
    """An engine result file as a dict, or None while it does not exist yet
    (summaries are asked for before a run finishes)."""
    import json
    import os
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def volume_and_fsc(protocol, prefix="map"):
    """The reconstruction written by the engine's ``reconstruct`` in the extra
    folder (``<prefix>.mrc``, half maps, ``<prefix>_fsc.txt``, ``<prefix>.json``)
    as a Volume with half maps and an FSC object."""
    import numpy as np
    from pwem.objects import FSC, Volume
    extra = protocol._getExtraPath
    info = read_json(extra(prefix + ".json"))
    vol = Volume(location=extra(prefix + ".mrc"))
    vol.setSamplingRate(info["apix"])
    vol.setHalfMaps([extra(prefix + "_half1.mrc"), extra(prefix + "_half2.mrc")])
    fsc = FSC(objLabel="half-map FSC")
    freq, curve = np.loadtxt(extra(prefix + "_fsc.txt"), unpack=True)
    fsc.setData(freq.tolist(), curve.tolist())
    return vol, fsc
