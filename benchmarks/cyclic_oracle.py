#!/usr/bin/env python
"""Ceiling of the cyclic case: how well can the phase be read from the images at all?

For each of the first ``--particles`` particles of the heterogeneity benchmark's
cyclic dataset (1bd2, β2-microglobulin on a 7 Å loop, SNR 0.1; or the 14 Å
loop of ``--dataset cyclic_wide``), project the true
model at 36 phases with the particle's true pose and CTF, and take the phase of
highest noise-whitened correlation over the band 100 Å – ``--max-res`` (the
maximum-likelihood phase on a 10° grid). Prints the circular correlation with the
true phase (the acceptance metric, Fisher & Lee) — what a perfect decoder and
encoder could reach with that band; the training benchmark reads images cropped
to Nyquist = 8 Å.

Usage::

    python benchmarks/cyclic_oracle.py [--particles 300] [--max-res 8] [--threads 1]
        [--dataset cyclic|cyclic_wide] [--score whitened|frc]
"""
import argparse

import numpy as np
import torch

import cases  # the data and datasets; puts the repository on sys.path
import heterogeneity as het_bench  # noqa: E402  (the metrics)
from gmmplugin.engine.ctf import compute_ctf  # noqa: E402
from gmmplugin.engine.fourier import (band_mask, freq_grid_2d, frc, image_ft,  # noqa: E402
                                      weighted_correlation, whitening_weights)
from gmmplugin.engine.projection import project  # noqa: E402
from gmmplugin.engine.simulate import Model  # noqa: E402

PHASES = np.arange(36) / 36


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--particles", type=int, default=300)
    ap.add_argument("--max-res", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dataset", default="cyclic", choices=["cyclic", "cyclic_wide"],
                    help="the 7 Å loop (cyclic) or the 14 Å loop (cyclic_wide)")
    ap.add_argument("--score", default="whitened", choices=["whitened", "frc"],
                    help="the noise-whitened correlation (maximum likelihood) or the FRC")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    _, _, p, gt = cases.load_dataset(a.dataset, a.particles)
    t = gt["conformation"]
    model = Model(cases.PDB, cases.settings(1), cases.DATASETS[a.dataset])
    states = torch.tensor(np.stack([model.params_at(x) for x in PHASES]), dtype=torch.float32)
    ky, kx = freq_grid_2d(p.box, p.apix)
    rings, sel = band_mask(p.box, p.apix, 100.0, a.max_res)
    data = image_ft(torch.from_numpy(p.images(np.arange(a.particles))))
    weights = whitening_weights(data[:512], rings, sel)
    best = np.zeros(a.particles)
    with torch.no_grad():
        for i in range(a.particles):
            A = torch.tensor(p.rotations[i:i + 1], dtype=torch.float32).expand(len(PHASES), 3, 3)
            s = torch.tensor(p.shifts[i:i + 1], dtype=torch.float32).expand(len(PHASES), 2)
            pred = project(states, A, s, p.box, p.apix) * compute_ctf(
                ky, kx, torch.from_numpy(p.ctf[i:i + 1]))
            d = data[i:i + 1].expand_as(pred)
            c = (weighted_correlation(pred, d, weights, sel) if a.score == "whitened"
                 else frc(pred, d, p.box, p.apix, 100.0, a.max_res))
            best[i] = PHASES[int(torch.argmax(c))]
    x, y = 2 * np.pi * best, 2 * np.pi * t
    err = np.degrees(np.abs(np.angle(np.exp(1j * (x - y)))))
    print("oracle, %s, %s score, %d particles, band 100-%g Å: circular rho %.3f (J&S uniform "
          "%.3f), mean phase error %.1f°" % (a.dataset, a.score, a.particles, a.max_res,
                                       het_bench.circ_corr_fisher_lee(x, y),
                                       het_bench.circ_corr_js_uniform(x, y), err.mean()))


if __name__ == "__main__":
    main()
