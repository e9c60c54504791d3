"""Per-particle pose refinement against each particle's own (decoded) GMM.

For every particle, a rotation increment ω (axis-angle, applied in the
projection frame: ``A' = exp([ω]×) · A``, no gimbal lock) and a shift
increment δ (Å) are found by gradient descent (Adam, elementwise, so particles
in a batch do not interact and results do not depend on the batch size) on
a score of the particle against CTF · the projection of its GMM. The increments are kept
inside the user's bounds by rescaling (|ω| ≤ max_angle, |δ| ≤ max_shift).
The score is the correlation of data and prediction over the band with every
Fourier coefficient weighted by the inverse noise power of its ring (estimated
once, from the first WHITENING_SAMPLE particles, so batches stay independent): for Gaussian noise this is the maximum-likelihood pose,
sharper than the ring-averaged FRC (which is kept as ``objective="frc"``).
Coarse to fine: the first COARSE_FRACTION of the iterations use a band ending at twice
the target resolution (wider capture range), the rest the full band.
No randomness: the same input gives the same output.

Keep the input unless the data say otherwise: at the end each particle's
refined pose is compared with its input pose by the log-likelihood gain
(whitened Gaussian noise, best amplitude): ``gain = Σw|d|² (c_out² − c_in²)``.
If the input pose were right, 2·gain would follow χ² with 5 degrees of freedom
(3 rotation + 2 shift), so the refined pose is kept only when 2·gain exceeds
the χ²₅ quantile of the chosen ``significance`` (0 keeps every refined pose).
At low SNR the likelihood is flat over about a degree; without the test a
correct pose would wander within that flat region instead of staying put.

Focused refinement: with a focus mask the Gaussians outside it are projected
at the *input* pose and subtracted from the data (signal subtraction); the
pose is then refined on the masked Gaussians only.
"""
from collections import namedtuple
import time

import numpy as np
from scipy.stats import chi2
import torch

from . import distributed
from .ctf import compute_ctf
from .fourier import (band_mask, crop_images, frc, freq_grid_2d, image_ft,
                      weighted_correlation, whitening_weights)
from .projection import project
from .sampling import crop_box_for

WHITENING_SAMPLE = 512
COARSE_FRACTION = 0.25   # of the iterations at half the resolution (capture range);
                         # the rest at full resolution, where the precision comes from
POSE_DOF = 5             # rotation (3) + in-plane shift (2)

PoseRefinement = namedtuple("PoseRefinement", "rotations shifts frc gain moved rate")
PoseRefinement.__doc__ = """rotations (n,3,3), shifts (n,2) Å, FRC at the returned pose (n,), log-likelihood
gain of the refined over the input pose (n,), moved (n,) bool (the refined
pose was kept), particles/s."""


def skew(w):
    z = torch.zeros_like(w[:, 0])
    return torch.stack([torch.stack([z, -w[:, 2], w[:, 1]], -1),
                        torch.stack([w[:, 2], z, -w[:, 0]], -1),
                        torch.stack([-w[:, 1], w[:, 0], z], -1)], -2)


def _bound(v, limit):
    norm = v.norm(dim=1, keepdim=True)
    return v * torch.clamp(limit / (norm + 1e-12), max=1.0)


class _Refiner:
    """The band, noise whitening and limits shared by every batch of a pose
    refinement, and the refinement of one batch."""

    def __init__(self, particles, max_res, min_res, max_angle, max_shift, batch_size,
                 device, focus, objective):
        self.p, self.max_res, self.min_res, self.objective = particles, max_res, min_res, objective
        self.device = device
        self.box = box = crop_box_for(particles.box, particles.apix, max_res)
        self.apix = apix = particles.apix * particles.box / box
        self.ky, self.kx = freq_grid_2d(box, apix, device)
        self.amax, self.smax = np.deg2rad(max_angle), float(max_shift)
        self.focus = None if focus is None else torch.as_tensor(np.asarray(focus, bool),
                                                                device=device)
        rings, self.sel_fine = band_mask(box, apix, min_res, max_res, device)
        _, self.sel_coarse = band_mask(box, apix, min_res, 2 * max_res, device)
        power = sample_spectra(particles, box, batch_size, device)
        self.w_fine = whitening_weights(power, rings, self.sel_fine)
        self.w_coarse = whitening_weights(power, rings, self.sel_coarse)

    def _data(self, rows, params_fn):
        """(image FTs, CTFs, input rotations and shifts, GMM params) of a batch;
        with a focus, the Gaussians outside it are subtracted from the images."""
        p, dev, box, apix = self.p, self.device, self.box, self.apix
        data = image_ft(crop_images(torch.from_numpy(p.images(rows)).to(dev), box))
        ctf = compute_ctf(self.ky, self.kx, torch.from_numpy(p.ctf[rows]).to(dev))
        if p.phase_flipped:
            ctf = ctf.abs()
        A0 = torch.from_numpy(p.rotations[rows]).float().to(dev)
        s0 = torch.from_numpy(p.shifts[rows]).float().to(dev)
        with torch.no_grad():
            params = params_fn(rows).to(dev).float()
            if params.dim() == 2:
                params = params.unsqueeze(0).expand(len(rows), -1, -1)
            if self.focus is not None:
                rest = params[:, ~self.focus]
                data = data - project(rest, A0, s0, box, apix) * ctf
                params = params[:, self.focus]
        return data, ctf, A0, s0, params

    def _score(self, pred, data, coarse):
        if self.objective == "frc":
            return frc(pred, data, self.box, self.apix, self.min_res,
                       2 * self.max_res if coarse else self.max_res)
        return (weighted_correlation(pred, data, self.w_coarse, self.sel_coarse) if coarse
                else weighted_correlation(pred, data, self.w_fine, self.sel_fine))

    def batch(self, rows, params_fn, iterations, lr_angle, lr_shift, min_gain):
        """(rotations, shifts, FRC at the kept pose, likelihood gain) of a batch."""
        data, ctf, A0, s0, params = self._data(rows, params_fn)
        box, apix, dev = self.box, self.apix, self.device
        w = torch.zeros(len(rows), 3, device=dev, requires_grad=True)
        d = torch.zeros(len(rows), 2, device=dev, requires_grad=True)
        opt = torch.optim.Adam([{"params": [w], "lr": np.deg2rad(lr_angle)},
                                {"params": [d], "lr": lr_shift}])

        def pose():
            R = torch.linalg.matrix_exp(skew(_bound(w, self.amax)))
            return R @ A0, s0 + _bound(d, self.smax)

        n_coarse = int(round(COARSE_FRACTION * iterations))
        for it in range(iterations):
            A, s = pose()
            f = self._score(project(params, A, s, box, apix) * ctf, data, it < n_coarse)
            opt.zero_grad()
            (-f.sum()).backward()
            opt.step()
        with torch.no_grad():
            A, s = pose()
            pred = project(params, A, s, box, apix) * ctf
            pred_in = project(params, A0, s0, box, apix) * ctf
            g = likelihood_gain(pred_in, pred, data, self.w_fine, self.sel_fine)
            kept = torch.where((g > min_gain).view(-1, *[1] * (pred.dim() - 1)), pred, pred_in)
            final = frc(kept, data, box, apix, self.min_res, self.max_res)
            return (A.double().cpu().numpy(), s.double().cpu().numpy(),
                    final.cpu().numpy(), g.cpu().numpy())


