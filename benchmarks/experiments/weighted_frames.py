"""Can a particle's latent confidence sharpen the frames of a trajectory?

Re-reconstructs the PC1 frames of a finished ``analysis.py --case axial`` run
(its work folder and ground truth) with other members or weights, and compares
each with the unweighted frame shell by shell (FSC against the true map at the
unweighted members' mean true state):

* ``oracle``: the same number of particles, those whose TRUE state is nearest
  (what perfect latents would give);
* ``posterior``: every particle weighs by the chance, under its latent's
  posterior along the motion (spread from its confidence), that its true place
  lies in the frame's slab; the slab's half-width is chosen so the weights sum
  to the frame's particle count;
* ``uniform``: the same with one spread for all particles (the median), the
  control that tells the confidence's share from the soft membership's;
* ``hardN``: the N particles nearest the frame point, unweighted.

    python benchmarks/experiments/weighted_frames.py --run benchmarks/output/axial \\
        --modes oracle,posterior,uniform,hard900 [--frames 0,3,6]
"""
import argparse
import json
import os
import sys
import time

import mrcfile
import numpy as np
from scipy.stats import norm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import analysis as A  # noqa: E402
import cases  # noqa: E402
from gmmplugin.engine.analyze import frame_members  # noqa: E402
from gmmplugin.engine.commands.common import load_particles  # noqa: E402
from gmmplugin.engine.particles import rows_of  # noqa: E402
from gmmplugin.engine.reconstruct import reconstruct  # noqa: E402


def slab_weights(d, sd, total):
    """P(|true place − frame| < h) for places ``d`` along the motion with
    spreads ``sd``, h chosen (bisection) so the weights sum to ``total``."""
    lo, hi = 1e-4, 10.0 * (np.abs(d).max() + sd.max())
    for _ in range(60):
        h = 0.5 * (lo + hi)
        w = norm.cdf((h - d) / sd) - norm.cdf((-h - d) / sd)
        lo, hi = (lo, h) if w.sum() > total else (h, hi)
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="the dataset folder of an axial analysis run")
    ap.add_argument("--particles", type=int, default=5000)
    ap.add_argument("--modes", default="oracle,posterior,uniform,hard900")
    ap.add_argument("--frames", default="")
    a = ap.parse_args()
    work = os.path.join(a.run, "work_analysis_axial")
    model = A.truth_model("axial")
    info = json.load(open(os.path.join(work, "analyze", "analysis.json")))
    res = np.load(os.path.join(work, "analyze", "analysis.npz"))
    lat = np.load(os.path.join(work, "train", "latents.npz"))
    z, ids = np.asarray(lat["z"], float), lat["ids"]
    conf = np.asarray(lat["confidence"], float)
    gt = cases.load_ground_truth(a.run, a.particles)
    t_of = dict(zip(gt["ids"].tolist(), gt["conformation"].tolist()))
    t = np.array([t_of[int(i)] for i in ids])
    parts = load_particles(os.path.join(a.run, "subset_%d.npz" % a.particles))
    prow = rows_of(parts.ids, ids, "latent ids")
    row_of = {int(i): r for r, i in enumerate(ids)}
    frames = [f for f in info["frames"] if f["series"] == "pc1"]
    pts = np.array([f["latent"] for f in frames])
    members = frame_members(res)[:len(frames)]
    prec = np.linalg.inv(np.cov(z.T))
    todo = [int(x) for x in a.frames.split(",")] if a.frames else range(len(frames))
    for fi in todo:
        d_vec = pts[min(fi + 1, len(pts) - 1)] - pts[max(fi - 1, 0)]
        d_vec /= np.linalg.norm(d_vec)
        # the posterior spread along the motion from confidence = f / (f + p)
        sd = np.sqrt(np.clip(1 - conf, 1e-6, 1) / (d_vec @ prec @ d_vec))
        rows = np.sort([row_of[int(i)] for i in members[fi]])
        along = (z - pts[fi]) @ d_vec
        dist = np.linalg.norm(z - pts[fi], axis=1)
        t_frame = t[rows].mean()
        truth = A.render(model.params_at(float(t_frame)))
        plain = A.fsc(mrcfile.read(os.path.join(work, "analyze", "pc1_frame_%02d.mrc"
                                                % (fi + 1))).astype(float), truth)[1:]
        print("frame %d: true state %.3f, unweighted mean FSC %.4f, members' state sd %.3f"
              % (fi + 1, t_frame, plain.mean(), t[rows].std()), flush=True)
        for mode in a.modes.split(","):
            if mode == "oracle":
                r = np.argsort(np.abs(t - t_frame))[:len(rows)]
                w = np.ones(len(r))
            elif mode in ("posterior", "uniform"):
                cand = np.argsort(dist)[:3 * len(rows)]
                s = sd[cand] if mode == "posterior" else np.full(len(cand), np.median(sd))
                w = slab_weights(along[cand], s, len(rows))
                r, w = cand[w > 0.02], w[w > 0.02]
            elif mode.startswith("hard"):
                r = np.argsort(dist)[:int(mode[4:])]
                w = np.ones(len(r))
            t0 = time.time()
            vol = reconstruct(parts, prow[r], weights=w, pad=2, seed=0).full
            f = A.fsc(np.asarray(vol, float), truth)[1:]
            spread = np.sqrt(np.average((t[r] - t_frame) ** 2, weights=w))
            print("  %-9s particles %4d, effective %4.0f, state rms %.3f | against "
                  "unweighted: worst shell %+.5f, mean %+.4f (%.0f s)"
                  % (mode, len(r), w.sum() ** 2 / (w ** 2).sum(), spread,
                     (f - plain).min(), (f - plain).mean(), time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
