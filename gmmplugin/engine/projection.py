"""Batched analytic projection of GMMs in Fourier space.

A Gaussian (c, A, s) projects along the rotation ``A_rot`` to a 2D Gaussian at
``u = (A_rot c)[:2] - origin`` (``origin`` = RELION shift, Å) with line
integral ``A sqrt(2π) s``. Its centred DFT on a D-pixel grid of ``apix`` Å is

    F(k) = A (2π)^{3/2} s³ / apix² · exp(-2π² s² |k|²) · exp(-2πi k·u),

i.e. the DFT of the sampled projection image (aliasing neglected, exact to
~1e-5 for s ≥ 1.5 px). The kernel is separable in kx and ky, so a whole image
is one matrix product over the N Gaussians of per-axis factors
``f_j = exp(-α j² - iθ j)`` at the integer frequencies ``j = 0 … D//2``, with
``θ = 2π u / (D apix)`` and ``α = 2π² s² / (D apix)²``.

How the work is kept in the matrix product:

* Only ``j >= 0`` is computed on either axis. Along ky the negative
  frequencies are conjugates, ``f_{-j} = conj(f_j)``, so with the y factor
  split as ``Y = Yr + i Yi`` the rows ``+j`` and ``-j`` of the image are
  ``P ± iQ`` with ``P = Σ Yr X`` and ``Q = Σ Yi X``. One real GEMM
  ``[Yr Yi]ᵀ [Xr Xi]`` of size (2H × N) · (N × 2H), H = D//2 + 1, gives both:
  half the flops of the complex product ``Yᵀ X`` over all D rows.
* The factors cost no transcendental per frequency. With ``j = a·b + r``
  (b ≈ √H), the phase ``exp(-iθj)`` is the product of ``exp(-iθ a b)`` and
  ``exp(-iθ r)``, each evaluated directly for ~√H values, so the phase of
  every frequency costs one complex multiply and its error stays a few ulp
  at any box size (no running products). The Gaussian envelope
  ``exp(-α j²)`` is the same on both axes and is evaluated once per
  Gaussian and frequency (a real exp) and shared.
* Elementwise passes over the (B, N, H) factors are memory bound, so the
  forward writes them in place and the backward is written out by hand
  (``_AxisProduct``): the gradients with respect to θ, α and the weight are
  sums over j of ``g · conj(f)`` weighted by ``j``, ``j²`` and 1, i.e. one
  elementwise pass and one small matrix product per axis instead of the
  several saved intermediates autograd would keep. Double backward is not
  supported.

Everything is plain torch and runs unchanged on CPU and GPU.
"""
import math

import numpy as np
import torch

from .gmm import AMP, WIDTH


def _phases(theta, j):
    """exp(-iθ j) for the integer frequencies ``j`` (1-D), shape (..., len(j))."""
    arg = theta[..., None] * j
    return torch.complex(torch.cos(arg), -torch.sin(arg))


def _axis_factor(theta, env, weight=None):
    """f_j = [weight ·] env_j · exp(-iθ j), j = 0 … H-1, as a contiguous complex
    (..., H) tensor; ``env`` (..., H) real. Phases by blocks: j = a·b + r."""
    H = env.shape[-1]
    b = max(1, int(math.ceil(math.sqrt(H))))
    n_full, rest = divmod(H, b)
    j = torch.arange(max(b, (n_full + (rest > 0)) * b), device=env.device,
                     dtype=env.dtype)
    inner = _phases(theta, j[:b])                                    # (..., b)
    outer = _phases(theta, j[:n_full + (rest > 0)] * b)              # (..., n_blocks)
    if weight is not None:
        outer = outer * weight[..., None]
    out = torch.empty(env.shape, dtype=inner.dtype, device=env.device)
    if n_full:
        torch.mul(outer[..., :n_full, None], inner[..., None, :],
                  out=out[..., :n_full * b].unflatten(-1, (n_full, b)))
    if rest:
        torch.mul(outer[..., n_full:], inner[..., :rest], out=out[..., n_full * b:])
    torch.view_as_real(out).mul_(env[..., None])
    return out


def _factor_grads(grad_conj, f, jw):
    """Weighted sums over j of conj(g_j)·f_j, (..., 3) = that product's real view
    (..., 2H) times ``jw``; ``grad_conj`` = conj(g), complex (..., H), is
    overwritten."""
    q_conj = grad_conj.mul_(f)
    return torch.view_as_real(q_conj).flatten(-2) @ jw


