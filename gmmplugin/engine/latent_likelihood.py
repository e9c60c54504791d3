"""Each particle's likelihood as a function of its latent vector, through the
trained decoder at the particle's pose and CTF: how well its own image
determines its latent (confidence), and the latent its image favours
(refinement).

The encoder gives every particle a latent, but a side view of a motion along
the beam, a high defocus or a weak image say little about where along the
motion the particle is; and the encoder, one network for all particles, does
not reach each particle's own best latent (the amortisation gap). Both are
read from the noise-whitened Gaussian likelihood of the image, at its best
amplitude (profiled), log L(z) = (Σ w Re(p d*))² / Σ w |p|² + const:

* the **Fisher information** of its latent, F = 2 a² Re(Jᴴ W J): J is the
  derivative of the particle's CTF-modulated projection with respect to the
  latent (finite differences through the decoder), W the inverse noise power
  per Fourier ring (from the residuals of a sample of particles), a the
  particle's best-fitting amplitude scale, over the training band;
* the **posterior spread**, combining F with the population's own spread as
  the prior: Σ = (F + Σ_pop⁻¹)⁻¹. ``latent_sd`` = √tr Σ, in latent units;
* the **confidence**, along the population's motion: with d the unit
  direction of the motion at the particle (the tangent of the principal curve
  of all latents, engine/paths.py), f = dᵀ F d the image's information along
  it and p = dᵀ Σ_pop⁻¹ d the population's own precision along it,
  confidence = f / (f + p), in [0, 1]: the share of the population's spread
  along the motion that the image rules out (1 − posterior / prior variance
  along d). 1 when the image pins its place along the motion down, 0 when it
  says no more than "somewhere in the population". What an image says about
  directions across the motion (where the population barely spreads, or
  where the decoder encodes something else) does not count: the error that
  matters to a trajectory is the one along it.

Cramér–Rao bound: a lower bound on the latent's error, and the curvature of
the likelihood at the estimate (the Laplace approximation of the posterior).

**Refinement**: from the encoder's latent, a few Gauss–Newton steps on the
log-posterior, each step at most ``max_step`` population standard deviations
and kept only where it raises the log-posterior: the maximum a posteriori
latent. The prior is each particle's own: a Gaussian centred on its encoder
latent, with the covariance of its neighbourhood (the nearest 20 % of the
population), widened 3× along the neighbourhood's longest axis (the local
direction of the motion, where the encoder's errors lie): an image moves its
latent along the motion about as far as the population spreads there, across
it little, and no further than it supports. A prior shared by all particles
pulls weak images towards its modes: one Gaussian for the whole population
pulls two compositions towards each other and fills the valley between
them; a mixture of Gaussians gathers them in clumps at its components, which
read as false classes. For an image that says nothing, the latent stays where the encoder
put it. Optionally (``significance`` > 0), as the pose refinement
does, the refined latent replaces the encoder's only when the image alone
favours it: 2 × the log-likelihood gain must exceed the χ² quantile (L
degrees of freedom) of that significance.
"""
import numpy as np
from scipy.stats import chi2
import torch

from .ctf import compute_ctf
from .fourier import crop_images, freq_grid_2d, image_ft
from .projection import project


