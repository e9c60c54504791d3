"""Speed (and, where affordable, quality) of cryoDRGN train_vae vs our training.

Same dataset, same machine, one script: the continuous case of
``benchmarks/heterogeneity.py`` (1bd2, box 64, 2.6 Å/px, SNR 0.1, TCR swing;
run that benchmark first so ``benchmarks/output/continuous`` exists).

cryoDRGN (PyPI ``cryodrgn``) lives in its own venv (``--cryodrgn``, default
``cases.CRYODRGN_VENV``: ``$GMM_BENCH_CRYODRGN`` or ``../venv_cryodrgn`` next to the
repository; created with ``pip install cryodrgn`` if missing; never a plugin
dependency) and runs
with its defaults: ``train_vae --zdim 4`` (encoder and decoder 3×1024, batch
16, lr 1e-4, mixed precision where available, data sign inverted as for RELION particles), poses and CTF parsed
from the same .star by ``cryodrgn parse_pose_star`` / ``parse_ctf_star``.
Its particles/s come from its own per-epoch log on ``--drgn-particles``
particles (one epoch). Ours: ``python -m gmmplugin.engine train`` with the
plugin defaults on all particles of the dataset, particles/s from training.json.
Quality: Spearman |ρ| of latent PC1 vs the true angle for each run (cryoDRGN's
after the epochs it was given; its default 20-epoch training on 5,000
particles is ~2 days of this CPU, so only its speed is comparable here unless
``--drgn-epochs``/``--drgn-particles`` are raised on a GPU machine).

    python benchmarks/cryodrgn_compare.py [--threads 2]
"""
import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import time

import numpy as np

import cases  # the data and datasets; puts the repository on sys.path
from gmmplugin.engine import layout

DATA = cases.dataset_folder("continuous")
OUT = cases.output("cryodrgn_compare")


def rho_pc1(z, truth):
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA
    pc1 = PCA(1).fit_transform(np.asarray(z, float))[:, 0]
    return abs(float(spearmanr(pc1, truth).correlation))


def ensure_cryodrgn(venv):
    exe = os.path.join(venv, "bin", "cryodrgn")
    if not os.path.exists(exe):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "cryodrgn"],
                       check=True)
    return exe


def run(cmd, env=None, log=None):
    t = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log:
        with open(log, "w") as fh:
            fh.write(res.stdout + res.stderr)
    if res.returncode:
        raise RuntimeError("%s failed:\n%s" % (cmd[:3], res.stderr[-2000:]))
    return time.time() - t, res.stdout + res.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cryodrgn", default=cases.CRYODRGN_VENV, help="its venv")
    ap.add_argument("--drgn-particles", type=int, default=256)
    ap.add_argument("--drgn-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    star = os.path.join(DATA, "particles.star")
    if not os.path.exists(star):
        sys.exit("run benchmarks/heterogeneity.py --case continuous first (%s missing)" % star)
    os.makedirs(OUT, exist_ok=True)
    truth = np.load(os.path.join(DATA, "ground_truth.npz"))["conformation"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    exe = ensure_cryodrgn(a.cryodrgn)
    D, apix = cases.BOX, cases.APIX
    pose, ctf = os.path.join(OUT, "pose.pkl"), os.path.join(OUT, "ctf.pkl")
    run([exe, "parse_pose_star", star, "-o", pose, "-D", str(D), "--Apix", str(apix)], env)
    run([exe, "parse_ctf_star", star, "-o", ctf, "-D", str(D), "--Apix", str(apix)], env)
    ind = os.path.join(OUT, "ind.pkl")
    with open(ind, "wb") as fh:
        pickle.dump(np.arange(a.drgn_particles), fh)
    drgn_out = os.path.join(OUT, "drgn")
    secs, log = run([exe, "train_vae", star, "--poses", pose, "--ctf", ctf, "--zdim", "4",
                     "-n", str(a.drgn_epochs), "--ind", ind, "--datadir", DATA,
                     "--no-analysis", "--max-threads", str(a.threads), "-o", drgn_out],
                    env, os.path.join(OUT, "drgn.log"))
    # cryoDRGN 4: "# =====> Epoch: 1 ... Finished in 0:05:55.104510"
    epoch_times = [float(h) * 3600 + float(m) * 60 + float(sec) for h, m, sec in
                   re.findall(r"Epoch: \d+ .*?Finished in (\d+):(\d+):([0-9.]+)", log)]
    if not epoch_times:   # older/newer log formats: fall back to wall time
        epoch_times = [secs / a.drgn_epochs]
    drgn_pps = a.drgn_particles / float(np.median(epoch_times))
    with open(os.path.join(drgn_out, "z.pkl" if os.path.exists(os.path.join(drgn_out, "z.pkl"))
                           else "z.%d.pkl" % (a.drgn_epochs - 1)), "rb") as fh:
        z_drgn = pickle.load(fh)
    rho_drgn = rho_pc1(z_drgn, truth[:a.drgn_particles])

    # ours, plugin defaults, on the same .star
    ours = os.path.join(OUT, "ours")
    gmm = os.path.join(OUT, "fit")
    py = sys.executable
    cli = [py, "-m", "gmmplugin.engine", "--threads", str(a.threads)]
    ours_env = dict(env, PYTHONPATH=cases.ROOT)
    run(cli + ["reconstruct", "--particles", star, "--out-dir", gmm], ours_env)
    run(cli + ["fit", "--map", layout.path(gmm, "map", name="map"), "--resolution", "8",
               "--out-dir", gmm], ours_env)
    secs_ours, _ = run(cli + ["train", "--particles", star, "--gmm", layout.path(gmm, "gmm"),
                              "--out-dir", ours], ours_env, os.path.join(OUT, "ours.log"))
    info = json.load(open(layout.path(ours, "training")))
    lat = np.load(layout.path(ours, "latents"))
    rho_ours = rho_pc1(lat["z"], truth[:len(lat["z"])])
    ours_pps = info.get("particles_per_s")
    rec = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "threads": a.threads,
           "cryodrgn": {"settings": "train_vae --zdim 4 (defaults: enc/dec 3x1024, batch 16, "
                                    "lr 1e-4)", "particles": a.drgn_particles,
                        "epochs": a.drgn_epochs, "epoch_seconds": epoch_times,
                        "particles_per_s": drgn_pps, "rho_pc1": rho_drgn},
           "ours": {"settings": "cli train defaults", "particles": int(len(lat["z"])),
                    "epochs": info.get("epochs"), "seconds": secs_ours,
                    "particles_per_s": ours_pps, "rho_pc1": rho_ours},
           "speed_ratio": (ours_pps / drgn_pps) if ours_pps else None}
    print(json.dumps(rec, indent=1))
    with open(cases.output("cryodrgn_compare.json"), "w") as fh:
        json.dump(rec, fh, indent=1)


if __name__ == "__main__":
    main()
