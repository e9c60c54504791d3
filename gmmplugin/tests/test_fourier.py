import numpy as np
import torch

from gmmplugin.engine.fourier import crop_images, crop_map, frc, fsc, resolution_at
from gmmplugin.engine.geometry import random_rotations
from gmmplugin.engine.gmm import render_volume_fourier
from gmmplugin.engine.projection import project, project_images


def _params(n=30, seed=0):
    rng = np.random.default_rng(seed)
    p = np.zeros((n, 5))
    p[:, :3] = rng.uniform(-10, 10, (n, 3))
    p[:, 3] = rng.uniform(0.5, 2, n)
    p[:, 4] = rng.uniform(3, 5, n)
    return torch.tensor(p)


def test_crop_images_equals_projection_at_coarser_sampling():
    p = _params()
    A = torch.tensor(random_rotations(3, np.random.default_rng(1)))
    sh = torch.zeros(3, 2, dtype=torch.float64)
    fine = project_images(p, A, sh, 64, 1.0)
    coarse = project_images(p, A, sh, 32, 2.0)
    # projections are line integrals: same values at the coarser sampling
    assert torch.allclose(crop_images(fine, 32), coarse, atol=1e-6 * coarse.abs().max())


def test_crop_map_matches_rendering():
    p = _params()
    fine = render_volume_fourier(p, 48, 1.0)
    coarse = render_volume_fourier(p, 24, 2.0)
    assert np.abs(crop_map(fine, 24) - coarse).max() < 1e-6 * coarse.abs().max()


def test_frc_scale_invariant_and_sensitive():
    p = _params()
    A = torch.tensor(random_rotations(4, np.random.default_rng(2)))
    sh = torch.zeros(4, 2, dtype=torch.float64)
    a = project(p, A, sh, 32, 2.0)
    assert torch.allclose(frc(a, 3.7 * a, 32, 2.0), torch.ones(4, dtype=torch.float64))
    b = project(p, A.flip(0), sh, 32, 2.0)   # other orientations
    assert (frc(a, b, 32, 2.0, res_low=50, res_high=6) < 0.7).all()


def test_fsc_and_resolution():
    v = render_volume_fourier(_params(), 32, 2.0).numpy()
    assert np.allclose(fsc(v, 2 * v), 1.0)
    noisy = v + np.random.default_rng(0).normal(0, v.std(), v.shape)
    curve = fsc(v, noisy)
    assert curve[1] > 0.9 and curve[-1] < 0.3
    res = resolution_at(curve, 32, 2.0)
    assert 4.0 <= res < 64.0
