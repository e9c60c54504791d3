"""The optional training score, the noise-whitened correlation (the matched
filter): training with it recovers a simple motion, and the score reads the
state of a small domain on a loop from single noisy images."""
import json

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from gmmplugin.engine import cli
from gmmplugin.engine.ctf import compute_ctf
from gmmplugin.engine.fourier import (band_mask, freq_grid_2d, frc, image_ft,
                                      weighted_correlation, whitening_weights)
from gmmplugin.engine.projection import project
from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.engine.starfile import read_star
from gmmplugin.tests import data_path


def test_whitened_training_recovers_the_motion(tmp_path):
    """The optional score trains; the default (the FRC) is covered by the
    headless Scipion pipeline test on the same simulated data."""
    out = str(tmp_path / "sim")
    star = simulate(data_path("1hvr.pdb"), out,
                    SimulationSettings(n_particles=600, box=32, apix=3.0, snr=0.5, seed=21),
                    Heterogeneity(move="B", motion="rotate", amount=40.0))
    th = ["--threads", "2"]
    assert cli.main(th + ["reconstruct", "--particles", star, "--out-dir", out + "/rec"]) == 0
    assert cli.main(th + ["fit", "--map", out + "/rec/map.mrc", "--resolution", "8",
                          "--out-dir", out + "/fit"]) == 0
    assert cli.main(th + ["train", "--particles", star, "--gmm", out + "/fit/gmm.npz",
                          "--out-dir", out + "/train", "--latent-dim", "2", "--epochs", "6",
                          "--batch", "32", "--max-res", "8", "--loss", "whitened"]) == 0
    info = json.load(open(out + "/train/training.json"))
    assert info["config"]["loss"] == "whitened"
    lat = np.load(out + "/train/latents.npz")
    t = np.load(out + "/ground_truth.npz")["conformation"][lat["ids"] - 1]
    rho = abs(spearmanr(PCA(1).fit_transform(lat["z"])[:, 0], t).correlation)
    assert rho >= 0.7, rho


def test_whitened_score_prefers_the_true_state_of_a_loop(tmp_path):
    """The fraction of single noisy images whose true state scores above a state
    90° away on the loop (measured: 519 of 600; the FRC: 503, a gap within the
    binomial noise, so not asserted)."""
    out = str(tmp_path / "sim")
    star = simulate(data_path("1hvr.pdb"), out,
                    SimulationSettings(n_particles=300, box=32, apix=3.0, snr=0.01, seed=4),
                    Heterogeneity(move="B", motion="cyclic", amount=6.0))
    p = read_star(star)
    from gmmplugin.engine.simulate import Model
    model = Model(data_path("1hvr.pdb"), SimulationSettings(box=32, apix=3.0, seed=4),
                  Heterogeneity(move="B", motion="cyclic", amount=6.0))
    t = np.load(out + "/ground_truth.npz")["conformation"]
    rows = np.arange(len(p))
    data = image_ft(torch.from_numpy(p.images(rows)))
    rings, sel = band_mask(p.box, p.apix, 100.0, 6.0)
    w = whitening_weights(data, rings, sel)
    ky, kx = freq_grid_2d(p.box, p.apix)
    ctf = compute_ctf(ky, kx, torch.from_numpy(p.ctf))
    rot = torch.from_numpy(p.rotations).float()
    sh = torch.from_numpy(p.shifts).float()
    wins = {"frc": 0, "whitened": 0}
    with torch.no_grad():
        for dt in (0.25, -0.25):
            true = torch.tensor(np.stack([model.params_at(x) for x in t]), dtype=torch.float32)
            wrong = torch.tensor(np.stack([model.params_at((x + dt) % 1) for x in t]),
                                 dtype=torch.float32)
            pt = project(true, rot, sh, p.box, p.apix) * ctf
            pw = project(wrong, rot, sh, p.box, p.apix) * ctf
            wins["frc"] += int((frc(pt, data, p.box, p.apix, 100.0, 6.0)
                                > frc(pw, data, p.box, p.apix, 100.0, 6.0)).sum())
            wins["whitened"] += int((weighted_correlation(pt, data, w, sel)
                                     > weighted_correlation(pw, data, w, sel)).sum())
    n = 2 * len(p)
    print("true state preferred over a state 90° away: %s of %d" % (wins, n))
    assert wins["whitened"] / n >= 0.75, wins
    assert wins["frc"] / n >= 0.75, wins
