#!/usr/bin/env python
"""Heterogeneity acceptance benchmark: simulated particles -> neutral GMM -> latents.

Every dataset but small_closure comes from PDB 1bd2 (chains A, B, C = MHC + peptide; D, E = TCR),
simulated with ``engine.simulate`` (box 64 at 2.6 Å/px, astigmatic CTF, SNR 0.1,
seed 1; defined in ``benchmarks/cases.py``) into ``benchmarks/output/<dataset>/``
and reused when present (a stored set with more particles than asked for is used
through its first rows: the per-particle states are i.i.d., so a prefix is a valid
smaller set). The neutral
GMM is ``fit_neutral`` of the ground-truth map ``maps/state_t0.50.mrc`` (in the
mixed case that map has the TCR present) at 8 Å, or with ``--neutral consensus``
of the average of the true maps over the motion (t uniform, 36 states: what a
consensus refinement of the particles gives; for the cyclic loop t = 0.5 is a
point on the loop, 14 Å from the t = 0 state, while the consensus is the ring). Training uses the engine's
``Trainer`` (features, then encoder + decoder) with a fresh work folder per run.

Cases (``--case``):

continuous  TCR (D,E) swings 0–30° about the automatic hinge axis; latent_dim 4.
            Metric: Spearman |ρ| between PC1 of the latents and the true
            conformation t. Goal ≥ 0.9.
mixed       TCR present in half of the particles (remove "D,E",
            present_fraction 0.5) and, when present, swinging as above;
            latent_dim 4. Metrics: adjusted Rand index of k-means (k = 2) on
            the latents vs the composition truth (goal ≥ 0.9); within the
            particles that truly have the TCR, Spearman |ρ| between PC1 of their
            latents and t (goal ≥ 0.85).
cyclic      β2-microglobulin (chain B, ~12 kDa) moves around a closed loop of
            radius 7 Å (motion "cyclic"; t and t + 1 are the same state);
            latent_dim 2. Metric: circular correlation between the angle of each
            latent point about the latent centroid and the true phase 2πt.
            Goal |ρ_c| ≥ 0.9. ρ_c is the Fisher & Lee (1983) coefficient,
            Σ_{i<j} sin(αi−αj) sin(βi−βj) / √(Σ sin²(αi−αj) Σ sin²(βi−βj)),
            computed in O(n) (Fisher 1993, eq. 6.36); it needs no circular mean,
            which is undefined for a uniform phase. For reference the JSON also
            has Jammalamadaka & SenGupta's coefficient in its form for uniform
            marginals, (|mean e^{i(α−β)}| − |mean e^{i(α+β)}|).
cyclic_wide the same motion on a loop of twice the radius (14 Å): how the
            result depends on the size of the motion (scored as cyclic).
small_closure  a small protein: the HIV protease dimer (1hvr, 22 kDa), box 48
            at 1.8 Å/px, SNR 0.1, one monomer rotating 0–30° about its hinge
            with the other (its far end moves by 16 Å); neutral fit
            at 6 Å. Scored as continuous.
focused     the continuous dataset, trained with a focus mask: the Gaussians
            whose centres lie within 8 Å of a TCR atom (atoms placed at t = 0.5,
            the neutral state, in the simulator's frame: ``simulate.Model``).
            Metrics: |ρ| as for continuous, and the largest change of any
            Gaussian outside the mask (position, Å, and relative amplitude)
            when decoding latent points (all particles' latents plus the
            extremes along PC1 ± 3σ); it should be exactly 0.

Continuous cases also report ``rho_curve`` (mixed: ``rho_present_curve``): the
same Spearman ρ for each particle's position along the principal curve of the
latents (engine/paths.py, the read-out 'analyze' follows). PC1 misreads a
motion whose latents lie on a bend as wide as it is long.

``--likelihood-steps N`` refines every latent on its own likelihood through
the trained decoder after the training (the engine's default, 5 steps); the
metrics are reported before and after, and at each significance level of
``--likelihood-levels`` (the likelihood-ratio guard, applied to the same
moves).

For every case the JSON also holds diagnostics: the same metric computed on
PCA of the raw gradient features (what the encoder starts from), the neutral
and final mean FRC, and, for continuous / focused, the change decoded outside
the TCR mask (how much the rigid part "moves" without a focus mask).

Usage::

    python benchmarks/heterogeneity.py [--case continuous|mixed|cyclic|focused|all]
        [--particles 5000] [--epochs 20] [--lr 1e-3] [--out results.json]
        [--threads 2] [--seed 0] [--eval-every 0] [--set NAME=VALUE ...]
        [--save-latents] [--keep-work] [--refine-classes K] [--likelihood-steps 5]
        [--likelihood-levels 0,0.05]
"""
import argparse
from dataclasses import asdict
import datetime
import json
import os
import platform
import resource
import shutil
import time

