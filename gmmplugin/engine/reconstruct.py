"""3D reconstruction by direct Fourier inversion with CTF correction.

Each image is zero-padded ``pad``× in real space, Fourier transformed (centred),
its shift undone, and its central slice inserted at ``Aᵀ (kx, ky, 0)`` into a
padded 3D grid by trilinear scattering (gridding), accumulating

    num(q) += CTF(k) · I(k),        den(q) += CTF(k)²

separately for two half sets. The map is the Wiener-style estimate

    V(q) = num(q) / (den(q) + τ(|q|)),   τ(|q|) = wiener · mean_shell(den)

i.e. a regularisation proportional to the mean CTF² weight of the shell
(``wiener`` default 0.05: equivalent to assuming a per-voxel SNR of 20 over
the average sampling of the shell). A shell-uniform τ leaves the FSC of that
shell unchanged and only tames voxels near CTF zeros or rarely sampled
directions. Phase-flipped data use |CTF|. After the inverse FFT the padded map
is cropped to the input box. Values are in the units of the GMM density when
images are GMM projections (pixel = line integral in density·Å).
"""
from dataclasses import dataclass

import numpy as np
import torch

from . import distributed
from .ctf import compute_ctf
from .fourier import crop_images, fsc, resolution_at, shell_index


@dataclass
class Reconstruction:
    full: np.ndarray
    half1: np.ndarray
    half2: np.ndarray
    fsc: np.ndarray          # half-map FSC, shells 0..box//2
    resolution: float        # FSC = 0.143 crossing (Å)
    apix: float


