"""Symmetry expansion: group operators, expanded poses, the asymmetric unit, and
training on expanded particles giving each subunit its own latent."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gmmplugin.engine import cli
from gmmplugin.engine.particles import Particles
from gmmplugin.engine.geometry import random_rotations
from gmmplugin.engine.projection import project
from gmmplugin.engine.simulate import (Heterogeneity, SimulationSettings, SymmetricModel,
                                       simulate)
from gmmplugin.engine.symmetry import (asu_mask, expand_particles, parse_symmetry,
                                       symmetry_operators)
from gmmplugin.tests import data_path


@pytest.mark.parametrize("name,order", [("c1", 1), ("C3", 3), ("d2", 4), ("D5", 10)])
def test_operators_form_the_group_in_relion_convention(name, order):
    ops = symmetry_operators(name)
    assert ops.shape == (order, 3, 3)
    assert np.allclose(ops[0], np.eye(3))
    assert np.allclose(np.einsum("gij,gkj->gik", ops, ops), np.eye(3), atol=1e-9)
    # closed under products, no duplicates
    flat = ops.reshape(order, 9)
    for a in ops:
        for b in ops:
            assert np.abs(flat - (a @ b).ravel()).sum(1).min() < 1e-9
    kind, n = parse_symmetry(name)
    if n > 1:   # the n-fold is about z; Dn's 2-fold about x
        rz = np.array([[np.cos(2 * np.pi / n), -np.sin(2 * np.pi / n), 0],
                       [np.sin(2 * np.pi / n), np.cos(2 * np.pi / n), 0], [0, 0, 1]])
        assert np.abs(flat - rz.ravel()).sum(1).min() < 1e-9
    if kind == "d":
        assert np.abs(flat - np.diag([1.0, -1, -1]).ravel()).sum(1).min() < 1e-9


@pytest.mark.parametrize("bad", ["", "c0", "d1", "i2", "o", "c3x", None])
def test_unsupported_symmetry_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="Cn .* or Dn"):
        parse_symmetry(bad)


def test_expanded_poses_project_the_symmetric_map_identically():
    """A·R_gᵀ is an equally valid pose of a symmetric map: same projection."""
    rng = np.random.default_rng(0)
    sub = np.column_stack([rng.normal(0, 5, (40, 3)) + [15, 0, 4], np.ones(40),
                           np.full(40, 2.0)])
    ops = symmetry_operators("d3")
    sym = np.concatenate([np.column_stack([sub[:, :3] @ R.T, sub[:, 3:]]) for R in ops])
    n = 5
    p = Particles(np.arange(10, 10 + n), ["none.mrcs"], np.zeros(n, np.int32), np.arange(n),
                  random_rotations(n, rng), rng.normal(0, 2, (n, 2)), np.zeros((n, 7)),
                  2.0, 48)
    e, src, copy = expand_particles(p, "d3")
    assert len(e) == 6 * n and np.array_equal(e.ids, np.arange(1, 6 * n + 1))
    assert np.array_equal(src, np.repeat(p.ids, 6)) and np.array_equal(copy, np.tile(
        np.arange(6), n))
    g = torch.tensor(sym, dtype=torch.float32)
    ft = project(g, torch.tensor(e.rotations, dtype=torch.float32),
                 torch.tensor(e.shifts, dtype=torch.float32), 48, 2.0).reshape(n, 6, -1)
    assert (ft - ft[:, :1]).abs().max() < 1e-3 * ft.abs().max()
    # ... while the asymmetric subunit alone projects differently per copy
    one = project(torch.tensor(sub, dtype=torch.float32),
                  torch.tensor(e.rotations, dtype=torch.float32),
                  torch.tensor(e.shifts, dtype=torch.float32), 48, 2.0).reshape(n, 6, -1)
    assert (one - one[:, :1]).abs().max() > 0.1 * one.abs().max()


@pytest.mark.parametrize("name", ["c3", "d2"])
def test_asymmetric_unit_is_one_whole_subunit_and_its_copies_tile_the_model(name):
    m = SymmetricModel(data_path("1hvr.pdb"), SimulationSettings(),
                       Heterogeneity(symmetry=name, subunit="A"))
    centers, amp = m.params[:, :3], m.params[:, 3]
    asu = asu_mask(centers, amp, name)
    per_copy = len(m.sub.params)
    subunit = np.repeat(np.arange(m.copies), per_copy)
    # one subunit, whole (a few atoms at the interface may fall on the other side)
    best = np.bincount(subunit[asu], minlength=m.copies).max()
    assert best >= 0.97 * per_copy and asu.sum() <= 1.03 * per_copy, (best, asu.sum())
    # the G images of the ASU cover every atom once: apply R_g to the ASU atoms
    ops = symmetry_operators(name)
    covered = np.concatenate([centers[asu] @ R.T for R in ops])
    from scipy.spatial import cKDTree
    d, _ = cKDTree(covered).query(centers)
    assert np.quantile(d, 0.99) < 0.01


def test_training_on_expanded_particles_gives_each_subunit_its_latent(tmp_path):
    """C2 dimer of 1hvr chain A, the flap domain (residues 43-78) of each
    subunit swinging 0-30° on its own: after expansion each copy's latent
    follows the subunit it sees and not the other one."""
    het = Heterogeneity(move="A:43-78", motion="rotate", amount=30.0, symmetry="c2",
                        subunit="A")
    out = str(tmp_path / "sim")
    star = simulate(data_path("1hvr.pdb"), out,
                    SimulationSettings(n_particles=700, box=32, apix=3.6, snr=1.0, seed=3),
                    het)
    th = ["--threads", "2"]
    assert cli.main(th + ["reconstruct", "--particles", star, "--out-dir", out + "/rec"]) == 0
    assert cli.main(th + ["fit", "--map", out + "/rec/map.mrc", "--resolution", "8",
                          "--out-dir", out + "/fit"]) == 0
    assert cli.main(th + ["train", "--particles", star, "--gmm", out + "/fit/gmm.npz",
                          "--out-dir", out + "/train", "--symmetry", "c2",
                          "--latent-dim", "2", "--epochs", "6", "--max-res", "8",
                          "--latent-kl", "0.005"]) == 0
    import json
    assert json.load(open(out + "/train/training.json"))["config"]["latent_kl"] == 0.005
    lat = np.load(out + "/train/latents.npz")
    truth = np.load(out + "/ground_truth.npz")["conformation"]     # (n, 2)
    assert len(lat["z"]) == 2 * 700 and np.array_equal(lat["ids"], np.arange(1, 1401))
    expanded = Particles.load(out + "/train/particles_expanded.npz")
    assert np.array_equal(expanded.ids, lat["ids"])
    from sklearn.decomposition import PCA
    pc = PCA(1).fit_transform(lat["z"])[:, 0]
    src, copy = lat["source_ids"] - 1, lat["copies"]
    for k in (0, 1):
        sel = copy == k
        rho = [abs(spearmanr(pc[sel], truth[src[sel], j])[0]) for j in (0, 1)]
        assert max(rho) >= 0.7 and min(rho) <= 0.15, (k, rho)
    # the two copies see different subunits
    seen = [np.argmax([abs(spearmanr(pc[copy == k], truth[src[copy == k], j])[0])
                       for j in (0, 1)]) for k in (0, 1)]
    assert seen[0] != seen[1]


def test_cli_rejects_an_unsupported_symmetry(tmp_path, capsys):
    assert cli.main(["train", "--particles", str(tmp_path / "x.npz"), "--gmm", "g.npz",
                     "--out-dir", str(tmp_path), "--symmetry", "i1"]) != 0
    assert "unsupported symmetry" in capsys.readouterr().err
