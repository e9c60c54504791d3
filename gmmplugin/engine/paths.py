"""Curves through the populated latent space: paths between anchors and each
class's principal curve.

A straight line between two states (or along a principal axis) crosses
latent space where no particle lies and the decoder was never trained; its
frames are then guesses. These curves stay where the particles are:

* a **path** between anchors is the shortest path on the particles' k-nearest-
  neighbour graph, from each anchor to the next, then smoothed and resampled
  to evenly spaced frames. An edge costs its latent distance squared (a
  density-based distance, Bijral, Ratliff & Srebro 2011): many short hops
  through a dense population cost less than one long jump, so the path stays
  inside a population instead of cutting a corner through a sparse end or
  across a neighbouring population. Between anchors
  in separate populations (no chain of neighbours joins them) it crosses the
  shortest gap between them, and says how wide that gap is: the frames in it
  hold no particles of their own, and their maps are the decoder's guesses;
* a class's **principal curve** (Hastie & Stuetzle 1989) starts as the graph
  path between the class's two ends and is refined by projecting every
  particle of the class onto the curve and replacing each frame by a local
  linear fit of the particles projected near it, over the 2nd–98th
  percentile of the projections: it follows a curved population through its
  middle instead of cutting across it, and reaches its ends. The ends are
  the particles at the 2nd and 98th percentile of the population's first
  Laplacian eigenmap coordinate (Belkin & Niyogi 2003: the smoothest ordering
  of the neighbour graph, which runs along a bent population end to end,
  where its first principal axis, once the bend is as wide as it is long,
  joins two points of its middle); of its first principal axis when the
  neighbour graph falls apart, and the straight line between them when no
  chain of neighbours joins them.

Both trace the population's shape, which an evenly spread sample traces as
well as the whole: a curve is fitted to at most CURVE_SAMPLE particles and a
path runs on the graph of at most PATH_SAMPLE and its anchors, so their cost
stays bounded on millions of particles. Frames take their particles from the
whole set.

Torch-free (numpy, scipy, scikit-learn, networkx).
"""
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

NEIGHBOURS = 10           # k of the nearest-neighbour graph
EDGE_POWER = 2            # a path's edge costs (latent distance) ** EDGE_POWER
MIN_PER_FRAME = 20        # the fewest particles an automatic frame reconstructs
PATH_CLASS_SHARE = 0.1    # of a path's particles, in a class it runs through (not a stray)
CURVE_ITERATIONS = 5      # projection / averaging rounds of a principal curve
CURVE_SAMPLE = 20000      # particles a principal curve is fitted to: enough to trace
                          # a population's shape, and its cost stays that of this many
PATH_SAMPLE = 50000       # particles whose neighbour graph a path runs on


@dataclass
class Curve:
    points: np.ndarray     # (F, L) frames, evenly spaced along the curve
    members: list          # per frame: row indices of the particles nearest to it
    occupancy: np.ndarray  # (F,) particles whose nearest frame this is (within the tube)
    arc: np.ndarray        # (F,) arc length of each frame from the first one
    gap: float = 0.0       # a path's widest jump across empty latent space (path_gap)
    classes: np.ndarray = None  # a path's: the classes it runs through (with labels)


def knn_graph(z, k=NEIGHBOURS):
    """Symmetric sparse graph of each particle's k nearest neighbours, with
    latent distances as edge lengths."""
    from sklearn.neighbors import kneighbors_graph
    g = kneighbors_graph(z, min(k, len(z) - 1), mode="distance")
    g = g.maximum(g.T).tocsr()
    # canonical form (sorted, no duplicate entries), which graph algorithms
    # expect and maximum() does not leave
    g.sum_duplicates()
    g.sort_indices()
    return g


