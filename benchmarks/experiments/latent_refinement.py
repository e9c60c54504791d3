#!/usr/bin/env python
"""Experiment: per-particle latent refinement, each particle's maximum-likelihood
latent point under the trained decoder (is the encoder the bottleneck?).

The encoder reads a particle through the gradient of its score at a single
point, the neutral GMM: a linear, amortised view of the motion (one network for
all particles, so a smoothed guess). The decoder renders any conformation.
Scoring each particle against decoded models measures how much an encoder
loses (semi-amortised inference, Kim et al. 2018: the encoder proposes, the
decoder decides). Not part of the plugin: on the benchmark data it gains little
for a large cost (benchmarks/JOURNAL.md, "Cyclic: the data or the method?").
The plugin's latent refinement is another method (engine/refine_latents.py).

Per particle:
1. Candidates: the encoder's own z, plus K latent points spread over the
   latent distribution (k-means centres of all encoder latents). The K models
   are decoded once; each is projected at the particle's pose, times its CTF.
   The noise-whitened correlation ``c`` is the maximum-likelihood score with
   the best amplitude (as in refine_poses); the highest ``c`` wins, so a
   particle can jump across the latent space, which gradient steps cannot.
2. Polish: ``iterations`` Adam steps on z from the winner, on the same score.
3. Keep the input unless the data say otherwise: the log-likelihood gain of the
   refined z over the encoder's z is ``Σw|d|²(c_out² − c_in²)``. If the encoder
   were right, 2·gain would follow χ² with L degrees of freedom, so the refined
   z is kept only above the χ²_L quantile of ``significance`` (0 keeps all).

Input: a training work folder of benchmarks/heterogeneity.py (``--keep-work``:
checkpoint.pt and features.npy; the encoder latents are recomputed) or of
benchmarks/analysis.py (``<work>/train/work``, latents from ../latents.npz).

Usage::

    python benchmarks/experiments/latent_refinement.py --case cyclic|cyclic_wide|mixed --work DIR
        [--particles 200] [--candidates 64] [--iterations 10] [--significance 0]
        [--max-res 8] [--threads 1]
"""
import argparse
import json
import os
import sys
from collections import namedtuple
import time

import numpy as np
import torch
from scipy.stats import chi2


# the benchmarks' own modules live in the parent folder
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cases  # noqa: E402  (the data and datasets; puts the repository on sys.path)
import heterogeneity as het_bench  # noqa: E402  (the metrics)
from gmmplugin.engine import layout  # noqa: E402
from gmmplugin.engine.ctf import compute_ctf  # noqa: E402
from gmmplugin.engine.sampling import crop_box_for  # noqa: E402
from gmmplugin.engine.fourier import (band_mask, crop_images, freq_grid_2d,  # noqa: E402
                                      image_ft, weighted_correlation, whitening_weights)
from gmmplugin.engine.networks import Encoder  # noqa: E402
from gmmplugin.engine.projection import project  # noqa: E402
from gmmplugin.engine.refine_poses import likelihood_gain, sample_spectra  # noqa: E402
from gmmplugin.engine.checkpoint import load_decoder  # noqa: E402

LatentRefinement = namedtuple("LatentRefinement", "z gain moved jumped rate")
LatentRefinement.__doc__ = """z (n, L) refined latents (the input's where not moved),
log-likelihood gain over the input latent (n,), moved (n,) bool (the refined z was
kept), jumped (n,) bool (a candidate beat the encoder's z before polishing),
particles/s."""

# the checkpoint's name in a Trainer's work folder (layout "checkpoint" is work/checkpoint.pt)
CHECKPOINT = os.path.basename(layout.FILES["checkpoint"])
PROJECTION_CHUNK = 128   # projections per call: bounds memory at ~B·N·box complex numbers


def latent_candidates(z, n_candidates, seed=0):
    """K points spread over the latent distribution: k-means centres of ``z``."""
    from sklearn.cluster import KMeans
    z = np.asarray(z, dtype=np.float64)
    k = int(min(n_candidates, len(np.unique(z, axis=0))))
    if k < 1:
        return np.zeros((0, z.shape[1]), dtype=np.float32)
    km = KMeans(k, n_init=3, random_state=seed).fit(z)
    return km.cluster_centers_.astype(np.float32)


