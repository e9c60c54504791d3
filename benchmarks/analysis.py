#!/usr/bin/env python
"""Latent-analysis acceptance benchmark: what GmmProtAnalyze finds vs the truth.

Each case runs the engine's command line exactly as the protocols do (``fit`` →
``train`` → ``analyze``, in this process) on a simulated 1bd2 dataset of
``benchmarks/cases.py`` (box 64, 2.6 Å/px, CTF, SNR 0.1; simulated into
``benchmarks/output/`` and reused), with the default training settings, and
scores the outputs against the simulation's ground truth:

mixed       TCR (chains D, E) present in half of the particles, swinging 0–30°
            when present. ``analyze --num-classes 2``. Metrics: adjusted Rand
            index of the classes vs the composition (goal ≥ 0.9); for each
            class, the FSC between its reconstruction and its ground-truth map
            must stay ≥ 0.5 up to 3× the pixel size (7.8 Å). A class's
            ground-truth map is the average of the true maps of its members
            (absent state, or the TCR at the member's angle, binned in 12
            steps): a class that mixes angles is compared with that mixture.
continuous  TCR swinging 0–30° in every particle. ``analyze --num-pcs 1``.
            Metrics: Spearman ρ between frame index and the mean true angle of
            each frame's particles (goal |ρ| ≥ 0.9); each decoded GMM frame map
            is compared (real-space correlation, both low-passed to the
            training band, 8 Å) with true maps along the swing (t = 0, 0.05,
            …, 1): the best match must be the true map nearest the frame's
            true angle (within 0.1 = 3°), and the best matches must be ordered
            (monotonic: no folding back).
junk        the continuous dataset's first 4,500 particles plus 10 % junk: 250
            images of another protein (PDB 1hvr, HIV protease) and 250 pure
            noise images, with the same noise level, random poses and CTFs, as
            a consensus refinement would hand them over. Analyze with the
            protocol's defaults for outliers. Metrics: fraction of junk in
            ``Outliers`` (goal ≥ 0.8) and fraction of good particles there
            (goal ≤ 0.05).

Usage::

    python benchmarks/analysis.py [--case mixed|continuous|junk|all]
        [--particles 5000] [--epochs 10] [--threads 2] [--out analysis.json]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import time

import mrcfile
import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

import cases  # the data and datasets; puts the repository on sys.path
from gmmplugin.engine import cli, layout  # noqa: E402
from gmmplugin.engine.analyze import frame_members  # noqa: E402
from gmmplugin.engine.particles import Particles  # noqa: E402
from gmmplugin.engine.fourier import fsc  # noqa: E402
from gmmplugin.engine.gmm import render_volume_fourier  # noqa: E402
from gmmplugin.engine.simulate import Heterogeneity, Model, SimulationSettings, simulate  # noqa
from gmmplugin.engine.starfile import read_star  # noqa: E402

GOALS = {"ari": 0.9, "class_fsc": 0.5, "fsc_px": 3.0, "frame_rho": 0.9,
         "junk_caught": 0.8, "good_flagged": 0.05}
TRAIN_RES = 8.0
N_JUNK_EACH = 250
STEPS = ("fit", "train", "analyze")     # sub-folders of a case's work folder


def run(argv, threads):
    argv = ["--device", "cpu", "--threads", str(threads)] + [str(x) for x in argv]
    print("$ python -m gmmplugin.engine " + " ".join(argv), flush=True)
    t0 = time.time()
    if cli.main(argv) != 0:
        raise RuntimeError("engine command failed: %s" % " ".join(argv))
    return time.time() - t0


def pipeline(star_or_npz, folder, work_name, a, analyze_args):
    """fit (on the true t = 0.5 map, as the heterogeneity benchmark) → train →
    analyze; returns (work dir, timings)."""
    work = os.path.join(folder, work_name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    fit, train, analyze = (os.path.join(work, s) for s in STEPS)
    times = {}
    times["fit"] = run(["fit", "--map", os.path.join(folder, "maps", "state_t0.50.mrc"),
                        "--resolution", cases.FIT_RES, "--out-dir", fit], a.threads)
    times["train"] = run(["train", "--particles", star_or_npz,
                          "--gmm", layout.path(fit, "gmm"), "--out-dir", train,
                          "--epochs", a.epochs, "--max-res", TRAIN_RES], a.threads)
    times["analyze"] = run(["analyze", "--particles", star_or_npz,
                            "--latents", layout.path(train, "latents"),
                            "--checkpoint", layout.path(train, "checkpoint"),
                            "--gmm", layout.path(fit, "gmm"), "--out-dir", analyze]
                           + analyze_args, a.threads)
    return work, times


def step_file(work, step, key, **fields):
    """A file of one step of ``pipeline``'s work folder, as engine/layout.py names it."""
    return layout.path(os.path.join(work, step), key, **fields)


