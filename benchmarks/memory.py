"""Peak memory of heterogeneity training with 20,000 Gaussians at box 128.

The 2021 e2gmm code was limited to ~3,200 Gaussians at 128 px (11 GB GPU,
batch 8). This trains one epoch with 20,000 Gaussians on 128-px particles
(no Fourier crop: max resolution = Nyquist), batch 64, and records the
process's peak resident memory (``ru_maxrss``) after each stage.

    python benchmarks/memory.py [--gaussians 20000] [--box 128] [--particles 256]
"""
import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np

import cases  # the data; puts the repository on sys.path
from gmmplugin.engine.gmm import Gmm  # noqa: E402
from gmmplugin.engine.simulate import SimulationSettings, simulate  # noqa: E402
from gmmplugin.engine.starfile import read_star  # noqa: E402
from gmmplugin.engine.atoms import read_atoms  # noqa: E402
from gmmplugin.engine.settings import TrainConfig  # noqa: E402
from gmmplugin.engine.train import Trainer  # noqa: E402

PDB = cases.PDB


def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gaussians", type=int, default=20000)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--apix", type=float, default=1.0)
    ap.add_argument("--particles", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=cases.output("memory.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    rec = {"args": vars(a)}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        star = simulate(PDB, os.path.join(tmp, "sim"),
                        SimulationSettings(n_particles=a.particles, box=a.box, apix=a.apix,
                                           window_pad=1))
        rec["simulate_s"] = time.time() - t0
        particles = read_star(star)
        # a GMM of the requested size: atoms resampled with a small jitter
        xyz, z, _, _ = read_atoms(PDB)
        xyz = xyz - xyz.mean(0)
        rng = np.random.default_rng(0)
        pick = rng.integers(0, len(xyz), a.gaussians)
        params = np.column_stack([xyz[pick] + rng.normal(0, 0.7, (a.gaussians, 3)),
                                  np.full(a.gaussians, 0.1), np.full(a.gaussians, 1.5)])
        gmm = Gmm(params.astype(np.float32), apix=a.apix, box=a.box, resolution=2 * a.apix)
        rec["after_setup_gb"] = peak_gb()
        cfg = TrainConfig(epochs=1, batch_size=a.batch, max_res=2 * a.apix)
        trainer = Trainer(particles, gmm, cfg, os.path.join(tmp, "train"), log=print)
        rec["train_box"] = trainer.box
        t = time.time()
        images = trainer.prepare_images()
        feats = trainer.prepare_features(images)
        rec["features_s"] = time.time() - t
        rec["after_features_gb"] = peak_gb()
        t = time.time()
        trainer.train(images, feats)
        rec["epoch_s"] = time.time() - t
        rec["particles_per_s"] = a.particles / rec["epoch_s"]
        rec["peak_rss_gb"] = peak_gb()
    print(json.dumps(rec, indent=1))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(rec, fh, indent=1)


if __name__ == "__main__":
    main()
