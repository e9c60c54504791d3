"""The analytic Fourier projector against a brute-force real-space projection."""
import numpy as np
import torch

from gmmplugin.engine.fourier import image_ft
from gmmplugin.engine.geometry import euler_to_matrix
from gmmplugin.engine.projection import project


def brute_force_image(params, A, origin, box, apix):
    """image(r) = P(r + origin), P(x, y) = ∫ V(Aᵀ (x, y, z)) dz, V the GMM density,
    by direct summation on a fine z grid (no Fourier, no separability)."""
    c = (np.arange(box) - box // 2) * apix
    dz = apix / 2
    y, x, z = np.meshgrid(c, c, np.arange(-2 * box, 2 * box) * dz, indexing="ij")
    pts = np.stack([x + origin[0], y + origin[1], z], -1) @ A   # rows: (Aᵀ p)ᵀ
    val = np.zeros(x.shape)
    for cx, cy, cz, a, s in params:
        val += a * np.exp(-((pts - [cx, cy, cz]) ** 2).sum(-1) / (2 * s * s))
    return val.sum(-1) * dz


def _gmm(n, rng):
    p = np.zeros((n, 5))
    p[:, :3] = rng.uniform(-8, 8, (n, 3))
    p[:, 3] = rng.uniform(0.5, 2, n)
    p[:, 4] = rng.uniform(3, 5, n)
    return p


def test_projection_equals_brute_force():
    rng = np.random.default_rng(0)
    box, apix = 48, 1.5
    params = _gmm(12, rng)
    A = euler_to_matrix([30.0, -100.0], [50.0, 120.0], [10.0, 200.0])
    origins = np.array([[2.3, -1.1], [0.0, 3.0]])
    images = np.stack([brute_force_image(params, A[i], origins[i], box, apix)
                       for i in range(2)])
    want = image_ft(torch.tensor(images))
    got = project(torch.tensor(params), torch.tensor(A), torch.tensor(origins), box, apix)
    rel = ((got - want).abs().norm() / want.abs().norm()).item()
    assert rel < 1e-4, rel


def test_shared_and_per_particle_params_agree():
    rng = np.random.default_rng(3)
    params = torch.tensor(_gmm(20, rng))
    A = torch.tensor(euler_to_matrix([1.0, 50.0, 99.0], [20.0, 90.0, 160.0], [5, 6, 7]))
    sh = torch.tensor(rng.normal(size=(3, 2)))
    shared = project(params, A, sh, 32, 2.0)
    per = project(params[None].repeat(3, 1, 1), A, sh, 32, 2.0)
    assert torch.allclose(shared, per, atol=1e-10)


def test_gradients_pass_finite_differences():
    rng = np.random.default_rng(4)
    params = torch.tensor(_gmm(4, rng), requires_grad=True)
    A = torch.tensor(euler_to_matrix([10.0, 70.0], [30.0, 100.0], [0.0, 45.0]),
                     requires_grad=True)
    sh = torch.tensor(rng.normal(size=(2, 2)), requires_grad=True)

    def f(p, a, s):
        out = project(p, a, s, 12, 3.0)
        return torch.view_as_real(out)

    assert torch.autograd.gradcheck(f, (params, A, sh), eps=1e-6, atol=1e-5, rtol=1e-4)
