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

Building those factors with an exp, cos and sin per Gaussian and frequency
costs more than the matrix product itself on a CPU, so the work is arranged to
leave the product as the main cost:

* Only ``j >= 0`` is computed on either axis. Along ky the negative
  frequencies are conjugates, ``f_{-j} = conj(f_j)``, so with the y factor
  split as ``Y = Yr + i Yi`` the rows ``+j`` and ``-j`` of the image are
  ``P ± iQ`` with ``P = Σ Yr X`` and ``Q = Σ Yi X``. One real GEMM
  ``[Yr; Yi] [Xr; Xi]ᵀ`` of size (2H × N) · (N × 2H), H = D//2 + 1, gives
  both: half the flops of the complex product over all D rows.
* No transcendental per frequency for the phase. With ``j = a·b + r``
  (b ≈ √H), ``exp(-iθj) = exp(-iθab) · exp(-iθr)``, each factor evaluated
  directly for ~√H values, so every frequency costs one complex multiply
  and the error stays a few ulp at any box size (no running products, which
  would accumulate round-off along j). The Gaussian envelope ``exp(-α j²)``
  is the same on both axes: one real exp per Gaussian and frequency, shared.
* The factors are laid out (B, H, re/im, N), N contiguous: every elementwise
  pass is a long vectorised loop in real arithmetic, and the GEMM takes
  them as they are.
* The Gaussian's weight is folded into the few block phases of the y factor,
  so no weighted copy of a factor is made.
* On the CPU the Gaussians are taken a block of a few hundred at a time: the
  block's factors (a few MB) stay in cache, their products are accumulated
  into the GEMM result, and the backward builds them again block by block
  instead of keeping (B, H, N) tensors between the passes. Fresh large
  tensors cost the CPU page faults on every call; recomputing costs less.
  On a GPU all Gaussians form one block (still rebuilt in the backward).
* The backward is written out (``_AxisProduct``): the gradients with respect
  to θ, α and the weight are sums over j of ``conj(g_j) f_j`` weighted by
  ``j``, ``j²`` and 1 (the last divided by the weight; where the weight is
  zero, y is rebuilt with weight 1 and the other sums scaled back), so each
  axis costs one GEMM, one elementwise pass and one small matrix product,
  and autograd keeps only (B, N) tensors. It is first-order only (no double
  backward).

