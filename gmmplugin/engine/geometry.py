"""Rotations in RELION's convention.

RELION (``Euler_angles2matrix``): angles (rot, tilt, psi) in degrees, ZYZ,
``A = Rz(psi) · Ry(tilt) · Rz(rot)`` with the *passive* elementary matrices
below. ``A`` maps map coordinates to projection coordinates:
``P(x, y) = ∫ V(Aᵀ (x, y, z)ᵀ) dz``; a point ``c`` of the map lands at
``(A c)[:2]`` in the projection.
"""
import numpy as np


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, s, z], -1),
                     np.stack([-s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, -s], -1),
                     np.stack([z, o, z], -1),
                     np.stack([s, z, c], -1)], -2)


def euler_to_matrix(rot, tilt, psi):
    """RELION Euler angles (degrees, scalars or arrays) -> A, shape (..., 3, 3)."""
    rot, tilt, psi = (np.deg2rad(np.asarray(a, dtype=np.float64))
                      for a in (rot, tilt, psi))
    return _rz(psi) @ _ry(tilt) @ _rz(rot)


def matrix_to_euler(A):
    """Inverse of :func:`euler_to_matrix` (degrees), for writing star files."""
    A = np.asarray(A, dtype=np.float64)
    tilt = np.arccos(np.clip(A[..., 2, 2], -1.0, 1.0))
    sin_tilt = np.sin(tilt)
    regular = sin_tilt > 1e-6
    rot = np.where(regular, np.arctan2(A[..., 2, 1], A[..., 2, 0]), 0.0)
    # Gimbal lock: only psi ± rot is defined; put it all in psi (rot = 0).
    flat = np.where(A[..., 2, 2] > 0,
                    np.arctan2(-A[..., 1, 0], A[..., 0, 0]),
                    np.arctan2(A[..., 1, 0], -A[..., 0, 0]))
    psi = np.where(regular, np.arctan2(A[..., 1, 2], -A[..., 0, 2]), flat)
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def random_rotations(n, rng):
    """Uniformly distributed rotations (Haar measure) via random unit quaternions."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def axis_angle_matrix(axis, angle_deg):
    """Active rotation by ``angle_deg`` about unit ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    K = np.array([[0, -axis[2], axis[1]],
                  [axis[2], 0, -axis[0]],
                  [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def rotation_angle_deg(A, B):
    """Angle (degrees) of the rotation taking A to B, per pair."""
    R = np.einsum("nij,nkj->nik", B, A)
    c = (np.trace(R, axis1=1, axis2=2) - 1) / 2
    return np.rad2deg(np.arccos(np.clip(c, -1, 1)))
