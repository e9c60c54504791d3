import gemmi
import numpy as np
import pytest
import torch

from gmmplugin.engine.atoms import gmm_from_atoms, select, read_atoms
from gmmplugin.engine.gmm import Gmm, render_volume, render_volume_fourier

from gmmplugin.tests import data_path

PDB = data_path("5a7u.pdb")


def test_save_load_round_trip(tmp_path):
    g = Gmm(np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32) ** 2 + 1,
            apix=1.3, box=64, resolution=8.0)
    g.save(tmp_path / "g.npz")
    h = Gmm.load(tmp_path / "g.npz")
    assert np.array_equal(g.params, h.params) and (h.apix, h.box, h.resolution) == (1.3, 64, 8.0)


def test_load_rejects_bad_files(tmp_path):
    np.savez(tmp_path / "bad.npz", params=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not a GMM"):
        Gmm.load(tmp_path / "bad.npz")
    p = np.ones((3, 5)); p[1, 2] = np.nan
    np.savez(tmp_path / "nan.npz", params=p, apix=1.0, box=8, resolution=0.0)
    with pytest.raises(ValueError, match="NaN"):
        Gmm.load(tmp_path / "nan.npz")


def test_render_real_space_matches_fourier_for_wide_gaussians():
    p = torch.tensor([[1.0, 2, -3, 1, 3.0], [5, -2, 0, 2, 2.5]], dtype=torch.float64)
    a, b = render_volume(p, 40, 1.0), render_volume_fourier(p, 40, 1.0)
    assert (a - b).abs().max() < 1e-4 * a.abs().max()
    # a Gaussian's peak value is its amplitude, at its centre voxel
    q = torch.tensor([[0.0, 0.0, 0.0, 2.5, 2.0]], dtype=torch.float64)
    v = render_volume(q, 16, 1.0)
    assert abs(v[8, 8, 8].item() - 2.5) < 1e-9 and v.argmax().item() == (8 * 16 + 8) * 16 + 8


def test_render_axes_order():
    q = torch.tensor([[3.0, -2.0, 5.0, 1.0, 1.0]], dtype=torch.float64)
    v = render_volume(q, 16, 1.0)
    z, y, x = np.unravel_index(v.argmax().item(), v.shape)
    assert (x - 8, y - 8, z - 8) == (3, -2, 5)


def test_pseudo_atoms_written(tmp_path):
    g = gmm_from_atoms(PDB, apix=1.0, box=40)
    for ext in ("pdb", "cif"):
        g.write_points(tmp_path / ("p." + ext))
        st = gemmi.read_structure(str(tmp_path / ("p." + ext)))
        pos = np.array([a.pos.tolist() for r in st[0].all() for a in [r.atom]])
        assert len(pos) == len(g)
        assert np.allclose(pos - 20.0, g.centers, atol=1e-3)


def test_atoms_drop_water_and_hydrogen_and_select():
    xyz, z, chains, resnum = read_atoms(data_path("1hvr.pdb"))
    assert (z > 1).all() and len(xyz) > 1500
    sel = select(chains, resnum, "A:1-10")
    assert sel.any() and set(chains[sel]) == {"A"} and resnum[sel].max() <= 10
    with pytest.raises(ValueError):
        select(chains, resnum, "Q")
