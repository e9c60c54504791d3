"""Peptide flips for residues left as Ramachandran outliers.

A peptide unit (C(i), O(i), N(i+1)) turned by ~180° about the CA(i)–CA(i+1)
axis is a classic local minimum of map refinement at 3–5 Å: the map barely
changes, φ(i+1) and ψ(i) both jump by ~180°, and gradient descent cannot turn
it back through the barrier. After the polish, every Ramachandran outlier
proposes flipping the peptide before or after it, whichever lowers the
Ramachandran energy of the residues it touches; the caller polishes the
flipped model and keeps it only if the total objective improves.
"""
import numpy as np
import torch

from .ramachandran import is_outlier
from .restraints import dihedral


def _neighbours(topology):
    nbr = [[] for _ in range(len(topology))]
    for a, b in topology.bonds:
        nbr[a].append(b)
        nbr[b].append(a)
    return nbr


def peptide_units(topology):
    """Per Ramachandran row: (before, after) peptide units, each as
    (CA_a, CA_b, [C, O, N]) atom indices or None."""
    nbr, z = _neighbours(topology), topology.atomic_number

    def unit(c, n):
        o = [a for a in nbr[c] if z[a] == 8]
        ca_a = [a for a in nbr[c] if z[a] == 6]
        ca_b = [a for a in nbr[n] if z[a] == 6 and a != c]
        if len(o) != 1 or len(ca_a) != 1 or not ca_b:
            return None
        return ca_a[0], ca_b[0], [c, o[0], n]

    return [(unit(r[0], r[1]), unit(r[3], r[4])) for r in topology.rama]


def flip(x, unit):
    """x (n, 3) with the unit's C, O, N turned 180° about CA_a–CA_b."""
    ca_a, ca_b, atoms = unit
    a, b = x[ca_a], x[ca_b]
    u = (b - a) / np.linalg.norm(b - a)
    p = x[atoms] - a
    x[atoms] = a + 2 * np.outer(p @ u, u) - p
    return x


def _phi_psi(x, rama):
    phi = dihedral(*(x[None, rama[:, k]] for k in range(4)))[0]
    psi = dihedral(*(x[None, rama[:, k]] for k in range(1, 5)))[0]
    return phi, psi


def propose_flips(geometry, topology, x, units=None):
    """Flipped copy of x (n, 3) torch and the number of peptides flipped.
    Greedy: outliers in order, each re-checked on the model as flipped so far."""
    if geometry.rama_energy is None:
        return x, 0
    units = units or peptide_units(topology)
    rama, kind = geometry.rama, geometry.rama_kind

    def state(xn):
        y = torch.as_tensor(xn, dtype=x.dtype, device=x.device)
        phi, psi = _phi_psi(y, rama)
        out = is_outlier(topology.rama_kind, phi.cpu().numpy(), psi.cpu().numpy())
        return out, float(geometry.rama_energy(phi.float(), psi.float(), kind).sum())

    with torch.no_grad():
        xn = x.cpu().numpy().astype(np.float64)
        out, energy = state(xn)
        flipped = 0
        for i in np.flatnonzero(out):
            now_out, energy = state(xn)
            if not now_out[i]:
                continue
            best = None
            for u in units[i]:
                if u is None:
                    continue
                y = flip(xn.copy(), u)
                _, e = state(y)
                if e < energy and (best is None or e < best[1]):
                    best = (y, e)
            if best is not None:
                xn, energy = best
                flipped += 1
    return torch.as_tensor(xn, dtype=x.dtype, device=x.device), flipped