class FourierInserter:
    """Accumulates CTF-weighted central slices for one or more sub-maps."""

    def __init__(self, box, apix, n_maps=1, pad=2, device="cpu"):
        self.box, self.apix, self.pad, self.device = box, apix, pad, torch.device(device)
        P = self.P = pad * box
        f = torch.fft.fftfreq(P, d=1.0 / P, device=self.device)  # integer indices
        iy, ix = torch.meshgrid(f, f, indexing="ij")
        keep = iy ** 2 + ix ** 2 <= (P / 2 - 1) ** 2           # inside Nyquist
        self.keep = keep
        self.ix, self.iy = ix[keep], iy[keep]
        self.ky = self.iy / (P * apix)                             # (M,) 1/Å
        self.kx = self.ix / (P * apix)
        acc = torch.float64
        self.num_re = torch.zeros(n_maps, P ** 3, dtype=acc, device=self.device)
        self.num_im = torch.zeros_like(self.num_re)
        self.den = torch.zeros_like(self.num_re)
        self._shells = None                            # shell index, for shell_mean

    def insert(self, images, rotations, shifts, ctf_params, which=0, phase_flipped=False,
               weights=None):
        """Insert a batch. images (B, D, D); rotations (B,3,3); shifts (B,2) Å;
        ``weights`` (B,): each particle's weight (e.g. its latent confidence),
        applied to its slice and to its CTF² alike (a weighted average)."""
        B, D, P = images.shape[0], self.box, self.P
        padded = torch.zeros(B, P, P, dtype=torch.float32, device=self.device)
        lo = P // 2 - D // 2
        padded[:, lo:lo + D, lo:lo + D] = images.to(self.device, torch.float32)
        ft = torch.fft.fft2(torch.fft.ifftshift(padded, dim=(-2, -1)))[:, self.keep]
        shifts = shifts.to(self.device, torch.float32)
        # image(r) = P(r + origin): move the content back by +origin
        ft = ft * torch.polar(torch.ones(B, self.kx.shape[0], device=self.device),
                              -2 * np.pi * (shifts[:, :1] * self.kx + shifts[:, 1:] * self.ky))
        c = compute_ctf(self.ky, self.kx, ctf_params.to(self.device)).to(torch.float32)
        if phase_flipped:
            c = c.abs()
        if weights is not None:
            c_w = c * torch.as_tensor(weights, dtype=torch.float32, device=self.device)[:, None]
        else:
            c_w = c
        val_re, val_im, wgt = ft.real * c_w, ft.imag * c_w, c_w * c   # (B, M)
        A = rotations.to(self.device, torch.float32)
        q = (self.ix[None, :, None] * A[:, None, 0, :]
             + self.iy[None, :, None] * A[:, None, 1, :])              # (B, M, 3) xyz
        q0 = torch.floor(q)
        frac = q - q0
        q0 = q0.long()
        which = torch.as_tensor(which, device=self.device).expand(B) if np.ndim(which) == 0 \
            else torch.as_tensor(which, device=self.device)
        base = (which * P ** 3)[:, None]
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    w = ((frac[..., 2] if dz else 1 - frac[..., 2])
                         * (frac[..., 1] if dy else 1 - frac[..., 1])
                         * (frac[..., 0] if dx else 1 - frac[..., 0]))
                    z = (q0[..., 2] + dz) % P
                    y = (q0[..., 1] + dy) % P
                    x = (q0[..., 0] + dx) % P
                    idx = (base + (z * P + y) * P + x).flatten()
                    self.num_re.view(-1).index_add_(0, idx, (w * val_re).flatten().double())
                    self.num_im.view(-1).index_add_(0, idx, (w * val_im).flatten().double())
                    self.den.view(-1).index_add_(0, idx, (w * wgt).flatten().double())

    def reconstruction(self, wiener=0.05, last=True):
        """The Reconstruction of what the ranks inserted so far. Unless ``last``
        (more will be inserted), summed over the ranks into copies, which
        leaves each rank's own accumulators to go on with."""
        if not last and distributed.world() > 1:
            acc = [distributed.all_reduce_(t.clone())
                   for t in (self.num_re, self.num_im, self.den)]
        else:
            self.all_reduce()
            acc = (self.num_re, self.num_im, self.den)
        half1, half2 = (self.volume([i], wiener, acc) for i in (0, 1))
        curve = fsc(half1, half2)
        return Reconstruction(full=self.volume([0, 1], wiener, acc), half1=half1,
                              half2=half2, fsc=curve,
                              resolution=resolution_at(curve, self.box, self.apix),
                              apix=self.apix)

    def all_reduce(self):
        """Sum the accumulators over the ranks (each inserted its own particles):
        insertion is a sum over particles, so the sum of the ranks' partial
        accumulators is what one process inserting every particle would hold."""
        for acc in (self.num_re, self.num_im, self.den):
            distributed.all_reduce_(acc)

    def shell_mean(self, den):
        """Mean of ``den`` (P³, flattened) over each Fourier shell, broadcast back to
        every voxel: the shell-uniform scale of the Wiener term."""
        if self._shells is None:                       # computed once per inserter
            self._shells = shell_index(self.P, self.device)
        r = self._shells
        n = int(r.max()) + 1
        tot = torch.zeros(n, dtype=den.dtype, device=self.device).index_add_(0, r, den)
        cnt = torch.zeros(n, dtype=den.dtype, device=self.device).index_add_(
            0, r, torch.ones_like(den))
        return (tot / cnt.clamp_min(1))[r]

    def volume(self, maps=(0,), wiener=0.05, acc=None):
        """Real-space map (box³ numpy float32) from the sum of accumulators
        ``maps`` (of ``acc``: numerator real, imaginary, denominator; default
        this inserter's own)."""
        maps = list(maps)
        num_re, num_im, den = acc or (self.num_re, self.num_im, self.den)
        num = torch.complex(num_re[maps].sum(0), num_im[maps].sum(0))
        den = den[maps].sum(0)
        tau = wiener * self.shell_mean(den) + 1e-12
        vol_ft = (num / (den + tau)).reshape(self.P, self.P, self.P)
        vol = torch.fft.fftshift(torch.fft.ifftn(vol_ft).real) / self.apix
        lo = self.P // 2 - self.box // 2
        vol = vol[lo:lo + self.box, lo:lo + self.box, lo:lo + self.box]
        return vol.float().cpu().numpy()


