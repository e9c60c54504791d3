"""Latent-space analysis: reduction, classes, trajectories, outliers.

Decisions (ours, documented for users):
* Classes: by default by density valleys (``split_by_valleys``): the latent
  space is cut, class by class, along the hyperplane of lowest particle
  density (whitened coordinates, the central part of the class), until k
  classes or, with ``k = 0``, until no class has a valley deeper than
  VALLEY_SPLIT of its peak density and is separate on the particles'
  nearest-neighbour graph (at most SEPARATE_CROSSING of the smaller piece's
  neighbours on the other side): a lobe that the latents of one population
  form, joined to the rest by particles all along, can show a valley but stays
  in its class. With k given, the cut is the deepest valley whose pieces are
  separate in that sense, and the deepest valley only when none is. Two
  compositions that both move are two
  elongated populations side by side: no Gaussian or round class describes
  them, but the density between them drops, in whatever direction; a
  population spread evenly along a motion has no valley and stays whole.
* Or a Gaussian mixture with full covariances on the latent
  vectors (centred, one overall scale), fitted from several random starts (a
  k-means start would cut an elongated population across its length and stay
  there); ``k = 0`` chooses k in 1..8 by the Bayesian information criterion
  on up to 5,000 particles, then merges components that are one population:
  two classes merge when the particle density along the line between their
  centres has no valley (its lowest point in the middle is more than half the
  lower of the two peaks), as when a state spread evenly along a motion took
  several Gaussians. Discrete states that also move are elongated populations
  in the latent space: a full-covariance component follows each one, where
  k-means splits them along the motion. k-means (k by silhouette, k = 1 when
  no k reaches 0.25) remains an option.
* Trajectories: along the first PCs of the latents, ``n_frames`` points
  evenly spanning the 2nd–98th percentile of the PC score (the populated
  range, about ±2σ for a Gaussian cloud); the other PC scores at their mean.
  Each frame: the GMM decoded at that latent point (instant, noise-free) and a
  reconstruction of the ``per_frame`` particles nearest to it in latent space
  (0: the set shared evenly among the frames).
* Outliers: a particle is suspicious if its decoded GMM explains it poorly
  (low FRC) or its latent vector is far from the others. The score is the
  larger of two robust z-scores (median/MAD): of -FRC and of the latent
  Mahalanobis distance (``analyze`` takes the encoder's latents for it when
  training refined them). By default a particle is an outlier when its score
  exceeds 3.5 (Iglewicz & Hoaglin's cut-off for robust z-scores: ~0.4 % of a
  clean simulated set, while noise images and another protein score 10+);
  alternatively the ``outlier_fraction`` highest scores are outliers, for
  users who know how much junk to expect.
"""
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist


@dataclass
class Trajectory:
    pc: int                    # 1-based PC index
    scores: np.ndarray         # (F,) PC score of each frame
    points: np.ndarray         # (F, L) latent points
    members: list              # per frame: row indices of the nearest particles
    mean_truth: np.ndarray = None