def bridged(g, z):
    """The graph ``g`` joined into one piece: while it falls apart, the shortest
    edge between the piece of particle 0 and the rest is added."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import NearestNeighbors
    g = g.tolil()
    while True:
        count, label = connected_components(g, directed=False)
        if count == 1:
            return g.tocsr()
        main, rest = np.nonzero(label == label[0])[0], np.nonzero(label != label[0])[0]
        dist, near = NearestNeighbors(n_neighbors=1).fit(z[rest]).kneighbors(z[main])
        i = int(np.argmin(dist[:, 0]))
        a, b = int(main[i]), int(rest[near[i, 0]])
        g[a, b] = g[b, a] = max(float(dist[i, 0]), 1e-12)


def graph_path(z, anchors, k=NEIGHBOURS, bridge=False):
    """Rows of the particles on the cheapest graph path through ``anchors``
    (rows), in order (edge cost: distance ** EDGE_POWER). When two anchors
    are not connected even on a graph with 4× the neighbours (separate
    populations), raises ValueError, or with ``bridge`` crosses between the
    populations by their shortest gaps (``bridged``)."""
    import networkx as nx
    anchors = [int(a) for a in anchors]
    if len(anchors) < 2:
        raise ValueError("a path needs at least two anchors")

    def graphs():                 # each built only when the previous one fails
        first = knn_graph(z, k)
        yield first
        yield knn_graph(z, 2 * k)
        yield knn_graph(z, 4 * k)
        if bridge:
            yield bridged(first, z)
    for g in graphs():
        g = g.copy()
        g.data = g.data ** EDGE_POWER
        # networkx, not scipy's dijkstra: the scipy that scipion-em allows
        # (1.10.0) has a heap bug that loops forever on some graphs (scipy
        # issue 17782, fixed in 1.10.1)
        graph = nx.from_scipy_sparse_array(g)
        rows = [anchors[0]]
        try:
            for a, b in zip(anchors[:-1], anchors[1:]):
                rows += nx.dijkstra_path(graph, a, b)[1:]
        except nx.NetworkXNoPath:
            continue
        return np.array(rows, dtype=np.int64)
    raise ValueError("the anchors are not connected through populated latent space "
                     "(no chain of near neighbours links them)")


def _arc(points):
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def resample(points, n_frames):
    """``n_frames`` points evenly spaced in arc length along a polyline."""
    points = np.asarray(points, dtype=np.float64)
    s = _arc(points)
    if s[-1] <= 0:
        return np.repeat(points[:1], n_frames, axis=0)
    t = np.linspace(0.0, s[-1], n_frames)
    return np.column_stack([np.interp(t, s, points[:, d]) for d in range(points.shape[1])])


def smooth(points, window):
    """Moving average of a polyline's vertices over ``window`` vertices (ends
    kept): the graph path zig-zags between neighbouring particles."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3 or window < 2:
        return points
    h = window // 2
    out = points.copy()
    for i in range(1, len(points) - 1):
        lo, hi = max(0, i - h), min(len(points), i + h + 1)
        w = min(i - lo, hi - 1 - i)          # symmetric, so the ends stay in place
        out[i] = points[i - w:i + w + 1].mean(0)
    return out


