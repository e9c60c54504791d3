"""The main job end to end, headless, in a Scipion project on simulated data.

simulate 1bd2 with compositional + conformational heterogeneity (ground truth)
-> ProtImportParticles (RELION 3.1 .star) -> gmm reconstruct (consensus) ->
gmm fit neutral GMM -> gmm heterogeneity training -> gmm analyze latent space
-> latent plots, class volumes, volume series and a report vs the truth.

Usage: python scripts/demo.py --out demo_output [--particles 3000] [--epochs 20]
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
    ap.add_argument("--particles", type=int, default=3000)
    ap.add_argument("--snr", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=20,
                    help="the most training epochs (it stops earlier at a plateau)")
    ap.add_argument("--model", default=os.path.join(REPO, "gmmplugin", "tests", "data",
                                                    "1bd2.pdb"))
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    # Scipion reads its configuration at import: set it up before any import
    runpy.run_path(os.path.join(REPO, "gmmplugin", "tests", "scipion_env.py"))[
        "setup_environment"](os.path.join(out, "scipion"))

    import numpy as np
    from pwem.protocols import ProtImportParticles
    from pyworkflow.project import Manager

    from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
    from gmmplugin.protocols import (GmmProtAnalyze, GmmProtFitNeutral, GmmProtReconstruct,
                                     GmmProtTrain)

    t0 = time.time()
    box, apix = 64, 2.6
    print("1/6 simulating %d particles of %s: TCR (chains D,E) present in half of them "
          "and swinging 0-30 deg, CTF, SNR %g ..." % (a.particles, os.path.basename(a.model),
                                                      a.snr), flush=True)
    sim_dir = os.path.join(out, "simulated")
    star = os.path.join(sim_dir, "particles.star")
    if not os.path.exists(os.path.join(sim_dir, "ground_truth.npz")):
        star = simulate(a.model, sim_dir,
                        SimulationSettings(n_particles=a.particles, box=box, apix=apix,
                                           snr=a.snr, seed=1),
                        Heterogeneity(move="D,E", motion="rotate", amount=30.0, remove="D,E",
                                      present_fraction=0.5))
    truth = np.load(os.path.join(sim_dir, "ground_truth.npz"))

    manager = Manager()
    if manager.hasProject("gmm_demo"):
        manager.deleteProject("gmm_demo")
    project = manager.createProject("gmm_demo")
    os.chdir(project.path)

    def run(prot, step):
        print(step, flush=True)
        t = time.time()
        project.launchProtocol(prot, wait=True)
        if not prot.isFinished():
            sys.exit("protocol %s failed; see %s" % (prot.getObjLabel(),
                                                    prot.getLogPaths()[0]))
        print("    done in %.0f s" % (time.time() - t), flush=True)
        return prot

    def connect(param, prot, name):
        param.set(prot)
        param.setExtended(name)

    imp = run(project.newProtocol(ProtImportParticles,
                                  importFrom=ProtImportParticles.IMPORT_FROM_RELION,
                                  starFile=star, samplingRate=apix, magnification=50000,
                                  haveDataBeenPhaseFlipped=False, voltage=300.0,
                                  sphericalAberration=2.7, amplitudeContrast=0.1,
                                  objLabel="import simulated particles"),
              "2/6 importing the RELION .star into Scipion project %s" % project.path)
    cores = len(os.sched_getaffinity(0))   # the demo may use the whole machine
    rec = project.newProtocol(GmmProtReconstruct, objLabel="consensus reconstruction",
                              numberOfThreads=cores)
    connect(rec.inputParticles, imp, "outputParticles")
    run(rec, "3/6 consensus reconstruction (gmmplugin - reconstruct)")
    fit = project.newProtocol(GmmProtFitNeutral, targetResolution=8.0,
                              objLabel="neutral GMM", numberOfThreads=cores)
    connect(fit.inputVolume, rec, "Volume")
    run(fit, "4/6 neutral GMM at 8 A (gmmplugin - fit neutral GMM)")
    train = project.newProtocol(GmmProtTrain, latentDim=4, numEpochs=a.epochs,
                                maxResolution=8.0, objLabel="heterogeneity training",
                                numberOfThreads=cores)
    connect(train.inputParticles, imp, "outputParticles")
    connect(train.inputGmm, fit, "Gmm")
    run(train, "5/6 heterogeneity training, at most %d epochs (gmmplugin - heterogeneity "
        "training)" % a.epochs)
    ana = project.newProtocol(GmmProtAnalyze, numClasses=0, numPCs=2, numFrames=7,
                              objLabel="latent analysis",
                              numberOfThreads=cores)
    connect(ana.inputParticles, train, "Particles")
    run(ana, "6/6 latent analysis: classes, volume series, outliers (gmmplugin - analyze latent space)")

    write_outputs(out, rec, fit, train, ana, truth, sim_dir, t0)


def write_outputs(out, rec, fit, train, ana, truth, sim_dir, t0):
    """Plots, maps and a text report of what was found vs the simulated truth."""
    import json

    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    from gmmplugin.engine import layout, plots
    from gmmplugin.engine.io import read_map

    info = ana.readResult("analysis_info")
    train_info = train.readResult("training")
    res = np.load(ana._getFileName("analysis"))
    ids = res["ids"]
    rows = ids - 1                      # the importer numbers star rows from 1
    comp, conf = truth["composition"][rows], truth["conformation"][rows]
    labels = res["labels"]
    plots.plot_latent_scatter(res["zred"], labels + 1, categorical=True,
                              out_png=os.path.join(out, "latent_classes.png"),
                              title="Latent space (PCA) by class")
    plots.plot_latent_scatter(res["zred"], np.where(comp == 1, conf, -0.3),
                              "true TCR angle / 30° (absent = -0.3)",
                              out_png=os.path.join(out, "latent_truth.png"),
                              title="Latent space (PCA) by simulated truth")
    os.makedirs(os.path.join(out, "classes"), exist_ok=True)
    for c in info["classes"]:
        shutil.copy(ana._getFileName("map", name=layout.name("class", cls=c["class"])),
                    os.path.join(out, "classes"))
    os.makedirs(os.path.join(out, "volume_series"), exist_ok=True)
    for pc in (1, 2):
        maps = []
        for kind in ("gmm_frame", "frame"):
            for f in range(1, 8):
                fn = ana._frameFile(kind, "pc%d" % pc, f)
                if os.path.exists(fn):
                    shutil.copy(fn, os.path.join(out, "volume_series"))
                    if kind == "gmm_frame":
                        maps.append(read_map(fn)[0])
        if maps:
            plots.plot_volume_series(maps, out_png=os.path.join(out, "series_pc%d.png" % pc),
                                     title="Decoded GMM along PC%d" % pc)
    shutil.copy(train._getFileName("training_curve"), out)
    shutil.copy(rec.Volume.getFileName(), os.path.join(out, "consensus.mrc"))
    shutil.copy(fit.Volume.getFileName(), os.path.join(out, "neutral_gmm_map.mrc"))

    ari = adjusted_rand_score(comp, labels) if info["num_classes"] > 1 else float("nan")
    z = res["z"]
    present = comp == 1
    rho_all = spearmanr(PCA(1).fit_transform(z)[:, 0], conf).correlation
    rho_present = spearmanr(PCA(1).fit_transform(z[present])[:, 0],
                            conf[present]).correlation
    from gmmplugin.engine.analyze import frame_members
    members = frame_members(res)
    by_series = {}
    for f, m in zip(info["frames"], members):
        by_series.setdefault(f["series"], []).append(conf[np.searchsorted(ids, m)].mean())
    means = by_series.get("pc1", [])
    curves = ["%s curve: mean true angle of each frame's particles: %s." % (
        name.replace("class", "Class "), ", ".join("%.2f" % m for m in values))
        for name, values in by_series.items() if name.startswith("class")]
    lines = [
        "gmmplugin demo report (%.0f s in all)" % (time.time() - t0),
        "",
        "Simulated truth: %d particles of 1bd2; TCR (chains D,E) present in %d (%.0f%%), "
        "swinging 0-30 deg about the TCR-MHC interface; SNR %s." % (
            len(ids), present.sum(), 100 * present.mean(),
            json.loads(str(truth["settings"]))["snr"]),
        "",
        "Consensus reconstruction: FSC 0.143 at %.2f A." % float(
            rec.FSC.calculateResolution()),
        "Neutral GMM: %d Gaussians at 8 A." % fit.Gmm.getNumGaussians(),
        "Training: %d epochs (%s); final mean FRC %.3f." % (
            len(train_info["history"]), train_info.get("stopped_because") or "done",
            train_info["history"][-1]["frc"]),
        "Classes: %d (%s); sizes %s; resolutions %s A." % (
            info["num_classes"], "automatic" if info["k_chosen_automatically"] else "given",
            [c["size"] for c in info["classes"]],
            ["%.1f" % (c["resolution"] or 0) for c in info["classes"]]),
        "Classes vs true composition: adjusted Rand index %.3f." % ari,
        "Class TCR fraction (truth): %s." % ["%.2f" % comp[labels == c].mean()
                                             for c in range(info["num_classes"])],
        "Latent PC1 vs true angle: Spearman rho %.3f (all), %.3f (TCR-bound only)." % (
            rho_all, rho_present),
        "PC1 trajectory: mean true angle of each frame's particles: %s." % (
            ", ".join("%.2f" % m for m in means)),
    ] + curves + [
        "Outliers flagged: %d (%.1f%%)." % (info["outliers"],
                                            100 * info["outliers"] / len(ids)),
        "",
        "Files: latent_classes.png, latent_truth.png, series_pc1.png, series_pc2.png,",
        "training_curve.png, classes/*.mrc, volume_series/*.mrc, consensus.mrc,",
        "neutral_gmm_map.mrc, simulated/ (star, stacks, ground truth), scipion/ (project).",
    ]
    open(os.path.join(out, "report.txt"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
