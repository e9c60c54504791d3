"""The analytic Fourier projector against a brute-force real-space projection."""
import numpy as np
import pytest
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


# --- the factor construction against the direct formula -------------------------------
def direct_reference(params, A, origins, box, apix):
    """F = Σ_n w_n exp(-2π²s²|k|² - 2πi k·u) evaluated term by term in float64 numpy
    with exact frequencies: the formula project() implements, without its
    factorisation, blocked phases, symmetry or hand-written backward."""
    params, A, origins = (np.asarray(a, dtype=np.float64) for a in (params, A, origins))
    if params.ndim == 2:
        params = np.broadcast_to(params, (len(A),) + params.shape)
    u = np.einsum("bij,bnj->bni", A[:, :2], params[..., :3]) - origins[:, None]
    s = params[..., 4]
    w = params[..., 3] * (2 * np.pi) ** 1.5 * s ** 3 / apix ** 2
    ky, kx = np.fft.fftfreq(box, apix), np.fft.rfftfreq(box, apix)
    fy = w[..., None] * np.exp(-2 * np.pi ** 2 * (s[..., None] * ky) ** 2
                               - 2j * np.pi * u[..., 1, None] * ky)
    fx = np.exp(-2 * np.pi ** 2 * (s[..., None] * kx) ** 2 - 2j * np.pi * u[..., 0, None] * kx)
    return np.einsum("bny,bnx->byx", fy, fx)


def _scene(rng, box, apix, n=40, batch=3, per_particle=False):
    """Centres anywhere in the box (±0.45 D apix), widths from under a pixel to
    several pixels, one Gaussian of zero amplitude."""
    shape = (batch, n) if per_particle else (n,)
    p = np.zeros(shape + (5,))
    p[..., :3] = rng.uniform(-0.45, 0.45, shape + (3,)) * box * apix
    p[..., 3] = rng.uniform(-0.5, 2.0, shape)
    p[..., 4] = rng.uniform(0.6, 5.0, shape) * apix
    p[..., 0, 3] = 0.0
    A = euler_to_matrix(rng.uniform(-180, 180, batch), rng.uniform(0, 180, batch),
                        rng.uniform(-180, 180, batch))
    return p, A, rng.normal(scale=3.0, size=(batch, 2))


# Tolerance: max |error| / max |F| over the image.  float64 reaches ~1e-15; float32 is
# bounded by the rounding of the phase argument 2π k·u (up to ~π D/2 rad), a few 1e-7.
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


