#!/usr/bin/env python
"""The ceiling of a heterogeneity benchmark: how well can each particle's state
be read from its image at all?

For each of the first ``--particles`` particles of a simulated dataset of
``cases.py``, the true model is projected at the particle's true pose and CTF
in every state of a grid (conformation t on ``--grid`` steps of [0, 1], times
present/absent for a compositional dataset), and the state of highest
noise-whitened correlation is the particle's maximum-likelihood state (the best
any encoder and decoder could do with the true maps). Two bands: 100 Å – the
training band's limit (``--train-res``, what the networks see) and 100 Å –
Nyquist. Metrics, the same as the benchmarks': Spearman ρ of the read
conformation with the true one (over the particles with the moving part
present when the composition varies) and the adjusted Rand index of the read
composition. Written to ``benchmarks/output/ceiling.json``.

Usage::

    python benchmarks/ceiling.py --dataset continuous [--particles 1000] [--grid 21]
        [--train-res 8] [--threads 2]
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

import cases  # the data and datasets; puts the repository on sys.path
from gmmplugin.engine.ctf import compute_ctf  # noqa: E402
from gmmplugin.engine.fourier import (band_mask, freq_grid_2d, image_ft,  # noqa: E402
                                      weighted_correlation, whitening_weights)
from gmmplugin.engine.projection import project  # noqa: E402
from gmmplugin.engine.simulate import Model  # noqa: E402


def states_of(model, grid, compositional):
    """(S, N, 5) GMMs of every state and their (t, present) labels."""
    labels = [(t, True) for t in grid] + ([(t, False) for t in grid] if compositional else [])
    return (torch.tensor(np.stack([model.params_at(t, p) for t, p in labels]),
                         dtype=torch.float32), labels)


def read_states(p, states, bands, batch=8):
    """Index of the best state of every particle, for each band (name -> rows)."""
    ky, kx = freq_grid_2d(p.box, p.apix)
    sample = image_ft(torch.from_numpy(p.images(np.arange(min(len(p), 512)))))
    masks = {}
    for name, (lo, hi) in bands.items():
        rings, sel = band_mask(p.box, p.apix, lo, hi)
        masks[name] = (sel, whitening_weights(sample, rings, sel))
    best = {name: np.zeros(len(p), dtype=np.int64) for name in bands}
    S = len(states)
    for start in range(0, len(p), batch):
        rows = np.arange(start, min(start + batch, len(p)))
        B = len(rows)
        data = image_ft(torch.from_numpy(p.images(rows)))
        ctf = compute_ctf(ky, kx, torch.from_numpy(p.ctf[rows]))
        rot = torch.from_numpy(p.rotations[rows]).float()
        sh = torch.from_numpy(p.shifts[rows]).float()
        with torch.no_grad():
            pred = project(states.repeat(B, 1, 1),
                           rot.repeat_interleave(S, 0), sh.repeat_interleave(S, 0),
                           p.box, p.apix) * ctf.repeat_interleave(S, 0)
            data_rep = data.repeat_interleave(S, 0)
            for name, (sel, w) in masks.items():
                c = weighted_correlation(pred, data_rep, w, sel).view(B, S)
                best[name][rows] = c.argmax(1).numpy()
    return best


def scores(labels, best, t, comp):
    t_read = np.array([labels[i][0] for i in best])
    c_read = np.array([labels[i][1] for i in best]).astype(int)
    present = comp == 1
    out = {"rho": round(float(spearmanr(t_read[present], t[present]).correlation), 4)}
    if comp.min() != comp.max():
        out["ari_composition"] = round(float(adjusted_rand_score(comp, c_read)), 4)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="continuous", choices=sorted(cases.DATASETS))
    ap.add_argument("--particles", type=int, default=1000)
    ap.add_argument("--grid", type=int, default=21)
    ap.add_argument("--train-res", type=float, default=0.0,
                    help="training band limit (Å); 0 = the automatic band of the "
                         "dataset's neutral fit (its resolution, no finer than 6 Å)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=cases.output("ceiling.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    _, _, p, gt = cases.load_dataset(a.dataset, a.particles)
    het = cases.DATASETS[a.dataset]
    if het.motion == "cyclic":
        raise SystemExit("the cyclic datasets have their own ceiling: cyclic_oracle.py")
    pdb, _, _, fit_res = cases.geometry(a.dataset)
    model = Model(pdb, cases.settings(1, a.dataset), het)
    a.train_res = a.train_res or max(fit_res, 6.0)
    compositional = bool(het.remove)
    grid = np.linspace(0, 1, a.grid)
    states, labels = states_of(model, grid, compositional)
    nyquist = 2 * p.apix
    bands = {"training band (100-%g A)" % a.train_res: (100.0, a.train_res),
             "to Nyquist (100-%g A)" % nyquist: (100.0, nyquist)}
    t0 = time.time()
    best = read_states(p, states, bands)
    result = {"dataset": a.dataset, "particles": len(p), "grid": a.grid,
              "states": len(labels), "seconds": round(time.time() - t0, 1)}
    for name, rows in best.items():
        result[name] = scores(labels, rows, gt["conformation"], gt["composition"])
    print(json.dumps(result, indent=1))
    results = json.load(open(a.out)) if os.path.exists(a.out) else {}
    results[a.dataset] = result
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(results, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