import mrcfile
import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

# the data, the simulation settings and the datasets are cases.py's (importing it
# puts the repository on sys.path); the names stay importable from here
from cases import DATASETS, OUT, PDB, geometry, load_dataset, settings
from gmmplugin.engine.fit_neutral import fit_neutral  # noqa: E402
from gmmplugin.engine.sampling import crop_box_for  # noqa: E402
from gmmplugin.engine.gmm import AMP  # noqa: E402
from gmmplugin.engine.refine_latents import refine_latents  # noqa: E402
from gmmplugin.engine.settings import RefineLatentsConfig, TrainConfig, memory_bytes  # noqa
from gmmplugin.engine.simulate import Model  # noqa: E402
from gmmplugin.engine.train import Trainer  # noqa: E402

FOCUS_RADIUS = 8.0

# case -> (dataset, latent_dim, focused)
CASES = {
    "continuous": ("continuous", 4, False),
    "mixed": ("mixed", 4, False),
    "cyclic": ("cyclic", 2, False),
    "cyclic_wide": ("cyclic_wide", 2, False),
    "focused": ("continuous", 4, True),
    "small_closure": ("small_closure", 4, False),
}
# cases scored like another one
METRIC_OF = {"cyclic_wide": "cyclic", "small_closure": "continuous"}
GOALS = {"rho": 0.9, "ari": 0.9, "rho_present": 0.85, "circ": 0.9, "outside_max": 0.0}


def tcr_focus_mask(gmm_centers, radius=FOCUS_RADIUS):
    """Gaussians with a centre within ``radius`` Å of a TCR atom at t = 0.5 (the
    neutral state), atoms in the simulator's frame (weighted-centred model)."""
    model = Model(PDB, settings(1), DATASETS["continuous"])
    atoms = model.params_at(0.5, True)[model.moving, :3]
    from scipy.spatial import cKDTree
    d, _ = cKDTree(atoms).query(np.asarray(gmm_centers, float), k=1)
    return d <= radius


# -- metrics ------------------------------------------------------------------------
def abs_spearman(a, b):
    return float(abs(spearmanr(a, b).correlation))


def pc1(x):
    x = np.asarray(x, float)
    if x.shape[1] == 1:
        return x[:, 0]
    return PCA(1).fit_transform(x)[:, 0]