class _AxisProduct(torch.autograd.Function):
    """R = [Yr Yi]ᵀ [Xr Xi] with X = f(θx, α), Y = w · f(θy, α) (see module
    docstring); inputs (B, N) each, output (B, 2H, 2H) real, rows/columns
    interleaved (j, re/im)."""

    @staticmethod
    def forward(ctx, theta_x, theta_y, alpha, weight, H):
        j = torch.arange(H, device=alpha.device, dtype=alpha.dtype)
        env = torch.mul(alpha[..., None], -(j * j))
        env.exp_()
        x = _axis_factor(theta_x, env)
        u = _axis_factor(theta_y, env)
        y = u * weight[..., None]
        del env
        xr = torch.view_as_real(x).flatten(-2)                      # (B, N, 2H)
        yr = torch.view_as_real(y).flatten(-2)
        ctx.save_for_backward(x, u, y, weight)
        return torch.bmm(yr.transpose(1, 2), xr)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, u, y, weight = ctx.saved_tensors
        H = x.shape[-1]
        xr = torch.view_as_real(x).flatten(-2)
        yr = torch.view_as_real(y).flatten(-2)
        # conj(g) straight from the GEMM: negate the columns (rows) of grad that
        # belong to imaginary parts, so that no conjugate copy is needed below
        sign = torch.ones(H, 2, device=grad.device, dtype=grad.dtype)
        sign[:, 1] = -1
        sign = sign.flatten()
        gx = torch.view_as_complex(torch.bmm(yr, grad * sign).unflatten(-1, (H, 2)))
        gy = torch.view_as_complex(
            torch.bmm(xr, grad.transpose(1, 2) * sign).unflatten(-1, (H, 2)))
        j = torch.arange(H, device=x.device, dtype=grad.dtype)
        # f_j = c·exp(-αj² - iθj): ∂f/∂θ = -ij f, ∂f/∂α = -j² f, ∂f/∂c = f/c, so
        # with conj(q_j) = conj(g_j) f_j:  dθ = Σ j Im conj(q), dα = -Σ j² Re q,
        # dc·c = Σ Re q.  Columns of jw: (j, re) -> [1, -j², 0], (j, im) -> [0, 0, j]
        jw = torch.zeros(H, 2, 3, device=x.device, dtype=grad.dtype)
        jw[:, 0, 0] = 1
        jw[:, 0, 1] = -j * j
        jw[:, 1, 2] = j
        jw = jw.flatten(0, 1)
        sx = _factor_grads(gx, x, jw)                                # (B, N, 3)
        sy = _factor_grads(gy, u, jw)
        d_theta_x = sx[..., 2]
        d_theta_y = weight * sy[..., 2]
        d_alpha = sx[..., 1] + weight * sy[..., 1]
        return d_theta_x, d_theta_y, d_alpha, sy[..., 0], None


def project(params, rotations, shifts, box, apix):
    """Centred half-plane FTs of projections, (B, box, box//2+1) complex.

    params:    (N, 5) shared or (B, N, 5) per-particle GMM (Å units).
    rotations: (B, 3, 3) RELION matrices A (map -> projection frame).
    shifts:    (B, 2) RELION origins (x, y) in Å, or None; image(r) = P(r + origin).
    """
    B = rotations.shape[0]
    if params.dim() == 2:
        params = params.unsqueeze(0).expand(B, -1, -1)
    centers = params[..., :3]
    u = torch.einsum("bij,bnj->bni", rotations[:, :2, :], centers)  # (B, N, 2)
    if shifts is not None:
        u = u - shifts[:, None, :]
    s = params[..., WIDTH]
    weight = params[..., AMP] * (2 * np.pi) ** 1.5 * s ** 3 / apix ** 2  # (B, N)

    dk = 1.0 / (box * apix)                                # frequency step, 1/Å
    theta = (2 * np.pi * dk) * u                           # phase step per axis
    alpha = (2 * np.pi ** 2 * dk ** 2) * s ** 2            # envelope: exp(-α j²)
    H = box // 2 + 1
    r = _AxisProduct.apply(theta[..., 0].contiguous(), theta[..., 1].contiguous(),
                           alpha.contiguous(), weight.contiguous(), H)
    r = r.unflatten(-1, (H, 2)).unflatten(1, (H, 2))      # (B, jy, re/im, jx, re/im)
    yr_x, yi_x = r[:, :, 0], r[:, :, 1]                    # Σ Yr X, Σ Yi X: (B, jy, jx, 2)
    # i·(a + ib) = -b + ia
    i_yi_x = torch.stack([-yi_x[..., 1], yi_x[..., 0]], dim=-1)
    pos = yr_x + i_yi_x                                    # ky = +j
    neg = yr_x - i_yi_x                                    # ky = -j
    # fftfreq order along ky: 0, 1, …, (D-1)//2, then -(D//2), …, -1
    n_pos = (box + 1) // 2
    full = torch.cat([pos[:, :n_pos], neg[:, 1:box - n_pos + 1].flip(1)], dim=1)
    return torch.view_as_complex(full.contiguous())       # (B, D, H) complex


def project_images(params, rotations, shifts, box, apix, ctf=None):
    """Real-space projection images (B, box, box), optionally CTF-modulated."""
    from .fourier import image_ift
    ft = project(params, rotations, shifts, box, apix)
    if ctf is not None:
        ft = ft * ctf
    return image_ift(ft, box)
