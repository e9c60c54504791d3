"""Fourier grids, centred transforms, cropping, FRC and FSC.

Transforms are *centred*: the real-space origin (pixel D // 2) is moved to
index 0 before the FFT (``ifftshift``), so a particle sitting at the box
centre has a real, phase-free transform. Half-plane transforms (``rfft2``) are
indexed ``[ky, kx]`` with ``kx >= 0`` along the last axis; frequencies are in
1/Å.
"""
import numpy as np
import torch


def freqs_1d(n, apix, device="cpu", dtype=torch.float32, half=False):
    """Frequencies (1/Å) of a length-``n`` FFT axis (``half``: rfft axis)."""
    f = torch.fft.rfftfreq(n, d=apix) if half else torch.fft.fftfreq(n, d=apix)
    return f.to(device=device, dtype=dtype)


def freq_grid_2d(box, apix, device="cpu", dtype=torch.float32):
    """(ky, kx) broadcastable grids for the rfft2 half plane, shapes (D,1), (1,D//2+1)."""
    ky = freqs_1d(box, apix, device, dtype)[:, None]
    kx = freqs_1d(box, apix, device, dtype, half=True)[None, :]
    return ky, kx


def ring_index(box, device="cpu"):
    """Integer radius (in Fourier pixels) of each rfft2 half-plane element."""
    ky, kx = freq_grid_2d(box, 1.0, device)
    return torch.round(torch.sqrt(ky ** 2 + kx ** 2) * box).long()


def shell_index(n, device="cpu"):
    """Integer radius (in Fourier voxels) of each voxel of a full n³ FFT grid,
    flattened in FFT order."""
    f = torch.fft.fftfreq(n, d=1.0 / n, device=device)
    return torch.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2
                      + f[None, None, :] ** 2).round().long().flatten()


def image_ft(images):
    """Centred half-plane FT of real images (..., D, D) -> (..., D, D//2+1)."""
    images = torch.as_tensor(images)
    return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))


def image_ift(ft, box):
    """Inverse of :func:`image_ft`."""
    return torch.fft.fftshift(torch.fft.irfft2(ft, s=(box, box)), dim=(-2, -1))


def crop_images(images, new_box):
    """Fourier-crop real images (..., D, D) to (..., d, d); pixel size × D/d.

    Values keep their meaning (a pixel's mean density), so a cropped image of
    a projection is the projection at the coarser sampling.
    """
    images = torch.as_tensor(images)
    box = images.shape[-1]
    if new_box == box:
        return images
    if new_box > box or new_box % 2:
        raise ValueError("crop to an even box smaller than %d, got %d" % (box, new_box))
    ft = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(images, dim=(-2, -1))),
                            dim=(-2, -1))
    lo = box // 2 - new_box // 2
    ft = ft[..., lo:lo + new_box, lo:lo + new_box]
    out = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(ft, dim=(-2, -1))),
                             dim=(-2, -1)).real
    return out * (new_box / box) ** 2


def crop_map(vol, new_box):
    """Fourier-crop a real map (D, D, D) to (d, d, d); pixel size × D/d."""
    vol = torch.as_tensor(vol)
    box = vol.shape[-1]
    if new_box == box:
        return vol
    if new_box > box or new_box % 2:
        raise ValueError("crop to an even box smaller than %d, got %d" % (box, new_box))
    dims = (-3, -2, -1)
    ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(vol, dim=dims), dim=dims),
                            dim=dims)
    lo = box // 2 - new_box // 2
    ft = ft[..., lo:lo + new_box, lo:lo + new_box, lo:lo + new_box]
    out = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(ft, dim=dims), dim=dims),
                             dim=dims).real
    return out * (new_box / box) ** 3


def frc(pred_ft, data_ft, box, apix, res_low=None, res_high=None, eps=1e-12):
    """Per-particle Fourier ring correlation averaged over a resolution band.

    ``pred_ft``, ``data_ft``: (B, D, D//2+1) complex. Rings from 1/``res_low``
    to 1/``res_high`` (Å; defaults: the first ring to Nyquist). Returns (B,)
    in [-1, 1]; the loss is its negative. Scale- and filter-invariant per
    ring, so absolute amplitudes and smooth envelopes do not matter.
    """
    lo, hi = band_limits(box, apix, res_low, res_high)
    rings = ring_index(box, pred_ft.device)
    # rfft half plane: the kx = 0 column is counted once, fine for a correlation.
    sel = (rings >= lo) & (rings <= hi)
    r = rings[sel] - lo
    nr = hi - lo + 1
    p, d = pred_ft[:, sel], data_ft[:, sel]
    def ring_sum(v):
        out = torch.zeros(v.shape[0], nr, device=v.device, dtype=v.dtype)
        return out.index_add_(1, r, v)
    cross = ring_sum((p * d.conj()).real)
    pp = ring_sum(p.real ** 2 + p.imag ** 2)
    dd = ring_sum(d.real ** 2 + d.imag ** 2)
    return (cross / torch.sqrt(pp * dd + eps)).mean(dim=1)


