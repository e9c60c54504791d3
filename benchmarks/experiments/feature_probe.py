#!/usr/bin/env python
"""How much of the cyclic phase can any encoder read from the gradient features?

A supervised probe, not part of the method: the features of a kept training work
folder (``heterogeneity.py --case cyclic --keep-work``) are reduced to their top
``k`` principal components and regressed on (cos, sin) of the true phase with a
ridge and a small MLP, trained on the first 4,000 particles and tested on the
rest. "+pose" adds the outer product of each particle's view direction (6
numbers; the gradient only sees motion across the view); "lifted" also adds the
products of the PCs with it, so a linear read-out can depend on the view.
Prints the circular correlation (Fisher & Lee) of the predicted phase on the
test particles — an upper bound for an encoder of these features, to set
against the oracle of ``benchmarks/cyclic_oracle.py``, which reads whole images.
An abandoned experiment of the cyclic case (benchmarks/JOURNAL.md, "Similarity
score: FRC or noise-whitened correlation").

Usage::

    python benchmarks/experiments/feature_probe.py WORK_FOLDER [--dataset cyclic]
        [--pcs 32 128]
"""
import argparse
import os
import sys

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor

# the benchmarks' own modules live in the parent folder
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cases  # noqa: E402  (the data; puts the repository on sys.path)
from heterogeneity import circ_corr_fisher_lee  # noqa: E402

N_TRAIN = 4000


def view_outer(rotations):
    """n nᵀ (6 unique entries) of the view direction n = A's third row: the same
    for n and -n, as is a projection's gradient."""
    n = rotations[:, 2, :]
    return np.stack([n[:, 0] ** 2, n[:, 1] ** 2, n[:, 2] ** 2,
                     n[:, 0] * n[:, 1], n[:, 0] * n[:, 2], n[:, 1] * n[:, 2]], 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", help="a kept training work folder (holds features.npy)")
    ap.add_argument("--dataset", default="cyclic", choices=["cyclic", "cyclic_wide"])
    ap.add_argument("--pcs", type=int, nargs="+", default=[32, 128])
    a = ap.parse_args()
    gt = np.load(os.path.join(cases.dataset_folder(a.dataset), "ground_truth.npz"))
    phase = 2 * np.pi * gt["conformation"]
    x = np.asarray(np.load(os.path.join(a.work, "features.npy"), mmap_mode="r"),
                   dtype=np.float32)
    x = x.reshape(len(x), -1)
    x -= x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    del x
    y = np.stack([np.cos(phase), np.sin(phase)], 1)[:len(u)]
    nn = view_outer(gt["rotations"][:len(u)])
    train, test = np.arange(N_TRAIN), np.arange(N_TRAIN, len(u))

    def score(pred):
        return circ_corr_fisher_lee(np.arctan2(pred[:, 1], pred[:, 0]), phase[test])

    for k in a.pcs:
        z = u[:, :k] * s[:k]
        z = z / z[:, 0].std()
        lifted = (z[:, :, None] * (nn - nn.mean(0))[:, None, :]).reshape(len(z), -1)
        for name, m in (("plain", z), ("+pose", np.hstack([z, nn])),
                        ("lifted", np.hstack([z, nn, lifted]))):
            ridge = Ridge(alpha=1.0).fit(m[train], y[train])
            mlp = MLPRegressor(hidden_layer_sizes=(256, 256), alpha=1e-3, max_iter=300,
                               early_stopping=True, random_state=0).fit(m[train], y[train])
            print("%d PCs, %-6s: ridge rho_c %.3f, MLP rho_c %.3f"
                  % (k, name, score(ridge.predict(m[test])), score(mlp.predict(m[test]))),
                  flush=True)


if __name__ == "__main__":
    main()