def refine_latents(particles, decoder, z0, max_res, min_res=100.0, candidates=64,
                   iterations=10, step=0.05, batch_size=32, device="cpu",
                   significance=0.05, seed=0, log=print):
    """Refine every particle's latent point against the decoder.

    particles: engine Particles (poses, CTF, images); z0: (n, L) encoder latents.
    candidates: number of k-means candidates (0: polish only).
    step: Adam step size as a fraction of the latents' mean standard deviation.
    Returns a LatentRefinement.
    """
    if not 0 <= significance < 1:
        raise ValueError("significance must be in [0, 1), got %r" % significance)
    z0 = np.asarray(z0, dtype=np.float32)
    n, L = z0.shape
    if n != len(particles):
        raise ValueError("%d latent vectors for %d particles" % (n, len(particles)))
    if not np.all(np.isfinite(z0)):
        raise ValueError("the input latents contain NaN or infinite values")
    if candidates < 0 or iterations < 0:
        raise ValueError("candidates and iterations must be >= 0")
    min_gain = 0.5 * chi2.isf(significance, L) if significance > 0 else -np.inf
    device = torch.device(device)
    decoder = decoder.to(device).eval()
    trainable = [prm for prm in decoder.parameters() if prm.requires_grad]
    for prm in trainable:      # only z is optimised
        prm.requires_grad_(False)
    try:
        return _refine(particles, decoder, z0, max_res, min_res, candidates, iterations, step,
                       batch_size, device, min_gain, seed, log)
    finally:
        for prm in trainable:
            prm.requires_grad_(True)


