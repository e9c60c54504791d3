#!/usr/bin/env python
"""Each particle's latent refined on its own likelihood through the decoder
(engine/latent_likelihood.py), on a finished training of ``analysis.py``.

Re-runs only the refinement on the networks, images and latents a training
saved, for several settings, and scores the latents against the simulation's
truth: Spearman |ρ| of their PC1 with the true angle (all particles, and those
with the moving part present), and for data with a compositional change the
ARI of two Gaussian-mixture classes with the composition. Also prints the
time per particle.

Usage::

    python benchmarks/latent_likelihood.py --case continuous [--particles 5000]
        [--steps 5] [--significance 0 0.05] [--threads 2]
"""
import argparse
import glob
import json
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

import cases  # the data and datasets; puts the repository on sys.path
from gmmplugin.engine import layout  # noqa: E402
from gmmplugin.engine.analyze import classify  # noqa: E402
from gmmplugin.engine.checkpoint import load_decoder  # noqa: E402
from gmmplugin.engine.fourier import band_mask  # noqa: E402
from gmmplugin.engine.gmm import Gmm  # noqa: E402
from gmmplugin.engine.latent_likelihood import LatentLikelihood, posterior_spread  # noqa
from gmmplugin.engine.particles import Particles  # noqa: E402
from gmmplugin.engine.sampling import crop_box_for  # noqa: E402


def scores(z, t, comp):
    """|ρ(PC1, t)| over all particles and over those with the part present; ARI
    of two Gaussian-mixture classes with the composition (when it varies)."""
    pc = PCA(1).fit_transform(z)[:, 0]
    out = {"rho_all": abs(float(spearmanr(pc, t).correlation))}
    if comp.min() != comp.max():
        present = comp == 1
        pc_p = PCA(1).fit_transform(z[present])[:, 0]
        out["rho_present"] = abs(float(spearmanr(pc_p, t[present]).correlation))
        out["ari_k2"] = float(adjusted_rand_score(comp, classify(z, 2)[0]))
    return {k: round(v, 4) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="continuous")
    ap.add_argument("--particles", type=int, default=5000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--significance", type=float, nargs="+", default=[0.0, 0.05])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=cases.output("latent_likelihood.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    folder = cases.dataset_folder(a.case if a.case in cases.DATASETS else "continuous")
    work = os.path.join(folder, "work_analysis_%s" % a.case)
    train, fit = os.path.join(work, "train"), os.path.join(work, "fit")
    lat = np.load(layout.path(train, "latents"))
    particles = Particles.load(os.path.join(folder, "subset_%d.npz" % a.particles))
    gt = cases.load_ground_truth(folder, a.particles)
    index = {int(i): r for r, i in enumerate(gt["ids"])}
    rows = np.array([index[int(i)] for i in lat["ids"]])
    t, comp = gt["conformation"][rows], gt["composition"][rows]
    z0 = lat["z_before_likelihood"] if "z_before_likelihood" in lat.files else lat["z"]
    ck = torch.load(layout.path(train, "checkpoint"), weights_only=False)
    cfg = ck["config"]
    decoder = load_decoder(layout.path(train, "checkpoint"), Gmm.load(layout.path(fit, "gmm"))
                           .params)
    box = crop_box_for(particles.box, particles.apix, cfg["max_res"])
    apix = particles.apix * particles.box / box
    images = np.load(glob.glob(os.path.join(train, "work", "images_%d.npy" % box))[0],
                     mmap_mode="r")
    rings, band = band_mask(box, apix, cfg["min_res"], cfg["max_res"])
    results = {"case": a.case, "particles": len(z0), "encoder": scores(z0, t, comp)}
    print(json.dumps(results), flush=True)
    for sig in a.significance:
        like = LatentLikelihood(decoder, particles, images, box, apix, rings, band,
                                batch_size=cfg["batch_size"])
        t0 = time.time()
        z, gain, moved = like.refine(z0, iterations=a.steps, significance=sig)
        dt = time.time() - t0
        sd, conf = posterior_spread(like.fisher(z), z)
        r = dict(scores(z, t, comp), moved=round(float(moved.mean()), 3),
                 ms_per_particle=round(1000 * dt / len(z), 2), steps=a.steps,
                 significance=sig)
        results["refined_sig%g" % sig] = r
        print(json.dumps(r), flush=True)
    all_results = json.load(open(a.out)) if os.path.exists(a.out) else {}
    all_results[a.case] = results
    json.dump(all_results, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
