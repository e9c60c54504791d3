"""How much of the widening frames' gain is the confidence's own?

On a finished ``analysis.py --case axial|continuous`` run (its work folder and
ground truth), reconstructs the PC1 frames with ``--weights confidence`` again,
every particle's confidence set to the median, and compares shell by shell
(FSC with the true map at the frame's own particles' mean true state) the
plain, the widened and the uniform-widened frames. ``--path-mixed`` instead
reads a finished ``--case mixed`` run: the share of the other composition
among each path frame's own particles and its widest neighbourhood (the
engine's choice of rows, without reconstructing).

    python benchmarks/experiments/widening_control.py --run benchmarks/output/axial --case axial
    python benchmarks/experiments/widening_control.py --run benchmarks/output/mixed --path-mixed
"""
import argparse
import json
import os
import sys

import mrcfile
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import analysis as A  # noqa: E402
import cases  # noqa: E402
from gmmplugin.engine import frame_shells, layout  # noqa: E402
from gmmplugin.engine.analyze import frame_members  # noqa: E402
from gmmplugin.engine.latent_likelihood import motion_tangents  # noqa: E402
from gmmplugin.engine.paths import PATH_CLASS_SHARE  # noqa: E402


def uniform_control(run, case, particles, threads):
    work = os.path.join(run, "work_analysis_" + case)
    lat = dict(np.load(layout.path(os.path.join(work, "train"), "latents")))
    lat["confidence"] = np.full_like(lat["confidence"], np.median(lat["confidence"]))
    uniform = os.path.join(work, "latents_uniform_confidence.npz")
    np.savez(uniform, **lat)
    out = os.path.join(work, "analyze_uniform")
    A.run(["analyze", "--particles", os.path.join(run, "subset_%d.npz" % particles),
           "--latents", uniform, "--checkpoint",
           layout.path(os.path.join(work, "train"), "checkpoint"), "--gmm",
           layout.path(os.path.join(work, "fit"), "gmm"), "--out-dir", out, "--num-pcs", 1,
           "--class-curves", 0, "--num-classes", 1, "--weights", "confidence"], threads)
    gt = cases.load_ground_truth(run, particles)
    t_of = dict(zip(gt["ids"].tolist(), gt["conformation"].tolist()))
    res = np.load(os.path.join(work, "analyze", "analysis.npz"))
    info = json.load(open(os.path.join(work, "analyze", "analysis.json")))
    n = sum(f["series"] == "pc1" for f in info["frames"])
    model = A.truth_model(case)
    for f, members in enumerate(frame_members(res)[:n]):
        truth = A.render(model.params_at(float(np.mean([t_of[int(i)] for i in members]))))
        name = "pc1_frame_%02d.mrc" % (f + 1)
        plain, widened, flat = (A.fsc(mrcfile.read(os.path.join(d, name)), truth)[1:]
                                for d in (os.path.join(work, "analyze"),
                                          os.path.join(work, "analyze_weighted"), out))
        print("frame %d: widened − plain worst %+.6f mean %+.4f | uniform-widened − plain "
              "worst %+.6f mean %+.4f | confidence − uniform mean %+.4f (shells %+.4f to "
              "%+.4f)" % (f + 1, (widened - plain).min(), (widened - plain).mean(),
                          (flat - plain).min(), (flat - plain).mean(),
                          (widened - flat).mean(), (widened - flat).min(),
                          (widened - flat).max()), flush=True)


def mixed_path(run, particles):
    work = os.path.join(run, "work_analysis_mixed")
    lat = np.load(layout.path(os.path.join(work, "train"), "latents"))
    z, ids = np.asarray(lat["z"], dtype=np.float64), lat["ids"]
    res = np.load(os.path.join(work, "analyze", "analysis.npz"))
    info = json.load(open(os.path.join(work, "analyze", "analysis.json")))
    gt = cases.load_ground_truth(run, particles)
    comp = dict(zip(gt["ids"].tolist(), gt["composition"].tolist()))
    composition = np.array([comp[int(i)] for i in ids])
    row_of = {int(i): r for r, i in enumerate(ids)}
    path = [(f, np.array([row_of[int(i)] for i in m]))
            for f, m in zip(info["frames"], frame_members(res)) if f["series"] == "path"]
    labels = res["labels"]
    # the classes the path runs through, as paths.latent_path counts them
    classes, count = np.unique(labels[np.concatenate([r for _, r in path])],
                               return_counts=True)
    crossed = classes[(count >= PATH_CLASS_SHARE * count.sum()) | (count == count.max())]
    population = np.nonzero(np.isin(labels, crossed))[0]
    variance = frame_shells.posterior_variance(lat["confidence"], z, motion_tangents(z))
    main = np.bincount(composition[population]).argmax()
    for f, rows in path:
        widest = frame_shells.neighbourhood(z, np.array(f["latent"]), rows, population,
                                            variance)
        print("path frame %d: other composition among its own %d particles %.2f %%, "
              "among its widest neighbourhood of %d %.2f %%"
              % (f["frame"], len(rows), 100 * np.mean(composition[rows] != main),
                 len(widest), 100 * np.mean(composition[widest] != main)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="the dataset folder of an analysis.py run")
    ap.add_argument("--case", default="axial")
    ap.add_argument("--particles", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--path-mixed", action="store_true")
    a = ap.parse_args()
    if a.path_mixed:
        mixed_path(a.run, a.particles)
    else:
        uniform_control(a.run, a.case, a.particles, a.threads)


if __name__ == "__main__":
    main()