def refine_poses(particles, params_fn, max_res, min_res=100.0, max_angle=10.0,
                 max_shift=5.0, iterations=60, lr_angle=0.5, lr_shift=0.3, batch_size=64,
                 device="cpu", focus=None, objective="ml", significance=0.05, log=print):
    """Refine all particles' poses.

    params_fn(rows) -> (B, N, 5) or (N, 5) torch GMM params for those rows.
    focus: optional boolean (N,) Gaussians to align on (others subtracted).
    objective: "ml" (whitened correlation, the default) or "frc".
    significance: keep a refined pose only if it beats the input pose at this
    level (likelihood-ratio test, χ² with POSE_DOF degrees of freedom); 0 keeps all.
    Under torchrun each rank refines its share of the particles and every rank
    returns all of them, in order. Returns a PoseRefinement.
    """
    if not 0 <= significance < 1:
        raise ValueError("significance must be in [0, 1), got %r" % significance)
    if objective not in ("ml", "frc"):
        raise ValueError("objective must be 'ml' or 'frc', got %r" % objective)
    min_gain = 0.5 * chi2.isf(significance, POSE_DOF) if significance > 0 else -np.inf
    device = torch.device(device)
    n = len(particles)
    rotations = particles.rotations.copy()
    shifts = particles.shifts.copy()
    final = np.zeros(n, dtype=np.float32)
    gain = np.zeros(n, dtype=np.float32)
    t0 = time.time()
    refiner = _Refiner(particles, max_res, min_res, max_angle, max_shift, batch_size,
                       device, focus, objective)
    distributed.check_particles(n)
    mine = distributed.shard(np.arange(n), batch_size)   # particles are independent
    for start in range(0, len(mine), batch_size):
        rows = mine[start:start + batch_size]
        rotations[rows], shifts[rows], final[rows], gain[rows] = refiner.batch(
            rows, params_fn, iterations, lr_angle, lr_shift, min_gain)
        if log and (start // batch_size) % 20 == 0:
            log("refined %d / %d particles" % (start + len(rows), len(mine)))
    rotations, shifts, final, gain = (distributed.gather_rows(v[mine], n, mine)
                                      for v in (rotations, shifts, final, gain))
    # re-orthonormalise (float32 matrix products)
    u, _, vt = np.linalg.svd(rotations)
    rotations = u @ vt
    moved = gain > min_gain
    rotations[~moved] = particles.rotations[~moved]
    shifts[~moved] = particles.shifts[~moved]
    rate = n / (time.time() - t0)
    return PoseRefinement(rotations, shifts, final, gain, moved, rate)


def sample_spectra(particles, box, batch_size, device):
    """FTs of the first WHITENING_SAMPLE particles cropped to ``box``: the fixed
    sample the noise whitening is estimated from, so batches stay independent."""
    sample = np.arange(min(len(particles), WHITENING_SAMPLE))
    return torch.cat([image_ft(crop_images(torch.from_numpy(
        particles.images(sample[i:i + batch_size])).to(device), box))
        for i in range(0, len(sample), batch_size)])


def likelihood_gain(pred_in, pred_out, data, weights, sel):
    """Log-likelihood gain (nats) of ``pred_out`` over ``pred_in`` for whitened
    Gaussian noise, each prediction at its best amplitude: with c the whitened
    correlation, the best residual is Σw|d|²(1 − c²), so the gain is
    Σw|d|² (c_out² − c_in²) (an rfft half plane holds each coefficient once,
    which is what the real-image likelihood counts)."""
    d = data[:, sel]
    dd = ((d.real ** 2 + d.imag ** 2) * weights).sum(1)
    c_in = weighted_correlation(pred_in, data, weights, sel).clamp_min(0)
    c_out = weighted_correlation(pred_out, data, weights, sel).clamp_min(0)
    return dd * (c_out ** 2 - c_in ** 2)
