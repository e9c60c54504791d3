"""The population landscape of the 2-D latent view: −ln of the particle density,
its minima and how many particles each basin holds.

It is a picture of how the particles are distributed, in units of kT only by
analogy (−ln p): the latent coordinates are not reaction coordinates and the
particle counts depend on picking and selection, so it is not a thermodynamic
measurement. Torch-free (numpy, scipy).
"""
from dataclasses import dataclass

import numpy as np

MIN_COUNT = 0.5     # bins with less (smoothed) density than this many particles are empty
SHALLOW = 0.7       # basins whose saddle is above this fraction of the lower peak merge


@dataclass
class Landscape:
    energy: np.ndarray      # (bins, bins) −ln(p / p_max), NaN where empty; [x, y]
    counts: np.ndarray      # (bins, bins) particles per bin
    xedges: np.ndarray
    yedges: np.ndarray
    minima: np.ndarray      # (m, 2) zRed positions of the basins' minima
    populations: np.ndarray  # (m,) fraction of the particles in each basin
    basin: np.ndarray       # (n,) basin of each particle (-1: none)


def population_landscape(zred, bins=None, smooth=1.5, min_fraction=0.02):
    """The landscape of ``zred`` (n, 2): a histogram (``bins`` per axis, default
    from the number of particles) smoothed by ``smooth`` bins, local density
    maxima as minima, every bin assigned to the basin it climbs to (steepest
    ascent); basins separated by a shallow saddle merge, and basins under
    ``min_fraction`` of the particles join their neighbours."""
    from scipy import ndimage
    zred = np.asarray(zred, dtype=np.float64)[:, :2]
    bins = bins or int(np.clip(np.sqrt(len(zred)) / 2, 20, 80))
    lo, hi = zred.min(0), zred.max(0)
    pad = 0.05 * (hi - lo + 1e-9)
    counts, xe, ye = np.histogram2d(zred[:, 0], zred[:, 1], bins=bins,
                                    range=[[lo[0] - pad[0], hi[0] + pad[0]],
                                           [lo[1] - pad[1], hi[1] + pad[1]]])
    density = ndimage.gaussian_filter(counts, smooth)
    occupied = density >= MIN_COUNT
    energy = np.where(occupied, -np.log(np.maximum(density, 1e-12) / density.max()), np.nan)
    labels = _merge_shallow(_ascent_basins(density, occupied), density)
    ix = np.clip(np.searchsorted(xe, zred[:, 0]) - 1, 0, bins - 1)
    iy = np.clip(np.searchsorted(ye, zred[:, 1]) - 1, 0, bins - 1)
    basin = labels[ix, iy]
    basin, peaks = _merge_small(basin, labels, density, min_fraction)
    centres_x, centres_y = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
    minima = np.array([[centres_x[i], centres_y[j]] for i, j in peaks]).reshape(-1, 2)
    populations = np.array([np.mean(basin == b) for b in range(len(peaks))])
    return Landscape(energy, counts, xe, ye, minima, populations, basin)


def _ascent_basins(density, occupied):
    """Basin label of every bin: the local maximum its steepest ascent reaches."""
    nx, ny = density.shape
    target = np.full((nx, ny, 2), -1, dtype=int)
    for i in range(nx):
        for j in range(ny):
            best, at = density[i, j], (i, j)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if 0 <= a < nx and 0 <= b < ny and density[a, b] > best:
                        best, at = density[a, b], (a, b)
            target[i, j] = at
    labels, peaks = np.full((nx, ny), -1), {}
    for i in range(nx):
        for j in range(ny):
            if not occupied[i, j]:
                continue
            a, b = i, j
            while tuple(target[a, b]) != (a, b):
                a, b = target[a, b]
            labels[i, j] = peaks.setdefault((a, b), len(peaks))
    return labels


def _merge_shallow(labels, density, shallow=SHALLOW):
    """Merge neighbouring basins whose saddle (the highest density where they
    touch) is above ``shallow`` of the lower of their two peaks: noise bumps on
    one population, not two populations."""
    while True:
        peak = {b: density[labels == b].max() for b in np.unique(labels) if b >= 0}
        saddle = {}
        for shift in ((1, 0), (0, 1), (1, 1), (1, -1)):
            a = labels[max(shift[0], 0):, max(shift[1], 0):labels.shape[1] + min(shift[1], 0)]
            b = labels[:labels.shape[0] - shift[0], max(-shift[1], 0):labels.shape[1]
                       - max(shift[1], 0)]
            da = density[max(shift[0], 0):, max(shift[1], 0):labels.shape[1] + min(shift[1], 0)]
            db = density[:labels.shape[0] - shift[0], max(-shift[1], 0):labels.shape[1]
                         - max(shift[1], 0)]
            edge = (a != b) & (a >= 0) & (b >= 0)
            for x, y, d in zip(a[edge], b[edge], np.minimum(da, db)[edge]):
                key = (min(x, y), max(x, y))
                saddle[key] = max(saddle.get(key, 0.0), d)
        ratios = {k: s / min(peak[k[0]], peak[k[1]]) for k, s in saddle.items()}
        if not ratios or max(ratios.values()) <= shallow:
            return labels
        x, y = max(ratios, key=ratios.get)
        labels = np.where(labels == y, x, labels)


def _merge_small(basin, labels, density, min_fraction):
    """Basins holding under ``min_fraction`` of the particles (noise bumps) join
    the largest basin they touch; returns (particle basins, their peaks)."""
    n = max(len(basin), 1)
    ids = [b for b in range(labels.max() + 1)]
    sizes = {b: np.sum(basin == b) / n for b in ids}
    keep = [b for b in ids if sizes[b] >= min_fraction] or [max(ids, key=sizes.get)]
    remap = {}
    for b in ids:
        if b in keep:
            remap[b] = b
            continue
        mask = labels == b
        grown = np.zeros_like(mask)
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        touching = [t for t in np.unique(labels[grown & ~mask]) if t in keep]
        remap[b] = max(touching, key=sizes.get) if touching else -1
    order = {b: k for k, b in enumerate(keep)}
    new = np.array([order.get(remap.get(b, -1), -1) if b >= 0 else -1 for b in basin])
    peaks = [np.unravel_index(np.argmax(np.where(labels == b, density, -1)), density.shape)
             for b in keep]
    return new, peaks
