"""Ramachandran preferences (Lovell et al. 2003 Top500 tables, as shipped by
the PyPI package ``pyrama``): raw tables for validation and a smooth,
differentiable fit for refinement.

The fit is a truncated 2D Fourier series of log(max(p, floor)), tapered
(Lanczos σ factors) against ringing: in log space an outlier region (p below
~1e-3 of the peak) stays many units above the favoured one, so refinement
pushes residues out of it instead of flattening it away as a fit of p would.
Below the floor the log table falls on with the distance to the allowed
region, so the fit has a slope everywhere (no flat plateau to get stuck on).
"""
import importlib.util
import os

import numpy as np
import torch

KINDS = ("General", "GLY", "PRO", "PRE-PRO")
FILES = {"General": "pref_general.data", "GLY": "pref_glycine.data",
         "PRO": "pref_proline.data", "PRE-PRO": "pref_preproline.data"}
# pyrama / MolProbity outlier thresholds on the peak-normalised preference
OUTLIER_BELOW = {"General": 0.0005, "GLY": 0.002, "PRO": 0.002, "PRE-PRO": 0.002}
FLOOR = 1e-4
ORDER = 12


def _data_dir():
    spec = importlib.util.find_spec("pyrama")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the Ramachandran tables come from the PyPI package 'pyrama': "
                          "pip install pyrama")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


_TABLES = {}


def table(kind):
    """(180, 180) preference indexed [phi bin, psi bin], 2° bins from -180°."""
    if kind not in _TABLES:
        grid = np.zeros((180, 180))
        with open(os.path.join(_data_dir(), FILES[kind])) as fh:
            for line in fh:
                if line.startswith("#") or not line.strip():
                    continue
                phi, psi, val = (float(v) for v in line.split()[:3])
                grid[int((phi + 180) // 2), int((psi + 180) // 2)] = val
        _TABLES[kind] = grid
    return _TABLES[kind]


def preference(kind_index, phi, psi):
    """Table preference at (phi, psi) radians (nearest 2° bin), numpy arrays."""
    out = np.empty(len(phi))
    ip = (np.floor((np.degrees(phi) + 180) / 2).astype(int)) % 180
    jp = (np.floor((np.degrees(psi) + 180) / 2).astype(int)) % 180
    for k, kind in enumerate(KINDS):
        sel = kind_index == k
        out[sel] = table(kind)[ip[sel], jp[sel]]
    return out


def is_outlier(kind_index, phi, psi):
    thresholds = np.array([OUTLIER_BELOW[k] for k in KINDS])[kind_index]
    return preference(kind_index, phi, psi) < thresholds


def extended_log_preference(kind, slope=0.15):
    """log(max(p, FLOOR)), continued below the floor by ``slope`` per degree of
    distance to the nearest allowed bin (periodic), so that a residue deep in
    a disallowed region still feels which way the allowed region lies."""
    from scipy.ndimage import distance_transform_edt
    p = table(kind)
    logp = np.log(np.maximum(p, FLOOR))
    n = p.shape[0]
    tiled = np.tile(p < FLOOR, (3, 3))
    dist = distance_transform_edt(tiled)[n:2 * n, n:2 * n] * 2.0   # degrees
    return logp - slope * dist


def fourier_coefficients(kind, order=ORDER):
    """Complex (2K+1, 2K+1) coefficients of the tapered log-preference series."""
    logp = extended_log_preference(kind)
    n = logp.shape[0]
    centres = np.radians(-179.0 + 2.0 * np.arange(n))
    m = np.arange(-order, order + 1)
    basis = np.exp(-1j * np.outer(m, centres))            # (2K+1, n)
    coef = basis @ logp @ basis.T / n ** 2                 # least-squares fit on the grid
    taper = np.sinc(m / (order + 1))
    return coef * np.outer(taper, taper)


class RamachandranEnergy:
    """E(phi, psi) = max log p - log p_fit(phi, psi): 0 at the favoured peak."""

    def __init__(self, device="cpu", order=ORDER):
        self.m = torch.arange(-order, order + 1, device=device, dtype=torch.float32)
        coefs, offsets = [], []
        grid = np.radians(-179.0 + 2.0 * np.arange(180))
        for kind in KINDS:
            c = fourier_coefficients(kind, order)
            e = np.exp(1j * np.outer(np.arange(-order, order + 1), grid))  # (2K+1, 180)
            fitted = np.real(e.T @ c @ e)
            offsets.append(fitted.max())
            coefs.append(c)
        self.coef = torch.as_tensor(np.stack(coefs), dtype=torch.complex64, device=device)
        self.offset = torch.as_tensor(offsets, dtype=torch.float32, device=device)

    def __call__(self, phi, psi, kind):
        a = torch.polar(torch.ones_like(phi)[:, None], phi[:, None] * self.m)   # (n, 2K+1)
        b = torch.polar(torch.ones_like(psi)[:, None], psi[:, None] * self.m)
        c = self.coef[kind]                                                     # (n, 2K+1, 2K+1)
        val = (torch.einsum("nm,nmk->nk", a, c) * b).sum(-1).real
        return self.offset[kind] - val