def _refine(particles, decoder, z0, max_res, min_res, candidates, iterations, step,
            batch_size, device, min_gain, seed, log):
    n = len(z0)
    box = crop_box_for(particles.box, particles.apix, max_res)
    apix = particles.apix * particles.box / box
    ky, kx = freq_grid_2d(box, apix, device)
    rings, sel = band_mask(box, apix, min_res, max_res, device)
    t0 = time.time()
    power = sample_spectra(particles, box, batch_size, device)
    weights = whitening_weights(power, rings, sel)
    del power

    cand = torch.from_numpy(latent_candidates(z0, candidates, seed)).to(device)
    with torch.no_grad():
        cand_params = (torch.cat([decoder(cand[i:i + 64]) for i in range(0, len(cand), 64)])
                       if len(cand) else None)
    lr = step * float(np.mean(z0.std(0))) if n > 1 else step
    z_out, gain = z0.copy(), np.zeros(n, dtype=np.float32)
    jumped = np.zeros(n, dtype=bool)
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        data = image_ft(crop_images(torch.from_numpy(particles.images(rows)).to(device), box))
        ctf = compute_ctf(ky, kx, torch.from_numpy(particles.ctf[rows]).to(device))
        if particles.phase_flipped:
            ctf = ctf.abs()
        A = torch.from_numpy(particles.rotations[rows]).float().to(device)
        s = torch.from_numpy(particles.shifts[rows]).float().to(device)
        z_in = torch.from_numpy(z0[rows]).to(device)
        with torch.no_grad():
            pred_in = project(decoder(z_in), A, s, box, apix) * ctf
            c_in = weighted_correlation(pred_in, data, weights, sel)
            z_start = z_in.clone()
            if cand_params is not None:
                c_best, idx = _best_candidates(cand_params, A, s, ctf, data, weights, sel,
                                               box, apix)
                better = c_best > c_in
                z_start[better] = cand[idx[better]]
                jumped[rows] = better.cpu().numpy()
        z = z_start.clone().requires_grad_(True)
        if iterations:
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(iterations):
                c = weighted_correlation(project(decoder(z), A, s, box, apix) * ctf,
                                         data, weights, sel)
                opt.zero_grad()
                (-c.sum()).backward()
                opt.step()
        with torch.no_grad():
            z_fin = z.detach()
            pred = project(decoder(z_fin), A, s, box, apix) * ctf
            g = likelihood_gain(pred_in, pred, data, weights, sel)
            gain[rows] = g.cpu().numpy()
            z_out[rows] = z_fin.cpu().numpy()
        if log and (start // batch_size) % 50 == 0:
            log("latent refinement: %d / %d particles" % (rows[-1] + 1, n))
    moved = gain > min_gain
    z_out[~moved] = z0[~moved]
    rate = n / (time.time() - t0)
    if log:
        log("latent refinement: %.1f %% of the particles moved (%.1f %% jumped to another "
            "candidate), %.1f particles/s" % (100 * moved.mean(), 100 * jumped.mean(), rate))
    return LatentRefinement(z_out, gain, moved, jumped, rate)


def _best_candidates(cand_params, A, s, ctf, data, weights, sel, box, apix):
    """Best whitened correlation over the candidate models for each particle of a
    batch, and its index; projections in chunks of PROJECTION_CHUNK."""
    K = cand_params.shape[0]
    best_c = torch.full((A.shape[0],), -np.inf, device=A.device)
    best_i = torch.zeros(A.shape[0], dtype=torch.long, device=A.device)
    per = max(1, PROJECTION_CHUNK // K)            # particles per call (all candidates)
    kc = min(K, PROJECTION_CHUNK)                  # candidates per call
    for p0 in range(0, A.shape[0], per):
        pr = slice(p0, min(p0 + per, A.shape[0]))
        P = pr.stop - pr.start
        for k0 in range(0, K, kc):
            ks = slice(k0, min(k0 + kc, K))
            Kc = ks.stop - ks.start
            params = cand_params[ks].unsqueeze(0).expand(P, -1, -1, -1).reshape(
                P * Kc, *cand_params.shape[1:])
            rot = A[pr].unsqueeze(1).expand(-1, Kc, -1, -1).reshape(-1, 3, 3)
            sh = s[pr].unsqueeze(1).expand(-1, Kc, -1).reshape(-1, 2)
            pred = project(params, rot, sh, box, apix).view(P, Kc, box, -1) * ctf[pr, None]
            d = data[pr, None].expand(-1, Kc, -1, -1)
            c = weighted_correlation(pred.reshape(P * Kc, box, -1),
                                     d.reshape(P * Kc, box, -1), weights, sel).view(P, Kc)
            cmax, imax = c.max(1)
            upd = cmax > best_c[pr]
            best_c[pr] = torch.where(upd, cmax, best_c[pr])
            best_i[pr] = torch.where(upd, imax + k0, best_i[pr])
    return best_c, best_i


# -- experiment ---------------------------------------------------------------------
def encoder_latents(work, n):
    """The encoder's latents of the first n particles of a training work folder."""
    stored = layout.path(os.path.dirname(work), "latents")
    if os.path.exists(stored):                     # analysis.py layout
        return np.load(stored)["z"][:n]
    ck = torch.load(os.path.join(work, CHECKPOINT), map_location="cpu",
                    weights_only=False)
    cfg = ck["config"]
    feats = np.load(os.path.join(work, "features.npy"), mmap_mode="r")
    enc = Encoder(feats.shape[1] * feats.shape[2], cfg["latent_dim"],
                  variational=cfg["latent_kl"] > 0, init_sigma=cfg["latent_noise"])
    enc.load_state_dict(ck["encoder"])
    with torch.no_grad():
        return np.concatenate([enc(torch.from_numpy(np.asarray(feats[i:min(i + 256, n)],
                                                                np.float32))).numpy()
                               for i in range(0, n, 256)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--case", required=True, choices=["cyclic", "cyclic_wide", "mixed"])
    ap.add_argument("--work", required=True, help="training work folder (checkpoint.pt)")
    ap.add_argument("--particles", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--significance", type=float, default=0.0)
    ap.add_argument("--max-res", type=float, default=None,
                    help="Å (default: the training band)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n = a.particles
    _, _, particles, gt = cases.load_dataset(het_bench.CASES[a.case][0], n)
    ck_path = os.path.join(a.work, CHECKPOINT)
    ck = torch.load(ck_path, map_location="cpu", weights_only=False)
    decoder = load_decoder(ck_path, np.zeros((ck["decoder"]["neutral"].shape[0], 5),
                                             np.float32))
    z0 = encoder_latents(a.work, n)
    before = het_bench.case_metrics(a.case, z0, gt)
    t0 = time.time()
    r = refine_latents(particles, decoder, z0, a.max_res or ck["config"]["max_res"],
                       candidates=a.candidates, iterations=a.iterations,
                       significance=a.significance)
    after = het_bench.case_metrics(a.case, r.z, gt)
    keys = ("circ", "circ_mean_abs_err_deg") if a.case != "mixed" else ("ari", "rho_present")
    print(json.dumps({"case": a.case, "particles": n, "candidates": a.candidates,
                      "iterations": a.iterations, "significance": a.significance,
                      "encoder": {k: round(before[k], 3) for k in keys},
                      "refined": {k: round(after[k], 3) for k in keys},
                      "moved": round(float(r.moved.mean()), 3),
                      "jumped": round(float(r.jumped.mean()), 3),
                      "seconds": round(time.time() - t0, 1),
                      "particles_per_s": round(r.rate, 2)}))


if __name__ == "__main__":
    main()
