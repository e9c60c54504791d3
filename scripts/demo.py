"""The main job end to end, headless, in a Scipion project on simulated data.

simulate (ground truth) -> ProtImportParticles (RELION 3.1 .star) ->
GmmProtReconstruct -> maps, FSC curves and slices in the output folder.

Usage: python scripts/demo.py --out demo_output [--particles 2000] [--snr 0.1]
"""
import argparse
import os
import runpy
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="demo_output")
    ap.add_argument("--particles", type=int, default=2000)
    ap.add_argument("--snr", type=float, default=0.1)
    ap.add_argument("--model", default=os.path.join(REPO, "gmmplugin", "tests", "data",
                                                    "1hvr.pdb"))
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    # Scipion reads its configuration at import: set it up before any import
    runpy.run_path(os.path.join(REPO, "gmmplugin", "tests", "scipion_env.py"))[
        "setup_environment"](os.path.join(out, "scipion"))

    import mrcfile
    import numpy as np
    from pwem.protocols import ProtImportParticles
    from pyworkflow.project import Manager

    from gmmplugin.engine.fourier import fsc, resolution_at
    from gmmplugin.engine.simulate import SimulationSettings, simulate
    from gmmplugin.protocols import GmmProtReconstruct
    from gmmplugin.viewers import plots

    t0 = time.time()
    print("1/3 simulating %d particles of %s (SNR %g) ..." % (a.particles, a.model, a.snr))
    box, apix = 64, 1.5
    sim_dir = os.path.join(out, "simulated")
    star = simulate(a.model, sim_dir, SimulationSettings(n_particles=a.particles, box=box,
                                                         apix=apix, snr=a.snr))

    manager = Manager()
    if manager.hasProject("gmm_demo"):
        manager.deleteProject("gmm_demo")
    project = manager.createProject("gmm_demo")
    os.chdir(project.path)

    def run(prot):
        project.launchProtocol(prot, wait=True)
        if not prot.isFinished():
            sys.exit("protocol %s failed; see %s" % (prot.getObjLabel(),
                                                    prot.getLogPaths()[0]))
        return prot

    print("2/3 importing the .star file into Scipion project %s ..." % project.path)
    imp = run(project.newProtocol(ProtImportParticles,
                                  importFrom=ProtImportParticles.IMPORT_FROM_RELION,
                                  starFile=star, samplingRate=apix, magnification=50000,
                                  haveDataBeenPhaseFlipped=False, voltage=300.0,
                                  sphericalAberration=2.7, amplitudeContrast=0.1,
                                  objLabel="import simulated particles"))

    print("3/3 reconstructing with gmm - reconstruct ...")
    rec = project.newProtocol(GmmProtReconstruct, objLabel="gmm reconstruct")
    rec.inputParticles.set(imp)
    rec.inputParticles.setExtended("outputParticles")
    run(rec)

    vol = mrcfile.read(rec.Volume.getFileName())
    truth = mrcfile.read(os.path.join(sim_dir, "maps", "consensus.mrc"))
    half = np.loadtxt(rec._getExtraPath("map_fsc.txt"))
    vs_truth = fsc(vol, truth)
    freq = np.arange(len(vs_truth)) / (box * apix)
    for name in ("map.mrc", "map_half1.mrc", "map_half2.mrc", "map_fsc.txt", "map.json"):
        shutil.copy(rec._getExtraPath(name), os.path.join(out, name))
    plots.plot_fsc({"half maps (gold standard)": (half[:, 0], half[:, 1]),
                    "map vs ground truth": (freq, vs_truth)},
                   os.path.join(out, "fsc.png"), title="Reconstruction of simulated 1hvr")
    plots.plot_central_slices({"reconstruction": vol, "ground truth": truth},
                              os.path.join(out, "slices.png"))
    print("\nDone in %.0f s. Outputs in %s:" % (time.time() - t0, out))
    print("  map.mrc (+ half maps), fsc.png, slices.png, simulated/ (star, stacks, truth)")
    print("  Scipion project: %s" % project.path)
    print("  half-map FSC 0.143: %.2f Å; FSC(map, truth) 0.5: %.2f Å"
          % (resolution_at(half[:, 1], box, apix), resolution_at(vs_truth, box, apix, 0.5)))


if __name__ == "__main__":
    main()