Everything is plain torch and runs unchanged on CPU and GPU.
"""
import math

import numpy as np
import torch

from .gmm import AMP, WIDTH


def _phases(theta, j):
    """cos and -sin of θ j for the integer frequencies ``j`` (1-D): the real and
    imaginary parts of exp(-iθ j), each (B, len(j), N) for θ (B, N)."""
    arg = j[:, None] * theta[:, None, :]
    return torch.cos(arg), torch.sin(arg).neg_()


def _axis_factor(theta, env, weight=None, out=None):
    """f_j = [weight ·] env_j · exp(-iθ j), j = 0 … H-1, for θ (B, N) and the
    envelope ``env`` (B, H, N): a real (B, H, 2, N) tensor (real and imaginary
    parts of row j at [:, j, 0] and [:, j, 1]). Phases by blocks, j = a·b + r:
    exp(-iθj) = exp(-iθab)·exp(-iθr), each evaluated for ~√H values."""
    B, H, N = env.shape
    b = max(1, int(math.ceil(math.sqrt(H))))
    n_full, rest = divmod(H, b)
    c_in, s_in = _phases(theta, torch.arange(b, device=env.device, dtype=env.dtype))
    c_out, s_out = _phases(theta, torch.arange(n_full + (rest > 0), device=env.device,
                                               dtype=env.dtype) * b)   # (B, blocks, N)
    if weight is not None:
        c_out, s_out = c_out * weight[:, None, :], s_out * weight[:, None, :]
    if out is None:
        out = torch.empty(B, H, 2, N, device=env.device, dtype=env.dtype)
    # rows [lo, hi) = blocks a0 … a0+na-1 of nb rows each: the full blocks, then the rest
    for lo, hi, a0, na, nb in ((0, n_full * b, 0, n_full, b), (n_full * b, H, n_full, 1, rest)):
        if hi == lo:
            continue
        ca, sa = c_out[:, a0:a0 + na, None], s_out[:, a0:a0 + na, None]   # (B, na, 1, N)
        cr, sr = c_in[:, None, :nb], s_in[:, None, :nb]                    # (B, 1, nb, N)
        re = out[:, lo:hi, 0].unflatten(1, (na, nb))
        im = out[:, lo:hi, 1].unflatten(1, (na, nb))
        torch.mul(ca, cr, out=re)                   # (ca + i sa)(cr + i sr)
        re.addcmul_(sa, sr, value=-1)
        torch.mul(ca, sr, out=im)
        im.addcmul_(sa, cr)
    out.mul_(env[:, :, None, :])
    return out


def _factor_grads(grad, f, jw, im):
    """jw @ [Re; Im] of conj(g_j)·f_j, (B, 3, N), for the gradient g and factor f
    as (B, H, 2, N) real tensors; ``grad`` and ``im`` (B, H, N) are overwritten."""
    gr, gi = grad[:, :, 0], grad[:, :, 1]
    fr, fi = f[:, :, 0], f[:, :, 1]
    torch.mul(gr, fi, out=im)                       # gr fi - gi fr
    im.addcmul_(gi, fr, value=-1)
    re = gr.mul_(fr).addcmul_(gi, fi)               # gr fr + gi fi
    H = f.shape[1]
    return jw[:, :H] @ re + jw[:, H:] @ im


def _envelope(alpha, H, out=None):
    """exp(-α j²), j = 0 … H-1, as (B, H, N) for α (B, N)."""
    j = torch.arange(H, device=alpha.device, dtype=alpha.dtype)
    return torch.mul((j * j)[:, None], alpha[:, None, :].neg(), out=out).exp_()


# Elements of one (B, H, 2, chunk) factor block: the Gaussians are processed in
# blocks of columns this size (a few MB, cache-sized) on the CPU, all at once on a GPU.
CHUNK_ELEMENTS = {"cpu": 1 << 20}


def _chunks(B, H, N, device):
    limit = CHUNK_ELEMENTS.get(torch.device(device).type)
    step = N if limit is None else max(1, min(N, limit // (2 * B * H)))
    return [slice(lo, min(N, lo + step)) for lo in range(0, N, step)]


class _Blocks:
    """Buffers for one block of Gaussians, allocated once per pass and reused
    by every block of that size (fresh memory costs page faults on a CPU)."""

    def __init__(self, like, B, H, step):
        self.step, self.bufs, self.like = step, {}, like
        self.shapes = {"env": (B, H), "x": (B, H, 2), "y": (B, H, 2),
                       "gx": (B, 2 * H), "gy": (B, 2 * H), "scratch": (B, H)}

    def __call__(self, name, n):
        shape = self.shapes[name] + (n,)
        if n != self.step:                      # the last, shorter block
            return self.like.new_empty(shape)
        if name not in self.bufs:
            self.bufs[name] = self.like.new_empty(shape)
        return self.bufs[name]


def _block_factors(theta_x, theta_y, alpha, weight, H, blocks):
    """x = f(θx, α), y = w·f(θy, α) for a block of Gaussians, (B, H, 2, n) each."""
    n = alpha.shape[1]
    env = _envelope(alpha, H, out=blocks("env", n))
    return (_axis_factor(theta_x, env, out=blocks("x", n)),
            _axis_factor(theta_y, env, weight, out=blocks("y", n)))


class _AxisProduct(torch.autograd.Function):
    """R = [Yr Yi] [Xr Xi]ᵀ with X = f(θx, α), Y = w · f(θy, α) (see module
    docstring); inputs (B, N) each, output (B, 2H, 2H) real, rows and columns
    in (j, re/im) order. The factors are built block by block of Gaussians and
    accumulated into R; the backward builds them again, so no (B, H, N)
    tensor lives between forward and backward."""

    @staticmethod
    def forward(ctx, theta_x, theta_y, alpha, weight, H):
        B, N = alpha.shape
        ctx.save_for_backward(theta_x, theta_y, alpha, weight)
        ctx.H = H
        r = torch.zeros(B, 2 * H, 2 * H, device=alpha.device, dtype=alpha.dtype)
        chunks = _chunks(B, H, N, alpha.device)
        blocks = _Blocks(alpha, B, H, chunks[0].stop if chunks else 0)
        for c in chunks:
            x, y = _block_factors(theta_x[:, c], theta_y[:, c], alpha[:, c], weight[:, c], H,
                                  blocks)
            r.baddbmm_(y.flatten(1, 2), x.flatten(1, 2).transpose(1, 2))
        return r

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        theta_x, theta_y, alpha, weight = ctx.saved_tensors
        H = ctx.H
        B, N = alpha.shape
        j = torch.arange(H, device=grad.device, dtype=grad.dtype)
        # f_j = c·exp(-αj² - iθj): ∂f/∂θ = -ij f, ∂f/∂α = -j² f, ∂f/∂c = f/c, so
        # with conj(q_j) = conj(g_j) f_j:  dθ = Σ j Im conj(q), dα = -Σ j² Re q,
        # dc·c = Σ Re q.  Rows of jw act on [Re (H rows); Im (H rows)].
        jw = torch.zeros(3, 2, H, device=grad.device, dtype=grad.dtype)
        jw[0, 0] = 1
        jw[1, 0] = -j * j
        jw[2, 1] = j
        jw = jw.flatten(1, 2)
        # dw = Σ Re q(y) / w; where w is (nearly) zero, y has lost the unweighted
        # factor, so dw comes from that factor (weight 1) instead
        tiny = weight.abs() < torch.finfo(weight.dtype).tiny / torch.finfo(weight.dtype).eps
        safe_weight = torch.where(tiny, torch.ones_like(weight), weight)
        sx = torch.empty(B, 3, N, device=grad.device, dtype=grad.dtype)
        sy = torch.empty_like(sx)
        grad_t = grad.transpose(1, 2)
        chunks = _chunks(B, H, N, grad.device)
        blocks = _Blocks(grad, B, H, chunks[0].stop if chunks else 0)
        for c in chunks:
            n = c.stop - c.start
            x, y = _block_factors(theta_x[:, c], theta_y[:, c], alpha[:, c],
                                  safe_weight[:, c], H, blocks)
            # y holds the unweighted factor where w is tiny: there Σ Re q is dw itself,
            # and the factor's gradient is w·(that of the unweighted one)
            gy = torch.bmm(grad, x.flatten(1, 2), out=blocks("gy", n))
            gx = torch.bmm(grad_t, y.flatten(1, 2), out=blocks("gx", n))
            scratch = blocks("scratch", n)
            sy[:, :, c] = _factor_grads(gy.unflatten(1, (H, 2)), y, jw, scratch)
            sx[:, :, c] = _factor_grads(gx.unflatten(1, (H, 2)), x, jw, scratch)
        # sx came from gradients through y built with safe_weight instead of w
        fix = torch.where(tiny, weight, torch.ones_like(weight))
        d_weight = sy[:, 0] / safe_weight
        return (sx[:, 2] * fix, sy[:, 2] * fix, sx[:, 1] * fix + sy[:, 1] * fix,
                d_weight, None)


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