def circ_corr_fisher_lee(a, b):
    """Fisher & Lee (1983) circular–circular correlation, O(n) form (Fisher 1993,
    eq. 6.36). Sign: +1 same sense of rotation, −1 opposite."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    A = np.sum(np.cos(a) * np.cos(b))
    B = np.sum(np.sin(a) * np.sin(b))
    C = np.sum(np.cos(a) * np.sin(b))
    D = np.sum(np.sin(a) * np.cos(b))
    E, F = np.sum(np.cos(2 * a)), np.sum(np.sin(2 * a))
    G, H = np.sum(np.cos(2 * b)), np.sum(np.sin(2 * b))
    return float(4 * (A * B - C * D) / np.sqrt((n * n - E * E - F * F)
                                               * (n * n - G * G - H * H)))


def circ_corr_fisher_lee_pairs(a, b):
    """The defining O(n²) pair sum (used to check the O(n) form)."""
    da = np.sin(a[:, None] - a[None, :])
    db = np.sin(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), 1)
    da, db = da[iu], db[iu]
    return float(np.sum(da * db) / np.sqrt(np.sum(da ** 2) * np.sum(db ** 2)))


def circ_corr_js_uniform(a, b):
    """Jammalamadaka & SenGupta (2001, §8.2) for uniform marginals:
    |mean e^{i(α−β)}| − |mean e^{i(α+β)}|."""
    return float(np.abs(np.mean(np.exp(1j * (a - b)))) - np.abs(np.mean(np.exp(1j * (a + b)))))


def latent_angle(z):
    z = np.asarray(z, float)
    c = z - z.mean(0)
    return np.arctan2(c[:, 1], c[:, 0])


def _self_test():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2 * np.pi, 300)
    b = -a + 1.0 + rng.normal(0, 0.5, 300)
    fast, slow = circ_corr_fisher_lee(a, b), circ_corr_fisher_lee_pairs(a, b)
    assert abs(fast - slow) < 1e-9, (fast, slow)
    assert abs(circ_corr_fisher_lee(a, a + 2.0) - 1) < 1e-9
    assert circ_corr_fisher_lee(a, rng.uniform(0, 2 * np.pi, 300)) < 0.2


def decoded_change(decoder, z, mask):
    """Largest change (position Å, relative amplitude) of the Gaussians in
    ``mask`` and, for context, outside it, when decoding latent points ``z``."""
    with torch.no_grad():
        neutral = decoder.neutral
        zz = torch.as_tensor(np.asarray(z, np.float32))
        pos, amp = [], []
        for i in range(0, len(zz), 256):
            p = decoder(zz[i:i + 256])
            pos.append(torch.linalg.norm(p[..., :3] - neutral[None, :, :3], dim=-1))
            amp.append((p[..., AMP] - neutral[None, :, AMP]).abs()
                       / neutral[None, :, AMP].abs().clamp_min(1e-12))
        pos, amp = torch.cat(pos).numpy(), torch.cat(amp).numpy()
    m = np.asarray(mask, bool)
    return {"inside_max_pos_A": float(pos[:, m].max()),
            "inside_mean_pos_A": float(pos[:, m].mean()),
            "outside_max_pos_A": float(pos[:, ~m].max()) if (~m).any() else 0.0,
            "outside_mean_pos_A": float(pos[:, ~m].mean()) if (~m).any() else 0.0,
            "outside_max_rel_amp": float(amp[:, ~m].max()) if (~m).any() else 0.0}


def latent_probe_points(z):
    """All latents plus the PC1 extremes (mean ± 3σ along PC1)."""
    z = np.asarray(z, float)
    if z.shape[1] > 1:
        pca = PCA(1).fit(z)
        d, s = pca.components_[0], np.sqrt(pca.explained_variance_[0])
    else:
        d, s = np.ones(1), z.std()
    ext = z.mean(0)[None] + np.array([[-3.0], [3.0]]) * s * d[None]
    return np.concatenate([z, ext])


def linear_diagnostics(z, t):
    """Where the conformation sits in the latent space: |ρ| of every principal
    component, the PCs' variance ratios, the latent scale, and the multiple
    correlation R of the best linear read-out of t from z (least squares)."""
    z = np.asarray(z, float)
    pca = PCA().fit(z)
    pcs = pca.transform(z)
    X = np.column_stack([z, np.ones(len(z))])
    fit = X @ np.linalg.lstsq(X, t, rcond=None)[0]
    return {"rho_per_pc": [round(abs_spearman(pcs[:, i], t), 3) for i in range(z.shape[1])],
            "pc_variance_ratio": [round(float(v), 3) for v in pca.explained_variance_ratio_],
            "latent_std": round(float(np.sqrt(pca.explained_variance_.sum())), 3),
            "linear_R": round(float(np.corrcoef(fit, t)[0, 1]), 3),
            "knn_rho": round(abs_spearman(knn_readout(z, t), t), 3)}


def knn_readout(z, y, k=50):
    """5-fold cross-validated k-nearest-neighbour prediction of y from z: how much
    of y the latent space encodes, whatever the shape of the manifold (PC1 only
    sees it if the manifold is straight)."""
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor
    k = min(k, max(1, len(z) // 10))
    return cross_val_predict(KNeighborsRegressor(k), np.asarray(z, float), y, cv=5)


def curve_rho(z, t, frames=7):
    """|Spearman ρ| between each particle's position along the principal curve of
    all latents (engine/paths.py, what 'analyze' follows for a class; frames:
    its default) and the truth: a 1-D read-out that, unlike PC1, follows a bent
    motion, and without the truth (unlike the kNN read-out)."""
    from gmmplugin.engine.paths import principal_curve, project
    z = np.asarray(z, dtype=np.float64)
    return abs_spearman(project(z, principal_curve(z, frames))[0], t)


def case_metrics(case, z, gt):
    case = METRIC_OF.get(case, case)
    t = gt["conformation"]
    m = {}
    if case in ("continuous", "focused"):
        m["rho"] = abs_spearman(pc1(z), t)
        m["rho_curve"] = curve_rho(z, t)
        m["diag"] = linear_diagnostics(z, t)
    elif case == "mixed":
        comp = gt["composition"]
        labels = KMeans(2, n_init=10, random_state=0).fit_predict(np.asarray(z, float))
        m["ari"] = float(adjusted_rand_score(comp, labels))
        present = comp == 1
        m["rho_present"] = abs_spearman(pc1(z[present]), t[present])
        m["rho_present_curve"] = curve_rho(z[present], t[present])
        m["n_present"] = int(present.sum())
        m["diag_present"] = linear_diagnostics(z[present], t[present])
        m["diag_composition"] = linear_diagnostics(z, comp.astype(float))
    elif case == "cyclic":
        a, b = latent_angle(z), 2 * np.pi * t
        m["circ"] = abs(circ_corr_fisher_lee(a, b))
        m["circ_signed"] = circ_corr_fisher_lee(a, b)
        m["circ_js_uniform"] = circ_corr_js_uniform(a, b)
        # best linear fit of the phase offset, for reading: the mean angular error
        # after aligning the latent angle to the phase (rotation and/or reflection)
        s = np.sign(m["circ_signed"]) or 1.0
        off = np.angle(np.mean(np.exp(1j * (s * a - b))))
        err = np.angle(np.exp(1j * (s * a - b - off)))
        m["circ_mean_abs_err_deg"] = float(np.degrees(np.abs(err).mean()))
        cs = knn_readout(z, np.column_stack([np.cos(b), np.sin(b)]))
        m["circ_knn"] = abs(circ_corr_fisher_lee(np.arctan2(cs[:, 1], cs[:, 0]), b))
        pca = PCA().fit(np.asarray(z, float))
        m["pc_variance_ratio"] = [round(float(v), 3) for v in pca.explained_variance_ratio_]
    return m


def passes(case, m):
    case = METRIC_OF.get(case, case)
    checks = {}
    if case in ("continuous", "focused"):
        checks["rho"] = m["rho"] >= GOALS["rho"]
    if case == "mixed":
        checks["ari"] = m["ari"] >= GOALS["ari"]
        checks["rho_present"] = m["rho_present"] >= GOALS["rho_present"]
    if case == "cyclic":
        checks["circ"] = m["circ"] >= GOALS["circ"]
    if case == "focused":
        checks["outside_max"] = (m["outside_max_pos_A"] == 0.0
                                 and m["outside_max_rel_amp"] == 0.0)
    return checks


def consensus_map(dataset, states=36):
    """Average of the true maps over the motion (t uniform on [0, 1))."""
    from gmmplugin.engine.gmm import render_volume_fourier
    pdb, box, apix, _ = geometry(dataset)
    model = Model(pdb, settings(1, dataset), DATASETS[dataset])
    vol = 0
    for t in (np.arange(states) + 0.5) / states:
        with torch.no_grad():
            vol = vol + render_volume_fourier(torch.as_tensor(model.params_at(t, True),
                                                              dtype=torch.float64),
                                              box, apix).numpy()
    return (vol / states).astype(np.float32)


# -- one case -----------------------------------------------------------------------
def run_case(case, a):
    dataset, latent_dim, focused = CASES[case]
    n = a.particles
    folder, info, particles, gt = load_dataset(dataset, n)

    vol = (consensus_map(dataset) if a.neutral == "consensus"
           else mrcfile.read(os.path.join(folder, "maps", "state_t0.50.mrc")))
    t0 = time.time()
    fit_res = a.fit_res or geometry(dataset)[3]
    gmm, rep, _ = fit_neutral(vol, geometry(dataset)[2], fit_res)
    fit_s = time.time() - t0
    print("[%s] neutral GMM: %d Gaussians in %.1f s (FSC 0.5 at %.2f Å)"
          % (case, len(gmm), fit_s, rep.fsc_05), flush=True)

    focus = tcr_focus_mask(gmm.centers) if (focused or dataset == "continuous") else None
    cfg = TrainConfig(latent_dim=latent_dim, epochs=a.epochs, learning_rate=a.lr,
                      seed=a.seed, **a.config)
    work = os.path.join(folder, "work_%s_lr%g_e%d_s%d%s%s" % (
        case, a.lr, a.epochs, a.seed, "".join("_%s%s" % kv for kv in sorted(a.config.items())),
        "_consensus" if a.neutral == "consensus" else "")
        + ("_fit%g" % fit_res if fit_res != geometry(dataset)[3] else ""))
    shutil.rmtree(work, ignore_errors=True)
    trainer = Trainer(particles, gmm, cfg, work, focus_mask=focus if focused else None,
                      log=lambda s: print("[%s] %s" % (case, s), flush=True))
    t0 = time.time()
    images = trainer.prepare_images()
    crop_s = time.time() - t0
    t0 = time.time()
    feats = trainer.prepare_features(images)
    feat_s = time.time() - t0
    train_s, curve = 0.0, []
    step = a.eval_every if a.eval_every > 0 else a.epochs
    for target in list(range(step, a.epochs, step)) + [a.epochs]:
        t0 = time.time()
        trainer.train(images, feats, epochs=target)
        train_s += time.time() - t0
        if target < a.epochs:  # learning curve (not timed): the metric so far
            zz, _ = trainer.encode_all(images, feats)
            curve.append(dict(epoch=target, **case_metrics(case, zz, gt)))
            print("[%s] after epoch %d: %s" % (case, target, json.dumps(
                curve[-1], default=float, separators=(",", ":"))), flush=True)
    t0 = time.time()
    z, final_frc = trainer.encode_all(images, feats)
    encode_s = time.time() - t0

    metrics = case_metrics(case, z, gt)
    z_encoder = z
    refinement = None
    if a.refine_classes:
        rcfg = RefineLatentsConfig(classes=a.refine_classes, iterations=a.refine_iterations,
                                   max_res=a.refine_res or cfg.max_res, seed=a.seed)
        t0 = time.time()
        z_ref, _, rhist = refine_latents(particles, z, rcfg,
                                         log=lambda s: print("[%s] %s" % (case, s),
                                                             flush=True))
        refinement = dict(asdict(rcfg), history=rhist, seconds=round(time.time() - t0, 1),
                          encoder_metrics=metrics,
                          estimated_memory_gb=round(memory_bytes(
                              crop_box_for(particles.box, particles.apix, rcfg.max_res),
                              rcfg.classes) / 1e9, 2),
                          peak_rss_gb_so_far=round(resource.getrusage(
                              resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))
        z, metrics = z_ref, case_metrics(case, z_ref, gt)
    likelihood = None
    if a.likelihood_steps:
        z, metrics, likelihood = likelihood_refinement(case, trainer, particles, images, z,
                                                       metrics, gt, a)
    z_every = likelihood.pop("z_every_move") if likelihood else z
    if a.save_latents:
        np.savez(os.path.splitext(a.out)[0] + "_%s_latents.npz" % case, z=z,
                 z_every_move=z_every,
                 z_encoder=z_encoder,
                 conformation=gt["conformation"], composition=gt["composition"],
                 final_frc=final_frc, neutral_frc=trainer.neutral_frc)
    if focus is not None:
        ch = decoded_change(trainer.decoder, latent_probe_points(z), focus)
        if focused:
            metrics.update(ch)
        else:
            metrics["unfocused_change_vs_tcr_mask"] = ch
    # diagnostic: the same metric on PCA of the raw features (the encoder's input)
    X = np.asarray(feats, dtype=np.float32).reshape(len(particles), -1)
    zf = PCA(latent_dim, random_state=0).fit_transform(X)
    del X
    baseline = case_metrics(case, zf, gt)

    result = {
        "case": case, "dataset": dataset, "particles": n, "epochs": a.epochs,
        "lr": a.lr, "latent_dim": latent_dim, "seed": a.seed, "config": asdict(cfg),
        "n_gaussians": len(gmm), "fit_fsc05_A": round(rep.fsc_05, 2),
        "n_focus": int(focus.sum()) if focused else None,
        "train_box": trainer.box, "train_apix": round(trainer.apix, 3),
        "sim_seconds": round(info["sim_seconds"], 1),
        "sim_particles": info["n_particles"], "sim_cached": info["cached"],
        "fit_seconds": round(fit_s, 1), "crop_seconds": round(crop_s, 1),
        "feature_seconds": round(feat_s, 1), "train_seconds": round(train_s, 1),
        "train_particles_per_s": round(n * trainer.epoch / train_s, 1),
        "epochs_run": trainer.epoch, "stopped_because": trainer.stopped_because,
        "encode_seconds": round(encode_s, 1),
        "neutral_frc": float(np.mean(trainer.neutral_frc)), "neutral": a.neutral,
        "fit_res": fit_res,
        "final_frc": float(final_frc.mean()),
        "history": trainer.history, "learning_curve": curve,
        "metrics": metrics, "feature_pca_baseline": baseline,
        "latent_refinement": refinement, "likelihood_refinement": likelihood,
        "pass": passes(case, metrics),
    }
    if not a.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return result


def likelihood_refinement(case, trainer, particles, images, z, metrics, gt, a):
    """Each latent refined on its own likelihood through the decoder (the engine's
    ``LatentLikelihood.refine``), once with every posterior-raising move kept; the
    likelihood-ratio guard at each level of ``--likelihood-levels`` is applied
    afterwards to the same moves (a move is kept when 2 × its log-likelihood gain
    exceeds the χ² quantile), so one refinement gives every level's figure."""
    from scipy.stats import chi2
    from gmmplugin.engine.latent_likelihood import LatentLikelihood
    t0 = time.time()
    like = LatentLikelihood(trainer.decoder, particles, images, trainer.box, trainer.apix,
                            trainer.rings, trainer.band, device=trainer.device,
                            phase_flip=trainer.cfg.ctf_mode == "phase_flip",
                            batch_size=trainer.cfg.batch_size or 64)
    like.estimate_noise(z)
    from gmmplugin.engine.latent_likelihood import local_prior
    prior = local_prior(z, a.likelihood_fraction) if a.likelihood_fraction else None
    z_all, gain, _ = like.refine(z, iterations=a.likelihood_steps, prior=prior)
    seconds = time.time() - t0
    levels = {}
    for level in [0.0] + a.likelihood_levels:
        keep = gain > (0.5 * chi2.isf(level, z.shape[1]) if level > 0 else -np.inf)
        zl = np.where(keep[:, None], z_all, z)
        levels["%g" % level] = dict(moved=float(keep.mean()),
                                    metrics=case_metrics(case, zl, gt))
        print("[%s] likelihood refinement, significance %g: %.0f %% moved, %s"
              % (case, level, 100 * keep.mean(), _primary(case, levels["%g" % level]
                                                       ["metrics"])), flush=True)
    record = dict(steps=a.likelihood_steps,
                  seconds=round(seconds, 1), before=metrics, levels=levels)
    chosen = "%g" % a.likelihood_levels[0] if a.likelihood_levels else "0"
    keep_level = float(chosen)
    keep = gain > (0.5 * chi2.isf(keep_level, z.shape[1]) if keep_level > 0 else -np.inf)
    z_out = np.where(keep[:, None], z_all, z)
    record["z_every_move"] = z_all          # for --save-latents; dropped from the JSON
    return z_out, levels[chosen]["metrics"], record


