"""Known perturbations of atomic models: starting models for the refinement
tests and benchmarks."""
import numpy as np

from gmmplugin.engine.geometry import axis_angle_matrix


def rigid_move(xyz, mask, angle_deg, shift, axis=None, pivot=None):
    """Rotate the ``mask`` atoms by ``angle_deg`` about ``axis`` through ``pivot``
    (default: their centre and the direction from the rest's centre) and
    translate them by ``shift`` (3,) Å."""
    xyz = np.array(xyz, dtype=np.float64)
    part, rest = xyz[mask], xyz[~mask]
    pivot = part.mean(0) if pivot is None else np.asarray(pivot, float)
    if axis is None:
        axis = np.cross(part.mean(0) - rest.mean(0), [0.0, 0.0, 1.0])
    R = axis_angle_matrix(np.asarray(axis, float), angle_deg)
    xyz[mask] = (part - pivot) @ R.T + pivot + np.asarray(shift, float)
    return xyz


def swing(xyz, mask, angle_deg, hinge=None, axis=None):
    """Rotate the ``mask`` atoms about an axis through ``hinge`` (default: the
    point of the rest closest to the moving part's centre)."""
    xyz = np.array(xyz, dtype=np.float64)
    part, rest = xyz[mask], xyz[~mask]
    if hinge is None:
        c = part.mean(0)
        hinge = rest[np.argmin(np.linalg.norm(rest - c, axis=1))]
    return rigid_move(xyz, mask, angle_deg, np.zeros(3), axis=axis, pivot=hinge)


def jitter(xyz, sigma, seed=0):
    """Independent Gaussian noise of ``sigma`` Å on every coordinate."""
    rng = np.random.default_rng(seed)
    return np.asarray(xyz, float) + rng.normal(0, sigma, np.shape(xyz))


def ca_rmsd(a, b, ca_mask):
    """Cα RMSD (Å) between two coordinate sets of the same atoms (no superposition)."""
    d = np.asarray(a)[ca_mask] - np.asarray(b)[ca_mask]
    return float(np.sqrt((d ** 2).sum(1).mean()))