def map_file(work, step, prefix):
    """The map of a reconstruction saved under ``prefix`` (layout "class", "frame")."""
    return step_file(work, step, "map", name=prefix)


def dataset(name, n):
    folder, _, particles, _ = cases.load_dataset(name, n)
    return folder, particles


def truth_model(name):
    return Model(cases.PDB, cases.settings(1), cases.DATASETS[name])


def render(params, box=cases.BOX, apix=cases.APIX):
    with torch.no_grad():
        return render_volume_fourier(torch.as_tensor(params, dtype=torch.float64),
                                     box, apix).numpy()


def lowpass(vol, res, apix):
    ft = np.fft.rfftn(vol)
    D = vol.shape[0]
    f = np.fft.fftfreq(D, apix)
    fh = np.fft.rfftfreq(D, apix)
    k = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + fh[None, None, :] ** 2)
    return np.fft.irfftn(ft * (k <= 1.0 / res), s=vol.shape)


def corr(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


# -- mixed ---------------------------------------------------------------------------
def case_mixed(a):
    folder, particles = dataset("mixed", a.particles)
    star = os.path.join(folder, "subset_%d.npz" % a.particles)
    particles.save(star)
    gt = cases.load_ground_truth(folder, a.particles)
    work, times = pipeline(star, folder, "work_analysis_mixed", a,
                           ["--num-classes", 2, "--num-pcs", 1])
    res = np.load(step_file(work, "analyze", "analysis"))
    info = json.load(open(step_file(work, "analyze", "analysis_info")))
    index = {int(i): r for r, i in enumerate(gt["ids"])}
    rows = np.array([index[int(i)] for i in res["ids"]])
    labels, comp, t = res["labels"], gt["composition"][rows], gt["conformation"][rows]
    ari = float(adjusted_rand_score(comp, labels))
    model = truth_model("mixed")
    bins = np.linspace(0, 1, 13)
    centres = 0.5 * (bins[1:] + bins[:-1])
    state_maps = {"absent": render(model.params_at(0.5, False))}
    for i, c in enumerate(centres):
        state_maps[i] = render(model.params_at(c, True))
    apix = cases.APIX
    last_shell = int(np.floor(cases.BOX / GOALS["fsc_px"]))
    classes = []
    for c in range(info["num_classes"]):
        sel = labels == c
        present, tb = comp[sel] == 1, np.clip(np.digitize(t[sel], bins) - 1, 0, 11)
        truth = state_maps["absent"] * (~present).sum()
        for i in range(12):
            m = present & (tb == i)
            if m.any():
                truth = truth + state_maps[i] * m.sum()
        truth /= sel.sum()
        vol = mrcfile.read(map_file(work, "analyze",
                                    layout.FILES["class"] % {"cls": c + 1}))
        curve = fsc(vol, truth)
        shells = curve[1:last_shell + 1]
        below = np.nonzero(curve[1:] < 0.5)[0]
        classes.append({
            "class": c + 1, "size": int(sel.sum()),
            "tcr_present_fraction": round(float(present.mean()), 3),
            "fsc_half_maps_0143_A": info["classes"][c]["resolution"],
            "min_fsc_vs_truth_to_3px": round(float(shells.min()), 3),
            # last shell above 0.5: shell below[0] (curve[1:] is offset by one)
            "fsc_vs_truth_05_A": (round(cases.BOX * apix / below[0], 2)
                                  if len(below) and below[0] > 0 else None),
        })
    ok = {"ari": ari >= GOALS["ari"],
          "class_fsc": all(c["min_fsc_vs_truth_to_3px"] >= GOALS["class_fsc"] for c in classes)}
    return {"case": "mixed", "particles": a.particles, "ari": round(ari, 3),
            "classes": classes, "times_s": times, "pass": ok}


# -- continuous ----------------------------------------------------------------------
def case_continuous(a):
    folder, particles = dataset("continuous", a.particles)
    star = os.path.join(folder, "subset_%d.npz" % a.particles)
    particles.save(star)
    gt = cases.load_ground_truth(folder, a.particles)
    work, times = pipeline(star, folder, "work_analysis_continuous", a, ["--num-pcs", 1])
    res = np.load(step_file(work, "analyze", "analysis"))
    info = json.load(open(step_file(work, "analyze", "analysis_info")))
    t_of = dict(zip(gt["ids"].tolist(), gt["conformation"].tolist()))
    frames = [f for f in info["frames"] if f["series"] == "pc1"]
    members = frame_members(res)[:len(frames)]
    t_frame = np.array([np.mean([t_of[int(i)] for i in m]) for m in members])
    rho = float(spearmanr(np.arange(len(frames)), t_frame).correlation)
    model = truth_model("continuous")
    apix = info["apix"]
    grid = np.round(np.linspace(0, 1, 21), 3)
    truth = [lowpass(render(model.params_at(g)), TRAIN_RES, apix) for g in grid]
    best, ccs = [], []
    for f in range(len(frames)):
        vol = lowpass(mrcfile.read(step_file(work, "analyze", "gmm_frame", series="pc1",
                                             frame=f + 1)).astype(np.float64),
                      TRAIN_RES, apix)
        cc = [corr(vol, m) for m in truth]
        ccs.append([round(c, 4) for c in cc])
        best.append(float(grid[int(np.argmax(cc))]))
    best = np.array(best)
    d = np.diff(best)
    monotonic = bool(np.all(d >= 0) or np.all(d <= 0))
    err = np.abs(best - t_frame)
    ok = {"frame_rho": abs(rho) >= GOALS["frame_rho"],
          "decoded_nearest": bool(np.all(err <= 0.1 + 1e-9)), "decoded_ordered": monotonic}
    return {"case": "continuous", "particles": a.particles,
            "frame_true_t": [round(x, 3) for x in t_frame], "frame_rho": round(rho, 3),
            "decoded_best_t": best.tolist(), "decoded_err_t": [round(x, 3) for x in err],
            "decoded_corr": ccs, "times_s": times, "pass": ok}


# -- junk ----------------------------------------------------------------------------
def make_junk_set(a):
    """Good particles (continuous, first n − 500) + 250 1hvr + 250 noise images."""
    folder, good = dataset("continuous", a.particles)
    n_good = a.particles - 2 * N_JUNK_EACH
    good = good.subset(np.arange(n_good))
    gt = cases.load_ground_truth(folder, a.particles)
    sigma = float(gt["noise_sigma"])
    jdir = os.path.join(folder, "junk")
    if not os.path.exists(os.path.join(jdir, "junk.mrcs")):
        os.makedirs(jdir, exist_ok=True)
        s = SimulationSettings(n_particles=2 * N_JUNK_EACH, box=cases.BOX,
                               apix=cases.APIX, snr=0.0, seed=7)
        simulate(cases.JUNK_PDB, os.path.join(jdir, "clean"), s, Heterogeneity())
        clean = read_star(os.path.join(jdir, "clean", "particles.star"))
        rng = np.random.default_rng(11)
        imgs = clean.images(np.arange(len(clean))).astype(np.float64)
        imgs[N_JUNK_EACH:] = 0.0   # second half: noise only (but with poses and CTF)
        # the same noise as the good images, plus, for pure-noise images, the
        # variance the missing signal would have had (same total variance)
        imgs += rng.normal(0, sigma, imgs.shape)
        imgs[N_JUNK_EACH:] *= np.sqrt(1 + cases.SNR)
        with mrcfile.new(os.path.join(jdir, "junk.mrcs"), overwrite=True) as m:
            m.set_data(imgs.astype(np.float32))
            m.voxel_size = cases.APIX
        clean.save(os.path.join(jdir, "junk_meta.npz"))
    meta = Particles.load(os.path.join(jdir, "junk_meta.npz"))
    n_j = len(meta)
    stacks = list(good.stacks) + [os.path.abspath(os.path.join(jdir, "junk.mrcs"))]
    combined = Particles(
        ids=np.concatenate([good.ids, 100000 + np.arange(1, n_j + 1)]), stacks=stacks,
        stack_idx=np.concatenate([good.stack_idx, np.full(n_j, len(stacks) - 1, np.int32)]),
        frame=np.concatenate([good.frame, np.arange(n_j)]),
        rotations=np.concatenate([good.rotations, meta.rotations]),
        shifts=np.concatenate([good.shifts, meta.shifts]),
        ctf=np.concatenate([good.ctf, meta.ctf]), apix=good.apix, box=good.box)
    path = os.path.join(jdir, "with_junk_%d.npz" % a.particles)
    combined.save(path)
    kind = np.array(["good"] * n_good + ["1hvr"] * N_JUNK_EACH + ["noise"] * N_JUNK_EACH)
    return folder, path, combined.ids, kind


def case_junk(a):
    folder, path, ids, kind = make_junk_set(a)
    work, times = pipeline(path, folder, "work_analysis_junk", a, ["--num-pcs", 1])
    res = np.load(step_file(work, "analyze", "analysis"))
    flag = dict(zip(res["ids"].tolist(), res["outlier"].tolist()))
    out = np.array([bool(flag[int(i)]) for i in ids])
    junk = kind != "good"
    caught = float(out[junk].mean())
    flagged_good = float(out[~junk].mean())
    ok = {"junk_caught": caught >= GOALS["junk_caught"],
          "good_flagged": flagged_good <= GOALS["good_flagged"]}
    return {"case": "junk", "particles": len(ids), "junk": int(junk.sum()),
            "junk_caught": round(caught, 3),
            "caught_1hvr": round(float(out[kind == "1hvr"].mean()), 3),
            "caught_noise": round(float(out[kind == "noise"].mean()), 3),
            "good_flagged": round(flagged_good, 4), "outliers": int(out.sum()),
            "times_s": times, "pass": ok}


CASES = {"mixed": case_mixed, "continuous": case_continuous, "junk": case_junk}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="all", choices=list(CASES) + ["all"])
    ap.add_argument("--particles", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=cases.output("analysis.json"))
    a = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    results = json.load(open(a.out)) if os.path.exists(a.out) else {}
    for case in (CASES if a.case == "all" else [a.case]):
        t0 = time.time()
        r = CASES[case](a)
        r.update(seconds=round(time.time() - t0, 1), epochs=a.epochs, threads=a.threads,
                 date=datetime.datetime.now().isoformat(timespec="seconds"),
                 machine=platform.processor() or platform.machine())
        results[case] = r
        print(json.dumps({k: v for k, v in r.items() if k != "decoded_corr"}, indent=1),
              flush=True)
        json.dump(results, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