def _feet(z, curve, chunk=100000):
    """(segment, fraction along it, squared distance) of each point's nearest
    point on a polyline, worked through in chunks of ``chunk`` points (bounded
    memory for large sets)."""
    z = np.asarray(z, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    a, d = curve[:-1], np.diff(curve, axis=0)
    len2 = np.maximum((d ** 2).sum(1), 1e-18)
    seg = np.empty(len(z), dtype=np.int64)
    frac, dist2 = np.empty(len(z)), np.empty(len(z))
    for start in range(0, len(z), chunk):
        x = z[start:start + chunk, None, :] - a[None]
        t = np.clip((x * d[None]).sum(2) / len2[None], 0.0, 1.0)
        e2 = ((x - t[..., None] * d[None]) ** 2).sum(2)
        s, rows = e2.argmin(1), np.arange(len(x))
        seg[start:start + chunk], frac[start:start + chunk] = s, t[rows, s]
        dist2[start:start + chunk] = e2[rows, s]
    return seg, frac, dist2


def project(z, curve, chunk=100000):
    """(arc-length position, distance) of each point's projection onto a polyline."""
    seg, frac, dist2 = _feet(z, curve, chunk)
    lengths = np.linalg.norm(np.diff(np.asarray(curve, dtype=np.float64), axis=0), axis=1)
    return _arc(curve)[seg] + frac * lengths[seg], np.sqrt(dist2)


def ordering(z, k=NEIGHBOURS, sample=5000, seed=0):
    """(rows, coordinate): a 1-D ordering of (a sample of at most ``sample``
    of) the particles ``z`` along their population, the first Laplacian
    eigenmap coordinate of their neighbour graph (see the module docstring);
    the first principal axis when that graph is not connected."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.decomposition import PCA
    from sklearn.manifold import spectral_embedding
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(z), sample, replace=False)) if len(z) > sample \
        else np.arange(len(z))
    x = z[rows] - z[rows].mean(0)
    if len(x) > k + 2:
        g = knn_graph(x, k)
        if connected_components(g, directed=False)[0] == 1:
            g.data = np.ones_like(g.data)
            coord = spectral_embedding(g, n_components=1, drop_first=True,
                                       random_state=seed)[:, 0]
            return rows, coord
    return rows, PCA(n_components=1).fit_transform(x)[:, 0]


def curve_ends(z, k=NEIGHBOURS):
    """Rows of the particles at the 2nd and 98th percentile of ``ordering``."""
    rows, coord = ordering(z, k)
    return [int(rows[np.argmin(np.abs(coord - np.percentile(coord, q)))])
            for q in (2.0, 98.0)]


def curve_tangents(z, curve):
    """(n, L) unit direction of ``curve`` (a polyline) where each point of
    ``z`` projects onto it: the local direction of the motion it follows."""
    steps = np.diff(np.asarray(curve, dtype=np.float64), axis=0)
    unit = steps / np.maximum(np.linalg.norm(steps, axis=1), 1e-9)[:, None]
    return unit[_feet(z, curve)[0]]


def spread_rows(n, size, keep=()):
    """Sorted rows of range(n): at most ``size`` spread evenly over it, and the
    rows ``keep``."""
    rows = np.unique(np.linspace(0, n - 1, min(n, size)).astype(np.int64))
    return np.union1d(rows, np.asarray(keep, dtype=np.int64))


def principal_curve(z, n_frames, iterations=CURVE_ITERATIONS, k=NEIGHBOURS,
                    sample=CURVE_SAMPLE):
    """Frames (n_frames, L) of the principal curve of the points ``z`` (see the
    module docstring), fitted to at most ``sample`` of them. Its direction:
    from the low to the high end of ``ordering``."""
    z = np.asarray(z, dtype=np.float64)
    if len(z) > sample:
        z = z[spread_rows(len(z), sample)]
    ends = curve_ends(z, k)
    try:
        start = smooth(z[graph_path(z, ends, k)], 9)
    except ValueError:                # the class falls apart into pieces: a straight start
        start = z[ends]
    curve = resample(start, n_frames)
    for _ in range(iterations):
        lam, _ = project(z, curve)
        lo, hi = np.percentile(lam, [2.0, 98.0])
        nodes = np.linspace(lo, hi, n_frames)
        h = max((hi - lo) / max(n_frames - 1, 1), 1e-12)   # bandwidth: one frame spacing
        curve = resample(local_linear(lam, z, nodes, h), n_frames)
    return curve


def local_linear(x, y, at, h):
    """Kernel-weighted local linear fit of ``y`` (n, L) against ``x`` (n,),
    evaluated ``at`` each node (Gaussian kernel of width ``h``): unlike a local
    mean it is not pulled inwards at the ends of the range."""
    d = x[None, :] - at[:, None]                       # (F, n)
    w = np.exp(-0.5 * (d / h) ** 2)
    s0, s1, s2 = w.sum(1), (w * d).sum(1), (w * d * d).sum(1)
    t0, t1 = w @ y, (w * d) @ y                        # (F, L)
    det = s0 * s2 - s1 ** 2
    ok = det > 1e-12 * np.maximum(s0 * s2, 1e-300)
    fit = np.where(ok[:, None], (s2[:, None] * t0 - s1[:, None] * t1)
                   / np.where(ok, det, 1.0)[:, None], t0 / np.maximum(s0, 1e-300)[:, None])
    return fit


def curve_frames(z, points, per_frame=0, tube=None, population=None):
    """A Curve from its frame points: each frame's ``per_frame`` nearest
    particles, and its occupancy, the particles whose nearest frame it is among
    those within ``tube`` of the curve (default: the median distance of the
    particles to their nearest frame, times 3). ``per_frame`` 0: the
    ``population`` (default: the particles along the curve, its total
    occupancy) shared evenly among the frames, so a larger data set gives
    fuller frames, not thinner slices of the motion."""
    points = np.asarray(points, dtype=np.float64)
    d = cdist(z, points)                               # (n, frames)
    nearest, dist = d.argmin(1), d.min(1)
    tube = 3.0 * np.median(dist) if tube is None else tube
    occupancy = np.bincount(nearest[dist <= tube], minlength=len(points))
    if per_frame <= 0:
        per_frame = shared_per_frame(occupancy.sum() if population is None else population,
                                     len(points))
    members = [nearest_rows(d[:, f], per_frame) for f in range(len(points))]
    return Curve(points, members, occupancy, _arc(points))


def nearest_rows(distance, k):
    """The rows of the ``k`` smallest ``distance`` values, nearest first (a
    partial sort: linear in the number of particles)."""
    k = min(k, len(distance))
    rows = np.argpartition(distance, k - 1)[:k] if k < len(distance) else \
        np.arange(len(distance))
    return rows[np.argsort(distance[rows], kind="stable")]


def shared_per_frame(population, n_frames):
    """Particles per frame when ``population`` particles are shared evenly
    among ``n_frames`` frames (at least MIN_PER_FRAME)."""
    return max(MIN_PER_FRAME, int(round(population / max(n_frames, 1))))


def latent_path(z, anchors, n_frames, per_frame=0, k=NEIGHBOURS, labels=None,
                sample=PATH_SAMPLE):
    """The path through ``anchors`` (rows of ``z``) as a Curve of ``n_frames``;
    between separate populations it crosses their shortest gap, and the
    Curve's ``gap`` says how wide the widest crossing is. With ``per_frame``
    0 and the particles' classes ``labels``, the frames share the particles
    of the classes the path runs through (each holding at least
    PATH_CLASS_SHARE of the path's own particles): a path within one of two
    compositions shares that composition, not the whole set, which would draw
    the other one into its frames. The path runs on the neighbour graph of at
    most ``sample`` particles and the anchors (the graph of a million would
    cost gigabytes); its frames take their particles from the whole set."""
    graph_rows = spread_rows(len(z), sample, anchors) if len(z) > sample \
        else np.arange(len(z))
    on_graph = graph_path(z[graph_rows], np.searchsorted(graph_rows, anchors), k,
                          bridge=True)
    rows = graph_rows[on_graph]
    window = max(3, len(rows) // max(n_frames, 1))
    points = resample(smooth(z[rows], window), n_frames)
    population, crossed = None, None
    if labels is not None:
        classes, count = np.unique(np.asarray(labels)[rows], return_counts=True)
        crossed = classes[(count >= PATH_CLASS_SHARE * len(rows)) | (count == count.max())]
        if per_frame <= 0:
            population = int(np.isin(labels, crossed).sum())
    curve = curve_frames(z, points, per_frame, population=population)
    curve.gap = path_gap(z[graph_rows], on_graph, k)
    curve.classes = crossed
    return curve


def path_gap(z, rows, k=NEIGHBOURS):
    """The longest step between consecutive particles of a graph path, each in
    units of the larger of its two ends' distances to their k-th neighbour (the
    local spacing of particles, wide in a sparse tail): at most about 1.5 on
    the neighbour graph (1 for its own edges), far more where the path jumps
    between two populations."""
    from sklearn.neighbors import NearestNeighbors
    rows = np.asarray(rows)
    if len(rows) < 2:
        return 0.0
    steps = np.linalg.norm(np.diff(z[rows], axis=0), axis=1)
    kk = min(k, len(z) - 1)
    dist, _ = NearestNeighbors(n_neighbors=kk + 1).fit(z).kneighbors(z[rows])
    spacing = np.maximum(dist[:-1, kk], dist[1:, kk])
    return float((steps / np.maximum(spacing, 1e-12)).max())


def parse_anchors(text):
    """Anchors written as ``class:2; particle:1234; point:0.1,-0.3`` -> a list of
    (kind, value) with kind in class/particle/point."""
    out = []
    for item in [t.strip() for t in str(text).replace("\n", ";").split(";") if t.strip()]:
        kind, _, value = item.partition(":")
        kind = kind.strip().lower()
        try:
            if kind == "class":
                out.append(("class", int(value)))
            elif kind == "particle":
                out.append(("particle", int(value)))
            elif kind == "point":
                out.append(("point", [float(v) for v in value.replace(" ", ",").split(",")
                                      if v.strip()]))
            else:
                raise ValueError
        except ValueError:
            raise ValueError("cannot read the anchor %r: write class:K, particle:ID or "
                             "point:x,y,... separated by ';'" % item) from None
    if len(out) == 1:
        raise ValueError("a path needs at least two anchors (got %r)" % text)
    return out


def anchor_rows(anchors, z, ids, labels):
    """The particle row of each anchor: a class's medoid (its particle nearest
    its mean), a particle by id, or the particle nearest a latent point."""
    index = {int(i): r for r, i in enumerate(ids)}
    rows = []
    for kind, value in anchors:
        if kind == "class":
            sel = np.nonzero(labels == value - 1)[0]
            if len(sel) == 0:
                raise ValueError("anchor class:%d: there is no class %d (classes 1..%d)"
                                 % (value, value, labels.max() + 1))
            centre = z[sel].mean(0)
            rows.append(int(sel[np.argmin(np.linalg.norm(z[sel] - centre, axis=1))]))
        elif kind == "particle":
            if value not in index:
                raise ValueError("anchor particle:%d: no particle with that id" % value)
            rows.append(index[value])
        else:
            if len(value) != z.shape[1]:
                raise ValueError("anchor point:%s has %d coordinates; the latents have %d"
                                 % (",".join("%g" % v for v in value), len(value),
                                    z.shape[1]))
            rows.append(int(np.argmin(np.linalg.norm(z - np.asarray(value), axis=1))))
    return rows
