"""Point-group symmetry: operators, symmetry expansion and the asymmetric unit.

Why: a symmetric complex whose subunits move independently is not symmetric
particle by particle. Symmetry expansion (Scheres' trick, as in
relion_particle_symmetry_expand) turns each image into one copy per group
element g with pose ``A · R_gᵀ``: the symmetric consensus projects identically
under every copy, while the *same* asymmetric unit (ASU) of the map lands on
a different real subunit in each. Letting only the Gaussians of one ASU vary
then gives every subunit of every particle its own latent vector.

Conventions (RELION's): Cn is an n-fold about z; Dn adds a 2-fold about x.
Only cyclic and dihedral groups are supported.
"""
import re

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

_GROUP = re.compile(r"^\s*([cd])\s*(\d+)\s*$", re.IGNORECASE)


def parse_symmetry(name):
    """'c1', 'C3', 'd2' -> ('c', 3); a clear ValueError for anything else."""
    m = _GROUP.match(str(name or ""))
    if not m or int(m.group(2)) < 1 or (m.group(1).lower() == "d" and int(m.group(2)) < 2):
        raise ValueError("unsupported symmetry %r: use Cn (n >= 1) or Dn (n >= 2), "
                         "e.g. c1, c3, d2" % (name,))
    return m.group(1).lower(), int(m.group(2))


def symmetry_operators(name):
    """(G, 3, 3) rotation matrices of the group, identity first."""
    kind, n = parse_symmetry(name)
    if kind == "c":
        ops = Rotation.create_group("C%d" % n, axis="Z").as_matrix()
    else:
        ops = Rotation.create_group("D%d" % n, axis="Z").as_matrix()
    ops = np.round(ops, 12)
    ident = np.argmin([np.abs(R - np.eye(3)).sum() for R in ops])
    order = [ident] + [i for i in range(len(ops)) if i != ident]
    return ops[order]


def expand_poses(rotations, operators):
    """Poses of every copy: (n, G, 3, 3) with A_g = A · R_gᵀ (the map is invariant
    under R_g, so each is an equally valid pose of the same image)."""
    return np.einsum("nij,gkj->ngik", rotations, operators)


def expand_particles(particles, name):
    """The symmetry-expanded set: particle-major, copy-minor, new ids 1..n·G.

    Returns (expanded Particles, source_ids (n·G,), copy index (n·G,)).
    """
    ops = symmetry_operators(name)
    n, G = len(particles), len(ops)
    rows = np.repeat(np.arange(n), G)
    out = particles.subset(rows)
    out.rotations = expand_poses(particles.rotations, ops).reshape(n * G, 3, 3)
    out.ids = np.arange(1, n * G + 1, dtype=np.int64)
    return out, particles.ids[rows].copy(), np.tile(np.arange(G), n)


def asu_mask(centers, amplitudes, name, neighbour_factor=1.5, candidates=200, seed=0):
    """Boolean (N,) mask of the Gaussians of one asymmetric unit.

    The ASU is the Dirichlet domain of a reference point p (the points nearer
    to p than to any R_g p, g ≠ identity): a wedge for Cn. Its boundary should
    not cut through a subunit, so p is chosen among the Gaussian centres far
    from the symmetry axes as the one whose domain separates the fewest pairs
    of neighbouring Gaussians (neighbours: closer than ``neighbour_factor`` ×
    the median nearest-neighbour distance). Every Gaussian lies in exactly
    one of the G domains, so the G copies of the ASU tile the model.
    """
    ops = symmetry_operators(name)
    N = len(centers)
    if len(ops) == 1:
        return np.ones(N, bool)
    centers = np.asarray(centers, float)
    tree = cKDTree(centers)
    nn = tree.query(centers, k=2)[0][:, 1]
    pairs = tree.query_pairs(neighbour_factor * np.median(nn), output_type="ndarray")
    # candidates: heavy Gaussians far from every axis (images under the group distinct)
    images = np.einsum("gij,nj->ngi", ops[1:], centers)
    spread = np.linalg.norm(images - centers[:, None], axis=2).min(1)
    pool = np.nonzero(spread >= np.quantile(spread, 0.5))[0]
    rng = np.random.default_rng(seed)
    if len(pool) > candidates:
        w = np.asarray(amplitudes, float)[pool].clip(min=0) + 1e-12
        pool = rng.choice(pool, candidates, replace=False, p=w / w.sum())
    best, best_cut = None, None
    for i in pool:
        label = domain_labels(centers, centers[i], ops)
        cut = int(np.count_nonzero(label[pairs[:, 0]] != label[pairs[:, 1]]))
        if best_cut is None or cut < best_cut:
            best, best_cut = label, cut
    return best == 0


def domain_labels(points, reference, operators):
    """Index of the nearest image R_g · reference for every point (0 = the ASU)."""
    refs = np.einsum("gij,j->gi", operators, reference)
    d = np.linalg.norm(np.asarray(points)[:, None, :] - refs[None], axis=2)
    return np.argmin(d, axis=1)
