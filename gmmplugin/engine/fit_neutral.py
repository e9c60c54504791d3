"""Fitting the neutral GMM to a consensus map (or to a map made from atoms).

Scheme (ours, replacing e2gmm's projection-FRC fit with N doubling):

1. Fourier-crop the map so that Nyquist equals the target resolution r: all
   the information the GMM must represent, in the smallest box (a 6 Å fit of
   a 128³ map at 1.5 Å/px runs on a 64³ grid).
2. Seed all N Gaussians at once by density-weighted k-means of the voxels
   inside the molecular mask (or of atom positions when a model is given):
   centres spread evenly through the density, which is what N doublings
   converge to, without the intermediate rounds.
3. Optimise centres, log-amplitudes and log-widths with Adam on
   ``loss = 1 - mean FSC(shells ≤ 1/r_stage) + 0.1 · relative squared error``,
   the band growing coarse to fine (r_stage = 4r, 2r, r). The FSC term weighs
   every shell equally (as the paper's FRC does); the small least-squares term
   pins the overall scale and radial profile so the rendered map has the
   right density values. The GMM map is rendered analytically in Fourier
   space (band-limited, differentiable, O(N·D³) via separability).
4. Gaussians whose centres leave the mask, or whose amplitude collapses, are
   dropped, followed by a short polish.

Automatic N: the molecular volume (voxels of the mask) divided by (r/2)³,
i.e. about one Gaussian per (r/2)-sized cube — roughly 8 per resolution
element, enough for the GMM map to follow the target up to r.
"""
from dataclasses import dataclass, field
import time

import numpy as np
import torch

from .checks import resolution_within_nyquist
from .fourier import crop_map, fsc, resolution_at
from .gmm import AMP, Gmm, render_volume_fourier
from .sampling import crop_box_for


@dataclass
class FitReport:
    n_gaussians: int
    resolution: float
    seconds: float
    fsc: np.ndarray                      # GMM map vs input, at the input sampling
    fsc_05: float
    fsc_0143: float
    fit_box: int
    fit_apix: float
    history: list = field(default_factory=list)


def molecular_mask(vol, threshold=None):
    """Boolean mask of the molecule: voxels above ``threshold`` (default: 10% of
    the 99.9th percentile, robust to single hot voxels and to noise-free maps)."""
    if threshold is None:
        threshold = 0.1 * np.percentile(vol, 99.9)
    return vol > threshold


def auto_num_gaussians(mask_voxels, apix, resolution, lo=32, hi=40000):
    volume = mask_voxels * apix ** 3
    return int(np.clip(round(volume / (resolution / 2.0) ** 3), lo, hi))


def _coords(box, apix):
    c = (np.arange(box) - box // 2) * apix
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return np.stack([x, y, z], -1)          # (D, D, D, 3) in Å, xyz order


def kmeans_seeds(points, weights, n, seed=0):
    """Density-weighted k-means centres (Å); n >= len(points) keeps the points."""
    if len(points) <= n:
        return points.copy()
    from sklearn.cluster import MiniBatchKMeans
    km = MiniBatchKMeans(n_clusters=n, random_state=seed, n_init=1,
                         batch_size=max(4096, 4 * n), max_iter=50)
    km.fit(points, sample_weight=weights)
    return km.cluster_centers_


class _ShellStats:
    """Shell index of every element of the rfftn half-space of a D³ grid."""

    def __init__(self, box, device):
        f = torch.fft.fftfreq(box, d=1.0 / box, device=device)
        fh = torch.fft.rfftfreq(box, d=1.0 / box, device=device)
        self.r = torch.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2
                            + fh[None, None, :] ** 2).round().long()
        self.n = box // 2 + 1

    def fsc_loss_terms(self, a, b, max_shell):
        sel = (self.r >= 1) & (self.r <= max_shell)
        r = self.r[sel] - 1
        a, b = a[sel], b[sel]
        n = max_shell
        z = lambda: torch.zeros(n, device=a.device, dtype=torch.float64)
        cross = z().index_add_(0, r, (a * b.conj()).real.double())
        aa = z().index_add_(0, r, (a.abs() ** 2).double())
        bb = z().index_add_(0, r, (b.abs() ** 2).double())
        fsc_shells = cross / torch.sqrt(aa * bb + 1e-30)
        lsq = (a - b).abs().pow(2).sum().double() / bb.sum()
        return fsc_shells, lsq