@pytest.mark.parametrize("box", [2, 3, 8, 9, 33, 64, 65, 128, 256])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("per_particle", [False, True])
def test_matches_direct_formula(box, dtype, per_particle):
    rng = np.random.default_rng(box)
    apix = 1.3
    p, A, sh = _scene(rng, box, apix, per_particle=per_particle)
    want = direct_reference(p, A, sh, box, apix)
    got = project(*(torch.tensor(a, dtype=dtype) for a in (p, A, sh)), box, apix)
    assert got.shape == (3, box, box // 2 + 1)
    assert got.dtype == (torch.complex128 if dtype == torch.float64 else torch.complex64)
    err = np.abs(got.numpy().astype(np.complex128) - want).max() / np.abs(want).max()
    assert err < TOL[dtype], err


def test_without_shifts_is_zero_shift():
    rng = np.random.default_rng(7)
    p, A, _ = _scene(rng, 20, 1.0)
    args = torch.tensor(p), torch.tensor(A)
    assert torch.equal(project(*args, None, 20, 1.0),
                       project(*args, torch.zeros(3, 2, dtype=torch.float64), 20, 1.0))


@pytest.mark.parametrize("box", [10, 11])
def test_gradcheck_per_particle_params_with_zero_amplitude(box):
    """Double precision finite differences, through every input; one Gaussian has
    amplitude 0, where a gradient through |F| and its phase would be lost."""
    rng = np.random.default_rng(box)
    p, A, sh = _scene(rng, box, 2.0, n=4, batch=2, per_particle=True)
    p[..., 4] = rng.uniform(1.5, 4.0, (2, 4)) * 2.0
    args = tuple(torch.tensor(a, requires_grad=True) for a in (p, A, sh))
    assert torch.autograd.gradcheck(
        lambda *a: torch.view_as_real(project(*a, box, 2.0)), args,
        eps=1e-6, atol=1e-6, rtol=1e-5)


def _direct_torch(params, A, origins, box, apix):
    """The direct formula in torch (autograd differentiates it term by term)."""
    B = A.shape[0]
    if params.dim() == 2:
        params = params.unsqueeze(0).expand(B, -1, -1)
    u = torch.einsum("bij,bnj->bni", A[:, :2], params[..., :3]) - origins[:, None]
    s = params[..., 4]
    w = params[..., 3] * (2 * np.pi) ** 1.5 * s ** 3 / apix ** 2
    dt = params.dtype
    ky = torch.tensor(np.fft.fftfreq(box, apix), dtype=dt)
    kx = torch.tensor(np.fft.rfftfreq(box, apix), dtype=dt)

    def f(k, c):
        return torch.exp(torch.complex(-2 * np.pi ** 2 * (s[..., None] * k) ** 2,
                                       -2 * np.pi * c[..., None] * k))

    fy = w[..., None] * f(ky, u[..., 1])
    return torch.einsum("bny,bnx->byx", fy.to(f(kx, u[..., 0]).dtype), f(kx, u[..., 0]))


@pytest.mark.parametrize("box", [32, 33, 64])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_equal_direct_formula(box, dtype):
    """Shared params (N, 5): gradients of a random linear functional of the image
    w.r.t. params, rotations and shifts agree with autograd through the formula."""
    rng = np.random.default_rng(box + 1)
    apix = 1.5
    p, A, sh = _scene(rng, box, apix, n=30, batch=4)
    p[:, 4] = rng.uniform(1.0, 4.0, 30) * apix
    weights = torch.tensor(rng.normal(size=(4, box, box // 2 + 1, 2)), dtype=dtype)
    grads = []
    for fn in (project, _direct_torch):
        args = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in (p, A, sh)]
        (torch.view_as_real(fn(*args, box, apix)) * weights).sum().backward()
        grads.append([a.grad for a in args])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for got, want in zip(*grads):
        err = ((got - want).abs().max() / want.abs().max()).item()
        assert err < tol, err


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_blocks_of_gaussians(monkeypatch, dtype):
    """Factors built and accumulated a few Gaussians at a time (uneven last block),
    with zero and subnormal weights in later blocks: same image and gradients."""
    import gmmplugin.engine.projection as projection
    rng = np.random.default_rng(11)
    box, apix = 24, 1.5
    p, A, sh = _scene(rng, box, apix, n=37, batch=2, per_particle=True)
    p[..., 4] = rng.uniform(1.0, 4.0, (2, 37)) * apix
    p[1, 20, 3] = 0.0
    p[0, 33, 3] = 1e-40
    weights = torch.tensor(rng.normal(size=(2, box, box // 2 + 1, 2)), dtype=dtype)
    results = []
    for elements in (None, 2 * 2 * (box // 2 + 1) * 5):   # one block; blocks of 5
        if elements is not None:
            monkeypatch.setitem(projection.CHUNK_ELEMENTS, "cpu", elements)
            assert len(projection._chunks(2, box // 2 + 1, 37, "cpu")) == 8
        args = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in (p, A, sh)]
        out = project(*args, box, apix)
        (torch.view_as_real(out) * weights).sum().backward()
        results.append([out.detach()] + [a.grad for a in args])
    args = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in (p, A, sh)]
    (torch.view_as_real(_direct_torch(*args, box, apix)) * weights).sum().backward()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for got, one_block in zip(results[1], results[0]):
        assert ((got - one_block).abs().max() / one_block.abs().max()).item() < tol
    for got, want in zip(results[1][1:], [a.grad for a in args]):
        assert ((got - want).abs().max() / want.abs().max()).item() < tol
    # the zero and subnormal amplitudes still get their gradient
    assert results[1][1][1, 20, 3] != 0 and results[1][1][0, 33, 3] != 0


def test_no_gaussians():
    A = torch.eye(3)[None].repeat(2, 1, 1).requires_grad_()
    out = project(torch.zeros(0, 5), A, None, 8, 1.0)
    assert out.shape == (2, 8, 5) and not out.abs().any()
    torch.view_as_real(out).sum().backward()
    assert not A.grad.any()
