"""Latent-space analysis: reduction, classes, trajectories, outliers.

Decisions (ours, documented for users):
* Classes: k-means on the latent vectors (centred, one overall scale). ``k = 0`` chooses k
  in 2..8 by the best silhouette score on up to 5,000 particles; k = 1 when no
  k reaches a silhouette of 0.25 (no discrete states).
* Trajectories: along the first PCs of the latents, ``n_frames`` points
  evenly spanning the 2nd–98th percentile of the PC score (the populated
  range, about ±2σ for a Gaussian cloud); the other PC scores at their mean.
  Each frame: the GMM decoded at that latent point (instant, noise-free) and a
  reconstruction of the ``per_frame`` particles nearest to it in latent space.
* Outliers: a particle is suspicious if its decoded GMM explains it poorly
  (low FRC) or its latent vector is far from the others. The score is the
  larger of two robust z-scores (median/MAD): of -FRC and of the latent
  Mahalanobis distance. By default a particle is an outlier when its score
  exceeds 3.5 (Iglewicz & Hoaglin's cut-off for robust z-scores: ~0.4 % of a
  clean simulated set, while noise images and another protein score 10+);
  alternatively the ``outlier_fraction`` highest scores are outliers, for
  users who know how much junk to expect.
"""
from dataclasses import dataclass

import numpy as np


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


def _standardise(z):
    """Centre and scale by one overall factor. Not per dimension: a latent
    dimension the training switched off (tiny variance) would otherwise be
    blown up into as much noise as the dimension that carries the states."""
    zc = z - z.mean(0)
    sd = np.sqrt((zc ** 2).sum(1).mean())
    return zc / (sd if sd > 0 else 1.0)


def choose_k(z, k_max=8, seed=0, min_silhouette=0.25):
    """Number of classes by silhouette (see module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    rng = np.random.default_rng(seed)
    zs = _standardise(z)
    sample = zs[rng.choice(len(zs), min(len(zs), 5000), replace=False)]
    best_k, best_s = 1, min_silhouette
    for k in range(2, min(k_max, len(sample) - 1) + 1):
        labels = KMeans(k, n_init=4, random_state=seed).fit_predict(sample)
        s = silhouette_score(sample, labels)
        if s > best_s:
            best_k, best_s = k, s
    return best_k


def classify(z, k, seed=0):
    """(labels (n,), centres in latent units (k, L)); classes ordered by size."""
    from sklearn.cluster import KMeans
    if k <= 1:
        return np.zeros(len(z), dtype=np.int64), z.mean(0, keepdims=True)
    zs = _standardise(z)
    km = KMeans(k, n_init=10, random_state=seed).fit(zs)
    labels = km.labels_
    order = np.argsort(-np.bincount(labels, minlength=k))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    labels = remap[labels]
    centres = np.stack([z[labels == c].mean(0) for c in range(k)])
    return labels, centres


def trajectories(z, n_pcs=2, n_frames=7, per_frame=500, lo=2.0, hi=98.0):
    """Frames along the first PCs, each with its nearest particles (rows)."""
    from sklearn.decomposition import PCA
    n_pcs = min(n_pcs, z.shape[1])
    pca = PCA(n_components=n_pcs).fit(z)
    scores = pca.transform(z)
    per_frame = min(per_frame, len(z))
    out = []
    for i in range(n_pcs):
        s = np.linspace(np.percentile(scores[:, i], lo), np.percentile(scores[:, i], hi),
                        n_frames)
        frame_scores = np.zeros((n_frames, n_pcs))
        frame_scores[:, i] = s
        points = pca.inverse_transform(frame_scores)
        members = []
        for p in points:
            d = np.linalg.norm(z - p, axis=1)
            members.append(np.argsort(d)[:per_frame])
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