def render_ft(params, box, apix):
    """rfftn (centred) of the band-limited GMM map, for losses in Fourier space."""
    vol = render_volume_fourier(params, box, apix)
    return torch.fft.rfftn(torch.fft.ifftshift(vol))


def _check_target(target, apix, resolution):
    resolution_within_nyquist(resolution, apix, "target resolution", "the map's")
    if not np.all(np.isfinite(target)):
        raise ValueError("the map contains NaN or infinite values")
    if float(target.std()) == 0.0:
        raise ValueError("the map is constant")


def _initial_centres(target, apix, region, n, seeds, seed_weights, seed):
    """Seed centres: atoms (k-means to n) or density-weighted k-means of the
    region's voxels."""
    if seeds is not None and len(seeds):
        w = np.ones(len(seeds)) if seed_weights is None else seed_weights
        return kmeans_seeds(np.asarray(seeds, float), w, n, seed)
    xyz = _coords(target.shape[0], apix)[region]
    w = np.clip(target[region], 1e-6, None)
    return kmeans_seeds(xyz, w, n, seed)


class _Fit:
    """The Gaussians being fitted (centres, log amplitudes, log widths) and the
    coarse-to-fine optimisation of their FSC with the target."""

    def __init__(self, target, apix, resolution, centres, device, progress):
        self.target, self.apix, self.resolution = target, apix, resolution
        self.box = box = target.shape[0]
        self.device, self.progress = device, progress
        self.d = crop_box_for(box, apix, resolution)
        self.fit_apix = apix * box / self.d
        self.full = torch.as_tensor(target, dtype=torch.float32)
        self.grids, self.history = {}, []
        # initial amplitude: the map's density at the seed, width ~ r/3
        idx = np.clip(np.round(centres / apix + box // 2).astype(int), 0, box - 1)
        dens = np.clip(target[idx[:, 2], idx[:, 1], idx[:, 0]], 1e-3 * target.max(), None)
        self.c = torch.tensor(centres, dtype=torch.float32, device=device,
                              requires_grad=True)
        self.log_a = torch.tensor(np.log(dens * 0.3), dtype=torch.float32, device=device,
                                  requires_grad=True)
        self.log_s = torch.full((len(centres),), float(np.log(resolution / 3.0)),
                                device=device, requires_grad=True)
        self.min_width = 0.5 * self.fit_apix  # narrower is invisible at the resolution

    def params(self):
        s = torch.exp(self.log_s).clamp(self.min_width, 4 * self.resolution)
        return torch.cat([self.c, torch.exp(self.log_a)[:, None], s[:, None]], 1)

    def grid(self, res_stage):
        """(box, apix, target FT, shells) of the smallest grid for ``res_stage``:
        coarse stages run on small boxes, so they cost almost nothing."""
        ds = min(self.d, crop_box_for(self.box, self.apix, res_stage))
        if ds not in self.grids:
            t = crop_map(self.full, ds).to(self.device)
            self.grids[ds] = (ds, self.apix * self.box / ds,
                              torch.fft.rfftn(torch.fft.ifftshift(t)),
                              _ShellStats(ds, self.device))
        return self.grids[ds]

    def optimise(self, n_iter, res_stage, lr_pos):
        ds, apix_s, tgt_ft, shells = self.grid(res_stage)
        max_shell = max(2, min(ds // 2, int(np.floor(ds * apix_s / res_stage))))
        opt = torch.optim.Adam([{"params": [self.c], "lr": lr_pos},
                                {"params": [self.log_a, self.log_s], "lr": 0.03}])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_iter, eta_min=0.1 * lr_pos)
        for it in range(n_iter):
            opt.zero_grad()
            shell_fsc, lsq = shells.fsc_loss_terms(render_ft(self.params(), ds, apix_s),
                                                   tgt_ft, max_shell)
            loss = 1 - shell_fsc.mean() + 0.1 * lsq
            loss.backward()
            opt.step()
            sched.step()
            if it % 25 == 0 or it == n_iter - 1:
                self.history.append((res_stage, it, loss.item(), shell_fsc.min().item()))
                if self.progress:
                    self.progress(res_stage, it, n_iter, loss.item())

    def kept(self, mask):
        """Gaussians with a real amplitude (and, with a mask, centres inside it)."""
        box, apix = self.box, self.apix
        with torch.no_grad():
            p = self.params().cpu().numpy()
        keep = p[:, AMP] > 1e-3 * p[:, AMP].max()
        if mask is not None:
            ix = np.round(p[:, :3] / apix + box // 2).astype(int)
            inside = np.all((ix >= 0) & (ix < box), axis=1)
            ixc = np.clip(ix, 0, box - 1)
            keep &= inside & mask[ixc[:, 2], ixc[:, 1], ixc[:, 0]]
        return keep

    def select(self, keep):
        sel = torch.as_tensor(keep, device=self.device)
        self.c = self.c.detach()[sel].requires_grad_(True)
        self.log_a = self.log_a.detach()[sel].requires_grad_(True)
        self.log_s = self.log_s.detach()[sel].requires_grad_(True)


def fit_neutral(target, apix, resolution, n_gaussians=0, mask=None, seeds=None,
                seed_weights=None, device="cpu", iterations=(80, 80, 200),
                polish=40, seed=0, progress=None):
    """Fit a GMM to ``target`` (D³, [z, y, x]) at ``resolution`` Å.

    mask: optional boolean D³ array (Gaussians outside are dropped);
    seeds: optional (M, 3) Å positions (atoms) to seed from, with weights.
    Returns (Gmm, FitReport, rendered map).
    """
    t0 = time.time()
    target = np.asarray(target, dtype=np.float32)
    box = target.shape[0]
    _check_target(target, apix, resolution)
    torch.manual_seed(seed)
    device = torch.device(device)
    region = mask if mask is not None else molecular_mask(target)
    if not region.any():
        raise ValueError("the mask is empty" if mask is not None else
                         "no density found above the automatic threshold")
    n = n_gaussians or auto_num_gaussians(int(region.sum()), apix, resolution)
    centres = _initial_centres(target, apix, region, n, seeds, seed_weights, seed)
    fit = _Fit(target, apix, resolution, centres, device, progress)
    stages = [r for r in (4 * resolution, 2 * resolution, resolution)
              if r <= box * apix / 2 or r == resolution]
    for res_stage, n_iter in zip(stages, iterations[-len(stages):]):
        fit.optimise(n_iter, res_stage, lr_pos=max(0.5, res_stage / 8))
    # drop Gaussians outside the mask or with negligible amplitude, polish, and
    # drop again any that the polish moved out (positions must stay inside)
    keep = fit.kept(mask)
    if not keep.any():
        raise ValueError("no Gaussian left inside the mask")
    if not keep.all():
        fit.select(keep)
        fit.optimise(polish, resolution, lr_pos=0.3)
        keep = fit.kept(mask)
        if keep.any() and not keep.all():
            fit.select(keep)
    with torch.no_grad():
        final = fit.params().double()
        rendered = render_volume_fourier(final, box, apix).cpu().numpy()
    gmm = Gmm(final.cpu().numpy(), apix=apix, box=box, resolution=resolution)
    curve = fsc(rendered, target)
    report = FitReport(n_gaussians=len(gmm), resolution=resolution,
                       seconds=time.time() - t0, fsc=curve,
                       fsc_05=resolution_at(curve, box, apix, 0.5),
                       fsc_0143=resolution_at(curve, box, apix, 0.143),
                       fit_box=fit.d, fit_apix=fit.fit_apix, history=fit.history)
    return gmm, report, rendered


def map_from_atoms(xyz, z, resolution, apix=None, box=None, atom_sigma=1.0, pad=1.4,
                   device="cpu"):
    """A density map of atoms at ``resolution`` (Gaussian blur σ = 0.225·r, as
    ChimeraX molmap; combined with the atom's own width). Returns (map, apix, box,
    centre offset Å) with the atoms' weighted centre at the box centre."""
    from .atoms import atoms_to_params
    apix = apix or resolution / 4.0
    centre = np.average(xyz, axis=0, weights=z)
    xyz = xyz - centre
    if box is None:
        extent = 2 * np.abs(xyz).max() + 2 * resolution
        box = int(np.ceil(extent * pad / apix))
        box += box % 2
    sigma = float(np.sqrt(atom_sigma ** 2 + (0.225 * resolution) ** 2))
    p = torch.as_tensor(atoms_to_params(xyz, z, sigma), dtype=torch.float64, device=device)
    with torch.no_grad():
        vol = render_volume_fourier(p, box, apix).float().cpu().numpy()
    return vol, apix, box, centre, xyz