def reduce(z, method="pca", seed=0):
    """2-D view of the latents (PCA or UMAP), the zRed of the particles: PCA
    rotates even 2-D latents onto their principal axes, so the training's view
    and the analysis's view are the same picture."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] < 2 or len(z) <= 2:
        return z.copy()
    if method == "umap":
        import umap
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(z)
    from sklearn.decomposition import PCA
    return PCA(n_components=2, random_state=seed).fit_transform(z)


def locate_in_view(z, zred, points, neighbours=10):
    """Positions (M, 2) of latent ``points`` (M, L) in the 2-D view ``zred`` of
    the particles ``z``: through the affine map from z to zred when there is
    one (PCA, or 2-D latents), else as the mean view of their nearest particles
    (UMAP has no such map)."""
    z, zred, points = (np.asarray(v, dtype=np.float64) for v in (z, zred, points))
    design = np.column_stack([z, np.ones(len(z))])
    coef, *_ = np.linalg.lstsq(design, zred, rcond=None)
    if np.abs(design @ coef - zred).max() <= 1e-6 * (np.abs(zred).max() + 1e-12) + 1e-6:
        return np.column_stack([points, np.ones(len(points))]) @ coef
    d = cdist(points, z)                               # (points, n)
    near = np.argsort(d, axis=1)[:, :neighbours]
    return zred[near].mean(1)


def _standardise(z):
    """Centre and scale by one overall factor. Not per dimension: a latent
    dimension the training switched off (tiny variance) would otherwise be
    blown up into as much noise as the dimension that carries the states."""
    zc = z - z.mean(0)
    sd = np.sqrt((zc ** 2).sum(1).mean())
    return zc / (sd if sd > 0 else 1.0)


CLUSTERINGS = ("valley", "gmm", "kmeans")
GMM_STARTS = 8          # random starts of each Gaussian-mixture fit
FIT_SAMPLE = 50000      # particles a Gaussian mixture is fitted on (all are assigned)


def _gaussian_mixture(zs, k, seed):
    from sklearn.mixture import GaussianMixture
    return GaussianMixture(k, covariance_type="full", n_init=GMM_STARTS,
                           init_params="random_from_data", reg_covar=1e-4,
                           random_state=seed).fit(zs)


def _sample(zs, size, seed):
    rng = np.random.default_rng(seed)
    return zs[rng.choice(len(zs), min(len(zs), size), replace=False)]


VALLEY_SPLIT = 0.25     # a class splits (automatic k) where its density dips below this
MIN_CLASS = 0.03        # fraction of the particles below which a piece is no class
VALLEY_STARTS = 16      # random starts of the valley search, besides the principal axes
SEPARATE_CROSSING = 0.03  # automatic k: the most neighbours across a cut between classes
NEIGHBOURS = 10


def _neighbours(x, sample=5000, seed=0):
    """(rows, their NEIGHBOURS nearest neighbours) in the whitened coordinates of
    ``x``, for a sample of at most ``sample`` rows."""
    from sklearn.neighbors import NearestNeighbors
    xw = _whiten(x)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(x)) if len(x) <= sample else rng.choice(len(x), sample,
                                                                 replace=False)
    k = min(NEIGHBOURS, len(x) - 1)
    if xw.shape[1] == 0 or k < 1:
        return rows, np.zeros((len(rows), 0), dtype=np.int64)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(xw).kneighbors(
        xw[rows], return_distance=False)[:, 1:]
    return rows, idx


def crossing_fraction(neighbours, side):
    """Fraction of the smaller piece's nearest neighbours (from ``_neighbours``)
    on the other side of the cut ``side``."""
    rows, idx = neighbours
    small = side[rows] == (1 if 2 * side.sum() < len(side) else 0)
    if not small.any() or idx.shape[1] == 0:
        return 1.0
    return float((side[idx[small]] != side[rows[small]][:, None]).mean())


def _whiten(x):
    """Coordinates with unit covariance (directions the points do not spread in
    dropped), so that the search sees every direction alike."""
    xc = x - x.mean(0)
    w, v = np.linalg.eigh(np.atleast_2d(np.cov(xc.T)))
    keep = w > 1e-3 * max(w.max(), 1e-300)
    return xc @ (v[:, keep] / np.sqrt(w[keep]))


def _valley_along(p, alpha=1.0, grid=41):
    """(depth, position) of the lowest kernel density of the 1-D points ``p``
    within ``alpha`` standard deviations of their mean, relative to the highest
    density there."""
    sd = p.std() or 1.0
    h = 0.9 * sd * len(p) ** -0.2                   # Silverman's bandwidth
    at = p.mean() + np.linspace(-alpha * sd, alpha * sd, grid)
    dens = np.exp(-0.5 * ((at[:, None] - p[None]) / h) ** 2).sum(1)
    return dens.min() / dens.max(), at[dens.argmin()]


def density_valley(x, seed=0, sample=2000, candidates=False):
    """(depth, labels) of the minimum-density hyperplane of the points ``x``
    (Pavlidis, Hofmeyr & Tasoulis 2016): among hyperplanes through the central
    part of the (whitened) points, the one crossing the lowest density, found
    by Nelder-Mead from the principal axes and random directions. ``depth`` is
    that density relative to the peak (near 1: no valley). ``candidates``: the
    local minima of every start instead, deepest first."""
    from scipy.optimize import minimize
    xw = _whiten(x)
    if xw.shape[1] == 0 or len(x) < 10:
        found = (1.0, np.zeros(len(x), dtype=np.int64))
        return [found] if candidates else found
    rng = np.random.default_rng(seed)
    sub = xw[rng.choice(len(xw), min(sample, len(xw)), replace=False)]
    starts = list(np.eye(xw.shape[1])) + list(rng.normal(size=(VALLEY_STARTS, xw.shape[1])))
    found = []
    for v0 in starts[:1] if xw.shape[1] == 1 else starts:
        if xw.shape[1] == 1:
            fun, v = _valley_along(sub[:, 0])[0], np.ones(1)
        else:
            r = minimize(lambda v: _valley_along(sub @ (v / (np.linalg.norm(v) + 1e-12)))[0],
                         v0, method="Nelder-Mead",
                         options={"maxiter": 200 * xw.shape[1], "xatol": 1e-3,
                                  "fatol": 1e-4})
            fun, v = r.fun, r.x
        found.append((fun, v / (np.linalg.norm(v) + 1e-12)))
    found.sort(key=lambda f: f[0])

    def cut(v):
        p = xw @ v
        depth, at = _valley_along(p)
        return float(depth), (p > at).astype(np.int64)
    return [cut(v) for _, v in found] if candidates else cut(found[0][1])


def split_by_valleys(z, k=0, seed=0, threshold=VALLEY_SPLIT, k_max=8):
    """Classes by density valleys (divisive): the class whose deepest valley is
    lowest is cut there, again and again, until ``k`` classes (k > 0) or, for
    k = 0, until no class has a valley below ``threshold``. Pieces smaller than
    MIN_CLASS of the particles are not cut off. A population elongated or curved
    by a motion has no valley along it, so it stays whole; two compositions that
    move alike are split where the density between them drops, whatever the
    direction."""
    labels = np.zeros(len(z), dtype=np.int64)
    min_size = max(10, int(MIN_CLASS * len(z)))
    target = k if k > 0 else k_max
    valleys = {}                      # class -> (depth, its rows, side of each row)
    while labels.max() + 1 < target:
        for c in range(labels.max() + 1):
            if c in valleys:
                continue
            rows = np.nonzero(labels == c)[0]
            depth, side = (_best_cut(z[rows], min_size, threshold if k <= 0 else None,
                                     seed + c)
                           if len(rows) >= 2 * min_size else (np.inf, None))
            valleys[c] = (depth, rows, side)
        c = min(valleys, key=lambda c: valleys[c][0])
        depth, rows, side = valleys[c]
        if not np.isfinite(depth) or (k <= 0 and depth > threshold):
            break
        labels[rows[side == 1]] = labels.max() + 1
        del valleys[c]                # the cut class's pieces are new classes
    return labels


def _best_cut(x, min_size, threshold, seed):
    """(depth, side) of the deepest valley of ``x`` that cuts off no sliver
    (pieces of at least ``min_size``) and whose pieces are separate on the
    neighbour graph (a valley between two lobes of one population is crossed
    by many neighbour links). With a ``threshold`` (automatic k), only valleys
    below it count, and without one such valley (inf, None); without a
    threshold (k given), the deepest valley that cuts off no sliver when none
    is separate."""
    neighbours, fallback = None, (np.inf, None)
    for depth, side in density_valley(x, seed=seed, candidates=True):
        if min(side.sum(), len(side) - side.sum()) < min_size:
            continue                  # it would only cut a sliver off
        if threshold is not None and depth > threshold:
            break
        if fallback[1] is None and threshold is None:
            fallback = (depth, side)
        if neighbours is None:        # one neighbour search serves every candidate
            neighbours = _neighbours(x, seed=seed)
        if crossing_fraction(neighbours, side) <= SEPARATE_CROSSING:
            return depth, side        # otherwise a lobe of one population
    return fallback


def choose_k(z, k_max=8, seed=0, min_silhouette=0.25, method="valley"):
    """Number of classes (see module docstring): by density valleys, by BIC for
    the Gaussian mixture, by silhouette for k-means."""
    if method not in CLUSTERINGS:
        raise ValueError("clustering must be one of %s" % ", ".join(CLUSTERINGS))
    if method == "valley":
        return int(split_by_valleys(z, 0, seed, k_max=k_max).max() + 1)
    zs = _standardise(z)
    sample = _sample(zs, 5000, seed)
    if method == "gmm":
        bic = [_gaussian_mixture(sample, k, seed).bic(sample)
               for k in range(1, min(k_max, len(sample) - 1) + 1)]
        return int(np.argmin(bic)) + 1
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    best_k, best_s = 1, min_silhouette
    for k in range(2, min(k_max, len(sample) - 1) + 1):
        labels = KMeans(k, n_init=4, random_state=seed).fit_predict(sample)
        s = silhouette_score(sample, labels)
        if s > best_s:
            best_k, best_s = k, s
    return best_k


VALLEY = 0.5            # density dip below which two classes stay apart (see above)


def valley_depth(a, b, bins=24):
    """Lowest density between the centres of two point clouds (the middle 60 %
    of the line joining them), relative to the lower of their two peaks: near 1
    for two pieces of one population, near 0 for two separate populations."""
    mu_a, d = a.mean(0), b.mean(0) - a.mean(0)
    t = np.concatenate([(a - mu_a) @ d, (b - mu_a) @ d]) / max(float(d @ d), 1e-12)
    h, edges = np.histogram(t, bins=bins, range=(-0.25, 1.25))
    h = np.convolve(h, np.ones(3) / 3, mode="same")
    c = 0.5 * (edges[1:] + edges[:-1])
    peaks = min(h[c <= 0.5].max(), h[c > 0.5].max())
    return float(h[(c > 0.2) & (c < 0.8)].min() / max(peaks, 1e-9))


def merge_without_valley(zs, labels, threshold=VALLEY):
    """Merge, pair by pair (the shallowest valley first), classes between which
    the density has no valley."""
    labels = labels.copy()
    while True:
        ks = np.unique(labels)
        pairs = [(valley_depth(zs[labels == i], zs[labels == j]), i, j)
                 for n, i in enumerate(ks) for j in ks[n + 1:]]
        if not pairs or max(pairs)[0] <= threshold:
            return labels
        _, i, j = max(pairs)
        labels[labels == j] = i


def classify(z, k, seed=0, method="valley", merge=False):
    """(labels (n,), centres in latent units (k, L)); classes ordered by size.
    ``merge``: then merge classes with no density valley between them (for an
    automatic k; a k the user gave is kept)."""
    if method not in CLUSTERINGS:
        raise ValueError("clustering must be one of %s" % ", ".join(CLUSTERINGS))
    if k <= 1:
        return np.zeros(len(z), dtype=np.int64), z.mean(0, keepdims=True)
    zs = _standardise(z)
    if method == "valley":
        labels = split_by_valleys(zs, k, seed)
        k = labels.max() + 1
    elif method == "gmm":
        labels = _gaussian_mixture(_sample(zs, FIT_SAMPLE, seed), k, seed).predict(zs)
        if merge:
            labels = merge_without_valley(zs, labels)
        present = np.unique(labels)
        labels = np.searchsorted(present, labels)     # an empty component is no class
        k = len(present)
    else:
        from sklearn.cluster import KMeans
        labels = KMeans(k, n_init=10, random_state=seed).fit(zs).labels_
    order = np.argsort(-np.bincount(labels, minlength=k))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    labels = remap[labels]
    centres = np.stack([z[labels == c].mean(0) for c in range(k)])
    return labels, centres


def trajectories(z, n_pcs=2, n_frames=7, per_frame=0, lo=2.0, hi=98.0):
    """Frames along the first PCs, each with its ``per_frame`` nearest particles
    (rows; 0: the set shared evenly among the frames)."""
    from sklearn.decomposition import PCA
    from .paths import nearest_rows, shared_per_frame
    n_pcs = min(n_pcs, z.shape[1])
    pca = PCA(n_components=n_pcs).fit(z)
    scores = pca.transform(z)
    per_frame = per_frame if per_frame > 0 else shared_per_frame(len(z), n_frames)
    out = []
    for i in range(n_pcs):
        s = np.linspace(np.percentile(scores[:, i], lo), np.percentile(scores[:, i], hi),
                        n_frames)
        frame_scores = np.zeros((n_frames, n_pcs))
        frame_scores[:, i] = s
        points = pca.inverse_transform(frame_scores)
        members = []
        for p in points:
            members.append(nearest_rows(np.linalg.norm(z - p, axis=1), per_frame))
        out.append(Trajectory(i + 1, s, points, members))
    return out, pca


def _robust_z(x):
    med = np.median(x)
    mad = np.median(np.abs(x - med)) * 1.4826
    return (x - med) / (mad if mad > 0 else (x.std() or 1.0))


def outlier_scores(z, frc=None):
    zc = z - np.median(z, axis=0)
    cov = np.cov(zc.T) if z.shape[1] > 1 else np.array([[zc.var()]])
    inv = np.linalg.pinv(np.atleast_2d(cov))
    maha = np.sqrt(np.einsum("ij,jk,ik->i", zc, inv, zc))
    score = _robust_z(maha)
    if frc is not None:
        score = np.maximum(score, _robust_z(-np.asarray(frc, dtype=np.float64)))
    return score


OUTLIER_THRESHOLD = 3.5


def find_outliers(z, frc=None, fraction=0.0, threshold=OUTLIER_THRESHOLD):
    """Boolean outlier flags and the scores (see module docstring): the
    ``fraction`` highest scores if fraction > 0, else the scores above
    ``threshold`` (none if threshold <= 0)."""
    score = outlier_scores(z, frc)
    if fraction > 0:
        return score > np.quantile(score, 1 - fraction), score
    if threshold is not None and threshold > 0:
        return score > threshold, score
    return np.zeros(len(z), dtype=bool), score


def frame_members(analysis):
    """Particle ids of each frame of every volume series, in the order of the
    frames in analysis.json, from an opened analysis.npz."""
    flat, starts = analysis["frame_members"], analysis["frame_starts"]
    return [flat[a:b] for a, b in zip(starts[:-1], starts[1:])]