# -- report -------------------------------------------------------------------------
def fmt_metrics(r):
    text = _fmt_metrics(r)
    ref = r.get("latent_refinement")
    if ref:
        text += " after latent refinement (%d classes, %d rounds, %g Å, %.0f s); encoder " \
                "alone: %s" % (ref["classes"], ref["iterations"], ref["max_res"],
                               ref["seconds"], _primary(r["case"], ref["encoder_metrics"]))
    return text


def _fmt_metrics(r):
    m, ok = r["metrics"], r["pass"]
    tick = lambda k: "✅" if ok[k] else "❌"
    if METRIC_OF.get(r["case"], r["case"]) in ("continuous", "focused"):
        s = ["\\|ρ(PC1, t)\\| = %.3f (≥ 0.9 %s)" % (m["rho"], tick("rho"))]
        if r["case"] == "focused":
            s.append("outside-mask change: %.3g Å, %.3g rel. amp. (= 0 %s)"
                     % (m["outside_max_pos_A"], m["outside_max_rel_amp"],
                        tick("outside_max")))
        return "; ".join(s)
    if r["case"] == "mixed":
        return ("ARI = %.3f (≥ 0.9 %s); \\|ρ\\| present = %.3f (≥ 0.85 %s)"
                % (m["ari"], tick("ari"), m["rho_present"], tick("rho_present")))
    return "circular \\|ρ_c\\| = %.3f (≥ 0.9 %s)" % (m["circ"], tick("circ"))