def split_halves(n, seed=0):
    """Random, balanced half-set labels (0/1) for n particles (gold standard)."""
    labels = np.zeros(n, dtype=np.int64)
    labels[np.random.default_rng(seed).permutation(n)[n // 2:]] = 1
    return labels


def reconstruct(particles, rows=None, box=None, batch_size=64, device="cpu",
                wiener=0.05, pad=2, seed=0, progress=None, weights=None):
    """Reconstruct ``rows`` of ``particles`` as two half maps and their sum.

    ``box``: Fourier-crop images to this box first (pixel size grows
    accordingly) to trade resolution for speed. ``weights``: one per row, the
    weight of each particle in the average. Under torchrun each rank inserts
    its share of the rows (the half sets are drawn for all rows first, so they
    do not depend on the number of ranks) and the accumulators are summed;
    every rank returns the same Reconstruction.
    """
    rows = np.arange(len(particles)) if rows is None else np.asarray(rows)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != rows.shape or (weights < 0).any() or not weights.any():
            raise ValueError("reconstruction weights: one non-negative weight per particle, "
                             "not all zero")
    return nested_reconstructions(particles, rows, [len(rows)], box, batch_size, device,
                                  wiener, pad, seed, progress, weights)[0]


def nested_reconstructions(particles, rows, sizes, box=None, batch_size=64, device="cpu",
                           wiener=0.05, pad=2, seed=0, progress=None, weights=None):
    """The Reconstructions of the first ``sizes[i]`` (increasing) of ``rows``,
    each particle inserted once: maps of nested neighbourhoods for the price
    of the widest. Arguments as ``reconstruct``. The half sets are drawn ring
    by ring (the first ``sizes[0]`` rows as ``reconstruct`` draws them for
    those rows, each further ring on its own), so that every neighbourhood's
    halves are balanced and the first is ``reconstruct``'s map."""
    rows, sizes = np.asarray(rows), [int(n) for n in sizes]
    if sizes[0] < 2:
        raise ValueError("at least 2 particles are needed for a reconstruction, got %d"
                         % sizes[0])
    if np.any(np.diff(sizes) <= 0) or sizes[-1] > len(rows):
        raise ValueError("nested reconstructions: sizes must increase, up to the rows")
    rows = rows[:sizes[-1]]
    box = box or particles.box
    apix = particles.apix * particles.box / box
    halves = np.concatenate([split_halves(b - a, seed + i) for i, (a, b) in
                             enumerate(zip([0] + sizes[:-1], sizes))])   # on every rank
    distributed.check_particles(len(rows))
    mine = distributed.shard(np.arange(len(rows)), batch_size)
    ins = FourierInserter(box, apix, n_maps=2, pad=pad, device=device)
    out, start, done = [], 0, 0
    for size in sizes:
        ring = mine[(mine >= start) & (mine < size)]
        start, at = size, 0
        for batch in particles.batches(batch_size, rows[ring], device=device):
            part = ring[at:at + len(batch["rows"])]
            ins.insert(crop_images(batch["images"], box), batch["rotations"],
                       batch["shifts"], batch["ctf"], which=halves[part],
                       phase_flipped=particles.phase_flipped,
                       weights=None if weights is None else weights[part])
            at += len(part)
            done += len(part)
            if progress:
                progress(done, int((mine < sizes[-1]).sum()))
        out.append(ins.reconstruction(wiener, last=size == sizes[-1]))
    return out


def save_reconstruction(rec, folder, name, info=None):
    """Write a reconstruction as the files ``layout.map_files(folder, name)`` names:
    map, half maps, FSC and (with ``info``) a JSON summary."""
    from .io import write_fsc, write_json, write_map
    from .layout import map_files
    files = map_files(folder, name)
    write_map(files["map"], rec.full, rec.apix)
    write_map(files["map_half1"], rec.half1, rec.apix)
    write_map(files["map_half2"], rec.half2, rec.apix)
    write_fsc(files["map_fsc"], rec.fsc, rec.full.shape[0], rec.apix)
    if info is not None:
        write_json(files["map_info"], info)
    return files