class LatentLikelihood:
    """Per-particle likelihood of the latent through ``decoder``.

    ``images``: (n, box, box) particle images already cropped to ``box``
    (pixel size ``apix``); ``band``: boolean mask of the rfft half plane over
    which the likelihood is taken, ``rings`` its ring indices."""

    def __init__(self, decoder, particles, images, box, apix, rings, band, device="cpu",
                 phase_flip=False, batch_size=64):
        self.decoder, self.p, self.images = decoder, particles, images
        self.box, self.apix, self.rings, self.band = box, apix, rings, band
        self.device, self.phase_flip, self.bs = torch.device(device), phase_flip, batch_size
        self.ky, self.kx = freq_grid_2d(box, apix, self.device)
        self.weights = None

    def _batch(self, rows):
        p, dev = self.p, self.device
        img = torch.from_numpy(np.ascontiguousarray(self.images[rows], dtype=np.float32))
        if img.shape[-1] != self.box:
            img = crop_images(img, self.box)
        ctf = compute_ctf(self.ky, self.kx, torch.from_numpy(p.ctf[rows]).to(dev))
        if self.phase_flip:
            ctf = ctf.abs()
        rot = torch.from_numpy(p.rotations[rows]).float().to(dev)
        sh = torch.from_numpy(p.shifts[rows]).float().to(dev)
        return image_ft(img.to(dev))[:, self.band], ctf, rot, sh

    def _predict(self, z, ctf, rot, sh):
        return (project(self.decoder(z), rot, sh, self.box, self.apix) * ctf)[:, self.band]

    @staticmethod
    def _scale(pred, data, w):
        """Each particle's least-squares amplitude of its prediction."""
        num = ((pred * data.conj()).real * w).sum(1)
        den = ((pred.real ** 2 + pred.imag ** 2) * w).sum(1)
        return num / den.clamp_min(1e-30)

    @torch.no_grad()
    def estimate_noise(self, z, sample=1024):
        """Noise power per ring from the residuals of up to ``sample`` particles
        (spread over the set) at their latents; sets the whitening weights."""
        n = len(z)
        rows_all = np.unique(np.linspace(0, n - 1, min(n, sample)).astype(int))
        r = self.rings[self.band]
        nr = int(self.rings.max()) + 1
        tot = torch.zeros(nr, dtype=torch.float64, device=self.device)
        cnt = torch.zeros(nr, dtype=torch.float64, device=self.device)
        ones = torch.ones_like(r, dtype=torch.float64)
        for start in range(0, len(rows_all), self.bs):
            rows = rows_all[start:start + self.bs]
            data, ctf, rot, sh = self._batch(rows)
            zz = torch.from_numpy(np.asarray(z[rows], dtype=np.float32)).to(self.device)
            pred = self._predict(zz, ctf, rot, sh)
            a = self._scale(pred, data, torch.ones(pred.shape[1], device=self.device))
            res = data - a[:, None] * pred
            power = (res.real ** 2 + res.imag ** 2).double().sum(0)
            tot.index_add_(0, r, power)
            cnt.index_add_(0, r, ones * len(rows))
        noise = tot / cnt.clamp_min(1)
        self.weights = (1.0 / noise.clamp_min(1e-30))[r].float()
        return self.weights

    def _step(self, z):
        """Finite-difference step: small against the population's spread, large
        against round-off."""
        return 1e-2 * float(np.sqrt(((z - z.mean(0)) ** 2).sum(1).mean()) or 1.0)

    def _expand(self, z0, data, ctf, rot, sh, step):
        """Predictions at z0 and at z0 + step·e_l: (pred (B, K), jac (L, B, K),
        the amplitude a (B,), the profiled log-likelihood (B,))."""
        B, L = z0.shape
        eye = torch.eye(L, device=self.device) * step
        zs = torch.cat([z0[None], z0[None] + eye[:, None, :]]).reshape(-1, L)
        pred = self._predict(zs, ctf.repeat(L + 1, 1, 1), rot.repeat(L + 1, 1, 1),
                             sh.repeat(L + 1, 1)).reshape(L + 1, B, -1)
        a = self._scale(pred[0], data, self.weights)
        return pred[0], (pred[1:] - pred[0][None]) / step, a, \
            self._profiled(pred[0], data)

    def _profiled(self, pred, data):
        """Log-likelihood at the best amplitude, up to a constant (nats)."""
        w = self.weights
        cross = ((pred * data.conj()).real * w).sum(1)
        return cross ** 2 / ((pred.real ** 2 + pred.imag ** 2) * w).sum(1).clamp_min(1e-30)

    def _fisher_of(self, jac, a):
        w = self.weights
        f = torch.einsum("lbk,mbk,k->blm", jac.real, jac.real, w) \
            + torch.einsum("lbk,mbk,k->blm", jac.imag, jac.imag, w)
        return 2.0 * a[:, None, None] ** 2 * f

    @torch.no_grad()
    def fisher(self, z, step=None, rows=None):
        """(n, L, L) Fisher information of every particle's latent ``z`` (n, L),
        or (len(rows), L, L) of ``rows`` alone, in their order: a process's
        share, without an L x L matrix for every particle of the set."""
        z = np.asarray(z, dtype=np.float32)
        n, L = z.shape
        if self.weights is None:
            self.estimate_noise(z)
        step = step or self._step(z)
        todo = np.arange(n) if rows is None else np.asarray(rows)
        out = np.zeros((len(todo), L, L), dtype=np.float64)
        for start in range(0, len(todo), self.bs):
            rows = todo[start:start + self.bs]
            data, ctf, rot, sh = self._batch(rows)
            _, jac, a, _ = self._expand(torch.from_numpy(z[rows]).to(self.device),
                                        data, ctf, rot, sh, step)
            out[start:start + len(rows)] = self._fisher_of(jac, a).double().cpu().numpy()
        return out

    @torch.no_grad()
    def refine(self, z, iterations=5, max_step=0.5, significance=0.0, rows=None, prior=None,
               log=None):
        """(refined z (n, L), log-likelihood gain (n,), moved (n,) bool): see the
        module docstring. The prior is ``local_prior`` of ``z`` (or ``prior``
        when given), placed by the whole of ``z`` even when only ``rows`` are
        refined (the others keep their latents, gain 0: a process's share of the
        particles)."""
        z = np.asarray(z, dtype=np.float32)
        n, L = z.shape
        if self.weights is None:
            self.estimate_noise(z)
        step = self._step(z)
        cov = np.atleast_2d(np.cov(z.T))
        todo = np.arange(n) if rows is None else np.asarray(rows)
        prior = (local_prior(z, rows=todo) if prior is None else prior).to(self.device)
        limit = max_step * float(np.sqrt(max(np.trace(cov), 1e-12) / L))
        min_gain = 0.5 * chi2.isf(significance, L) if significance > 0 else -np.inf
        out, gain = z.copy(), np.zeros(n, dtype=np.float32)

        for start in range(0, len(todo), self.bs):
            rows = todo[start:start + self.bs]
            data, ctf, rot, sh = self._batch(rows)
            here = prior.batch(rows)
            z0 = torch.from_numpy(z[rows]).to(self.device)
            cur = z0.clone()
            pred, jac, a, ll = self._expand(cur, data, ctf, rot, sh, step)
            ll0 = ll.clone()
            post = ll + here.log_density(cur)
            for _ in range(iterations):
                r = data - a[:, None] * pred
                g = 2.0 * a[:, None] * (torch.einsum("lbk,bk,k->bl", jac.real, r.real,
                                                     self.weights)
                                        + torch.einsum("lbk,bk,k->bl", jac.imag, r.imag,
                                                       self.weights))
                g_prior, h_prior = here.gradient(cur)
                g = g + g_prior
                h = self._fisher_of(jac, a) + h_prior
                delta = torch.linalg.solve(h, g.unsqueeze(-1)).squeeze(-1)
                norm = delta.norm(dim=1, keepdim=True)
                delta = delta * torch.clamp(limit / norm.clamp_min(1e-30), max=1.0)
                trial = cur + delta
                p_t, j_t, a_t, ll_t = self._expand(trial, data, ctf, rot, sh, step)
                post_t = ll_t + here.log_density(trial)
                better = post_t > post
                b = better[:, None]
                cur = torch.where(b, trial, cur)
                pred = torch.where(b, p_t, pred)
                jac = torch.where(better[None, :, None], j_t, jac)
                a, ll, post = (torch.where(better, a_t, a), torch.where(better, ll_t, ll),
                               torch.where(better, post_t, post))
            out[rows] = cur.cpu().numpy()
            gain[rows] = (ll - ll0).cpu().numpy()
            if log and (start // self.bs) % 50 == 0:
                log("latent refinement: %d / %d particles" % (start + len(rows), len(todo)))
        moved = gain > min_gain
        out[~moved] = z[~moved]
        return out, gain, moved


PRIOR_FRACTION = 0.2      # the share of the population, nearest a particle, whose
                          # spread is its prior spread
PRIOR_STRETCH = 3.0       # the prior's widening along its neighbourhood's longest axis
PRIOR_SAMPLE = 5000       # particles the neighbourhoods are measured on


class LocalPrior:
    """Each particle's prior: a Gaussian centred on its own starting latent,
    with the covariance of its neighbourhood in the population (see the module
    docstring). The precision matrices are kept once per measured
    neighbourhood (``pool``, one per sampled particle) with each particle's
    index into them (``index``, −1 for the identity: outside this process's
    share), so the prior of ten million particles costs their latents and one
    index each."""

    def __init__(self, means, pool, index):
        self.means = np.asarray(means, dtype=np.float32)
        self.pool = np.asarray(pool, dtype=np.float32)
        self.index = np.asarray(index, dtype=np.int32)
        self.device = "cpu"

    def to(self, device):
        self.device = device
        return self

    def precisions(self, rows=None):
        """(len(rows), L, L) precision matrices of the particles ``rows`` (all
        when None)."""
        index = self.index if rows is None else np.atleast_1d(self.index[rows])
        out = self.pool[np.maximum(index, 0)]          # a copy: the pool stays as it is
        out[index < 0] = np.eye(self.means.shape[1], dtype=np.float32)
        return out

    def batch(self, rows):
        """The prior of the particles ``rows`` alone, as torch tensors."""
        return _GaussianBatch(torch.from_numpy(self.means[rows]).to(self.device),
                              torch.from_numpy(self.precisions(rows)).to(self.device))


class _GaussianBatch:
    """One Gaussian per latent of a batch: means (B, L), precisions (B, L, L)."""

    def __init__(self, means, precisions):
        self.m, self.p = means, precisions

    def log_density(self, v):
        d = v - self.m
        return -0.5 * torch.einsum("bi,bij,bj->b", d, self.p, d)

    def gradient(self, v):
        """(∇ log p (B, L), its precision (B, L, L)) at the latents ``v``."""
        return -torch.einsum("bij,bj->bi", self.p, v - self.m), self.p


def local_prior(z, fraction=PRIOR_FRACTION, stretch=PRIOR_STRETCH, sample=PRIOR_SAMPLE,
                rows=None):
    """The ``LocalPrior`` of the latents ``z``: centred on each, with the
    covariance of the ``fraction`` of the population nearest to it, its
    standard deviation along the neighbourhood's longest axis times
    ``stretch`` (the encoder's error is largest along the motion). The
    neighbourhoods are measured on at most ``sample`` particles and each
    particle takes its nearest one's, so the prior's width is the same for ten
    thousand particles or a million. A neighbourhood smaller than a
    composition's own population does not reach across the valley to the
    other composition, so it does not pull weak images into it.
    With ``rows``, only those particles' priors are filled in (a process's
    share; the others stay the identity)."""
    from sklearn.neighbors import NearestNeighbors
    z = np.asarray(z, dtype=np.float64)
    n, L = z.shape
    pool = z[np.unique(np.linspace(0, n - 1, min(n, sample)).astype(int))]
    k = int(np.clip(round(fraction * len(pool)), min(20, len(pool) - 1), len(pool) - 1))
    scale = max(float(np.trace(np.atleast_2d(np.cov(pool.T)))) / L, 1e-12)
    nn = NearestNeighbors(n_neighbors=k).fit(pool)
    pool_precisions = np.empty((len(pool), L, L), dtype=np.float32)
    chunk = max(1, 4_000_000 // (k * L))          # bounds the (chunk, k, L) neighbourhoods
    for start in range(0, len(pool), chunk):
        _, idx = nn.kneighbors(pool[start:start + chunk])
        d = pool[idx] - pool[idx].mean(1, keepdims=True)
        cov = np.einsum("bki,bkj->bij", d, d) / max(k - 1, 1) + np.eye(L) * 1e-6 * scale
        w, v = np.linalg.eigh(cov)
        w[:, -1] *= stretch ** 2                  # along the longest axis
        pool_precisions[start:start + chunk] = np.einsum("bij,bj,bkj->bik", v, 1.0 / w, v)
    todo = np.arange(n) if rows is None else np.asarray(rows)
    index = np.full(n, -1, dtype=np.int32)
    for start in range(0, len(todo), 100000):
        part = todo[start:start + 100000]
        index[part] = nn.kneighbors(z[part], n_neighbors=1, return_distance=False)[:, 0]
    return LocalPrior(z, pool_precisions, index)


def _population_cov(z):
    """The covariance of the latents ``z`` (the identity for one), kept
    invertible."""
    L = z.shape[1]
    cov = np.atleast_2d(np.cov(z.T)) if len(z) > 1 else np.eye(L)
    return cov + np.eye(L) * 1e-9 * max(np.trace(cov), 1e-12)


def posterior_spread(fisher, z):
    """(latent_sd, overall confidence) per particle from its Fisher information
    and the population ``z`` as the prior: √tr Σ and 1 − √(tr Σ / tr Σ_pop),
    over all latent directions (``motion_confidence`` is the one train writes)."""
    z = np.asarray(z, dtype=np.float64)
    cov = _population_cov(z)
    prior = np.linalg.inv(cov)
    post = np.linalg.inv(fisher + prior[None])
    tr = np.trace(post, axis1=1, axis2=2).clip(min=0)
    sd = np.sqrt(tr)
    confidence = 1.0 - np.sqrt(np.clip(tr / np.trace(cov), 0.0, 1.0))
    return sd.astype(np.float32), confidence.astype(np.float32)


MOTION_FRAMES = 9    # nodes of the principal curve whose tangents give the motion's direction


def motion_tangents(z, rows=None):
    """(len(rows), L) unit direction of the population's motion at the
    particles ``rows`` of the latents ``z`` (default: all): the tangent of the
    principal curve of all latents (engine/paths.py, fitted to a sample)
    where each projects. The confidence is measured along it, and train
    writes it beside the confidence as ``motion``."""
    from .paths import curve_tangents, principal_curve
    z = np.asarray(z, dtype=np.float64)
    return curve_tangents(z if rows is None else z[rows], principal_curve(z, MOTION_FRAMES))


def motion_confidence(fisher, z, directions):
    """Each particle's confidence along ``directions`` (n, L) (unit vectors:
    the motion at each particle), with the population ``z`` as the prior (see
    the module docstring)."""
    cov = _population_cov(np.asarray(z, dtype=np.float64))
    d = np.asarray(directions, dtype=np.float64)
    f = np.einsum("bi,bij,bj->b", d, fisher, d).clip(min=0)
    p = np.einsum("bi,ij,bj->b", d, np.linalg.inv(cov), d)
    return (f / (f + p)).astype(np.float32)