def fmt_baseline(r):
    b = r["feature_pca_baseline"]
    if METRIC_OF.get(r["case"], r["case"]) in ("continuous", "focused"):
        return "ρ %.3f" % b["rho"]
    if r["case"] == "mixed":
        return "ARI %.3f, ρ %.3f" % (b["ari"], b["rho_present"])
    return "ρ_c %.3f" % b["circ"]


def table(results):
    lines = ["| case | particles | epochs | lr | N Gaussians | simulation (s) | fit (s) "
             "| crop + features (s) | training (s) | training particles/s | FRC neutral → final "
             "| metrics vs goals | feature-PCA baseline |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        sim = "%.0f%s" % (r["sim_seconds"], " (cached)" if r["sim_cached"] else "")
        lines.append("| %s | %d | %d | %g | %d%s | %s | %.1f | %.1f | %.0f | %.0f "
                     "| %.3f → %.3f | %s | %s |" % (
                         r["case"], r["particles"], r["epochs"], r["lr"],
                         r["n_gaussians"],
                         " (%d in mask)" % r["n_focus"] if r["n_focus"] else "",
                         sim, r["fit_seconds"], r["feature_seconds"] + r["crop_seconds"],
                         r["train_seconds"], r["train_particles_per_s"],
                         r["neutral_frc"], r["final_frc"], fmt_metrics(r),
                         fmt_baseline(r)))
    return "\n".join(lines)


def _primary(case, m):
    case = METRIC_OF.get(case, case)
    if case in ("continuous", "focused"):
        return "%.2f" % m["rho"]
    if case == "mixed":
        return "%.2f/%.2f" % (m["ari"], m["rho_present"])
    return "%.2f" % m["circ"]


def diag_table(results):
    """Learning curve of the goal metric(s) and where the information sits."""
    lines = ["| case | goal metric by epoch | latent PC variance ratios "
             "| best linear read-out R | kNN read-out (CV) | decoded change outside "
             "TCR mask: mean / max (Å) |", "|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]
        curve = ", ".join("%d: %s" % (c["epoch"], _primary(r["case"], c))
                          for c in r["learning_curve"])
        curve = (curve + ", " if curve else "") + "%d: %s" % (r["epochs"],
                                                             _primary(r["case"], m))
        d = m.get("diag") or m.get("diag_present")
        if d:
            pcs, lin, knn = d["pc_variance_ratio"], "%.3f" % d["linear_R"], \
                "ρ %.3f" % d["knn_rho"]
        else:
            pcs, lin, knn = m["pc_variance_ratio"], "–", "ρ_c %.3f" % m["circ_knn"]
        ch = m.get("unfocused_change_vs_tcr_mask") or (m if "outside_max_pos_A" in m
                                                       else None)
        ch = "%.2f / %.2f" % (ch["outside_mean_pos_A"], ch["outside_max_pos_A"]) \
            if ch else "–"
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            r["case"], curve, " / ".join("%.2f" % v for v in pcs), lin, knn, ch))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="all", choices=list(CASES) + ["all"])
    ap.add_argument("--particles", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--fit-res", type=float, default=0.0,
                    help="resolution (Å) of the neutral GMM fit, 0 = the dataset's (train with --set max_res=...)")
    ap.add_argument("--neutral", default="state", choices=["state", "consensus"],
                    help="neutral GMM from the true t = 0.5 map or the consensus (average)")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(OUT, "heterogeneity.json"))
    ap.add_argument("--eval-every", type=int, default=0,
                    help="also compute the metrics every this many epochs (learning "
                         "curve in the JSON; evaluation time is not counted as training)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override another TrainConfig field, e.g. --set latent_noise=0.2 "
                         "(repeatable; for hyper-parameter experiments)")
    ap.add_argument("--save-latents", action="store_true",
                    help="write <out>_<case>_latents.npz (z, the refined latents "
                         "with --refine-classes; z_encoder; ground truth; FRC)")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the training folders (images, features, checkpoint)")
    ap.add_argument("--refine-classes", type=int, default=0,
                    help="after training, refine the latents by masked 3D classification "
                         "into this many classes (engine/refine_latents.py; 0 = off)")
    ap.add_argument("--refine-iterations", type=int, default=4)
    ap.add_argument("--refine-res", type=float, default=0.0,
                    help="resolution of the latent refinement (0 = the training's)")
    ap.add_argument("--likelihood-steps", type=int, default=0,
                    help="after training (and --refine-classes), Gauss-Newton steps of "
                         "each latent on its own likelihood through the decoder (0 = off)")
    ap.add_argument("--likelihood-fraction", type=float, default=0,
                    help="the share of the population, nearest each latent, whose spread "
                         "is its prior spread (0 = the engine's default)")
    ap.add_argument("--likelihood-levels", type=lambda v: [float(x) for x in v.split(",")],
                    default=[], help="comma-separated significance levels of the "
                                     "likelihood-ratio guard to report (the first is kept)")
    a = ap.parse_args()
    a.config = {}
    for item in a.set:
        k, v = item.split("=", 1)
        if k not in TrainConfig.__dataclass_fields__ or k in ("latent_dim", "epochs",
                                                               "learning_rate", "seed"):
            ap.error("--set: %r is not an overridable TrainConfig field" % k)
        default = getattr(TrainConfig, k)
        a.config[k] = (v.lower() in ("1", "true", "yes")) if isinstance(default, bool) \
            else type(default)(v)
    torch.set_num_threads(a.threads)
    _self_test()
    os.makedirs(OUT, exist_ok=True)
    cases = list(CASES) if a.case == "all" else [a.case]
    t0 = time.time()
    results = []
    for c in cases:
        results.append(run_case(c, a))
        print(table(results[-1:]), flush=True)
    total = time.time() - t0
    print()
    print(table(results))
    print()
    print(diag_table(results))
    print("\ntotal wall time %.0f s (%d threads, %s)" % (total, a.threads,
                                                         platform.processor() or "cpu"))
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "total_seconds": round(total, 1), "threads": a.threads,
           "torch": torch.__version__, "args": vars(a), "results": results}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