def fsc(map1, map2):
    """Fourier shell correlation of two (D, D, D) maps; returns (D//2+1,) numpy.

    Shell i holds frequencies with |k|·D in [i - 0.5, i + 0.5); shell i is at
    resolution D·apix / i Å.
    """
    a = torch.fft.rfftn(torch.as_tensor(map1, dtype=torch.float64))
    b = torch.fft.rfftn(torch.as_tensor(map2, dtype=torch.float64, device=a.device))
    box, dev = a.shape[0], a.device
    f = torch.fft.fftfreq(box, dtype=torch.float64, device=dev) * box
    fh = torch.fft.rfftfreq(box, dtype=torch.float64, device=dev) * box
    r = torch.round(torch.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2
                               + fh[None, None, :] ** 2)).long().flatten()
    keep = r <= box // 2
    r = r[keep]
    a, b = a.flatten()[keep], b.flatten()[keep]
    n = box // 2 + 1
    zeros = lambda: torch.zeros(n, dtype=torch.float64, device=dev)  # noqa: E731
    cross = zeros().index_add_(0, r, (a * b.conj()).real)
    aa = zeros().index_add_(0, r, a.abs() ** 2)
    bb = zeros().index_add_(0, r, b.abs() ** 2)
    return (cross / torch.sqrt(aa * bb).clamp_min(1e-30)).cpu().numpy()


def shell_resolutions(box, apix):
    """Resolution (Å) of each FSC shell; shell 0 is reported as infinity."""
    i = np.arange(box // 2 + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(i > 0, box * apix / np.maximum(i, 1e-9), np.inf)


def resolution_at(curve, box, apix, threshold=0.143):
    """Resolution (Å) where an FSC curve first drops below ``threshold``.

    Linear interpolation between the shells around the crossing; Nyquist if it
    never crosses.
    """
    curve = np.asarray(curve)
    for i in range(1, len(curve)):
        if curve[i] < threshold:
            c0, c1 = curve[i - 1], curve[i]
            t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
            shell = (i - 1) + t
            return box * apix / max(shell, 1e-9)
    return 2.0 * apix


def band_limits(box, apix, res_low=None, res_high=None):
    """First and last ring (inclusive) of the band res_low–res_high Å
    (defaults: the first ring, Nyquist)."""
    lo = 1 if res_low is None else max(1, int(np.ceil(box * apix / res_low)))
    hi = box // 2 if res_high is None else min(box // 2, int(np.floor(box * apix / res_high)))
    if hi < lo:
        raise ValueError("empty FRC band: %s-%s Å at %d px of %.3f Å" %
                         (res_low, res_high, box, apix))
    return lo, hi


def band_mask(box, apix, res_low=None, res_high=None, device="cpu"):
    """Ring indices of an rfft half plane and the boolean mask of a band (Å)."""
    lo, hi = band_limits(box, apix, res_low, res_high)
    rings = ring_index(box, device)
    return rings, (rings >= lo) & (rings <= hi)


def whitening_weights(data_ft, rings, sel, eps=1e-12):
    """1 / (mean power per ring) of a batch of images, on the band ``sel``.

    At cryo-EM SNRs the data power is the noise power, so these weights whiten
    the noise: the weighted correlation below is then the maximum-likelihood
    score of a pose (the matched filter), unlike the FRC, which gives every
    ring the same say whatever its number of pixels or its SNR.
    """
    r = rings[sel]
    power = (data_ft[:, sel].real ** 2 + data_ft[:, sel].imag ** 2).mean(0)
    nr = int(rings.max()) + 1
    tot = torch.zeros(nr, device=data_ft.device, dtype=power.dtype).index_add_(0, r, power)
    cnt = torch.zeros(nr, device=data_ft.device, dtype=power.dtype).index_add_(
        0, r, torch.ones_like(power))
    return 1.0 / (tot / cnt.clamp_min(1) + eps)[r]


def weighted_correlation(pred_ft, data_ft, weights, sel, eps=1e-12):
    """Σ w Re(p d*) / √(Σ w |p|² · Σ w |d|²) over the band ``sel``, per particle."""
    p, d = pred_ft[:, sel], data_ft[:, sel]
    cross = ((p * d.conj()).real * weights).sum(1)
    pp = ((p.real ** 2 + p.imag ** 2) * weights).sum(1)
    dd = ((d.real ** 2 + d.imag ** 2) * weights).sum(1)
    return cross / torch.sqrt(pp * dd + eps)
