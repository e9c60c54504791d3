"""Differentiable stereochemistry (torch) over a :class:`Topology`.

Every term is a mean over its restraints of a squared z-score, so ~1 means
"as good as the library's sigma" and the terms add on one scale:
bonds and angles (with a steeper wall beyond 4.5σ so outliers cannot hide in
the mean), peptide ω and side-chain χ torsions (periodic, the library's
staggered-rotamer prior), planes (RMS distance to the least-squares plane),
chiral volumes, Ramachandran (smooth log-preference fit, see ramachandran.py)
and clashes. Clashes use a heavy-atom rule standing in for riding hydrogens:
non-bonded atoms closer than the sum of van der Waals radii minus 0.3 Å
(minus 0.9 Å for 1-4 pairs and for N/O pairs that may hydrogen-bond),
1-2 and 1-3 pairs excluded, neighbour list refreshed every few steps.
"""
import numpy as np
import torch

from .ramachandran import RamachandranEnergy

OUTLIER_Z = 4.5
CLASH_ALLOWANCE = 0.4
H_RADIUS_GAIN = 0.1
HBOND_DISTANCE = 2.6
ONE_FOUR_RELIEF = 0.5
CLASH_SIGMA = 0.1
CLASH_CUTOFF = 4.0


def _z2(z):
    """z² plus a steep wall beyond OUTLIER_Z."""
    over = torch.relu(z.abs() - OUTLIER_Z)
    return z ** 2 + 10.0 * over ** 2


def dihedral(p0, p1, p2, p3):
    """Dihedral angles (rad) of point quadruples, (..., 3) each."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / b1.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    x = (v * w).sum(-1)
    y = (torch.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.atan2(y, x)


def bond_angle(p0, p1, p2):
    u, v = p0 - p1, p2 - p1
    return torch.atan2(torch.cross(u, v, dim=-1).norm(dim=-1), (u * v).sum(-1))


def wrap(a):
    return torch.remainder(a + np.pi, 2 * np.pi) - np.pi


class Geometry:
    """Geometry energy terms of one topology; call with coordinates (B, n, 3)."""

    def __init__(self, topology, device="cpu"):
        t, dev = topology, torch.device(device)
        self.n = len(t)
        L = lambda a: torch.as_tensor(a, dtype=torch.long, device=dev)
        F = lambda a: torch.as_tensor(a, dtype=torch.float32, device=dev)
        self.bonds, self.bond_ideal, self.bond_esd = L(t.bonds), F(t.bond_ideal), F(t.bond_esd)
        self.angles, self.angle_ideal, self.angle_esd = L(t.angles), F(t.angle_ideal), F(t.angle_esd)
        self.tors, self.tor_ideal, self.tor_esd = L(t.torsions), F(t.torsion_ideal), F(t.torsion_esd)
        self.tor_period = F(t.torsion_period)
        self.omega = torch.as_tensor(t.torsion_is_omega, device=dev)
        self.chirals, self.chiral_ideal = L(t.chirals), F(t.chiral_ideal)
        self.rama, self.rama_kind = L(t.rama), L(t.rama_kind)
        self.rama_energy = RamachandranEnergy(dev) if len(t.rama) else None
        # planes grouped by size so each group is one batched eigen-problem
        self.planes = {}
        for idx, esd in t.planes:
            self.planes.setdefault(len(idx), ([], []))
            self.planes[len(idx)][0].append(idx)
            self.planes[len(idx)][1].append(esd)
        self.planes = [(L(np.stack(i)), F(e)) for i, e in self.planes.values()]
        self.excluded = torch.as_tensor(t.excluded, device=dev)
        self.one_four = torch.as_tensor(t.one_four, device=dev)
        polar = np.isin(t.atomic_number, (7, 8))
        hyd = t.hydrogens if t.hydrogens is not None else np.zeros(len(t))
        self.vdw = F(t.vdw + H_RADIUS_GAIN * hyd)
        self.polar = torch.as_tensor(polar, device=dev)
        # waters and unrestrained atoms do not take part in clashes (rigid, not refined)
        self.clash_atoms = torch.as_tensor(np.flatnonzero(t.restrained), device=dev)
        self.pairs = None

    # -- neighbour list -------------------------------------------------------
    def update_neighbours(self, xyz):
        """Non-bonded pairs closer than CLASH_CUTOFF in ``xyz`` (n, 3) (any frame of
        a batch: pass the union over frames by calling with each, or the first)."""
        with torch.no_grad():
            x = xyz[self.clash_atoms]
            pairs = []
            chunk = 2048
            for s in range(0, len(x), chunk):
                d = torch.cdist(x[s:s + chunk], x)
                i, j = torch.nonzero(d < CLASH_CUTOFF + 1.0, as_tuple=True)
                i = i + s
                keep = i < j
                pairs.append(torch.stack([self.clash_atoms[i[keep]], self.clash_atoms[j[keep]]], 1))
            p = torch.cat(pairs) if pairs else torch.zeros(0, 2, dtype=torch.long)
            key = p[:, 0] * self.n + p[:, 1]
            bonded = torch.isin(key, self.excluded)
            p, key = p[~bonded], key[~bonded]
            fourth = torch.isin(key, self.one_four)
            limit = self.vdw[p[:, 0]] + self.vdw[p[:, 1]] - CLASH_ALLOWANCE
            limit = torch.where(fourth, limit - ONE_FOUR_RELIEF, limit)
            hb = self.polar[p[:, 0]] & self.polar[p[:, 1]]
            limit = torch.where(hb, torch.clamp(limit, max=HBOND_DISTANCE), limit)
            self.pairs, self.pair_limit = p, limit

    # -- terms ----------------------------------------------------------------
    def terms(self, x):
        """Dict of mean squared z-scores for coordinates x (B, n, 3)."""
        out = {}
        b = self.bonds
        d = (x[:, b[:, 0]] - x[:, b[:, 1]]).norm(dim=-1)
        out["bond"] = _z2((d - self.bond_ideal) / self.bond_esd).mean()
        a = self.angles
        th = bond_angle(x[:, a[:, 0]], x[:, a[:, 1]], x[:, a[:, 2]])
        out["angle"] = _z2((th - self.angle_ideal) / self.angle_esd).mean()
        if len(self.tors):
            t = self.tors
            chi = dihedral(*(x[:, t[:, k]] for k in range(4)))
            dev = wrap(self.tor_period * (chi - self.tor_ideal)) / self.tor_period
            z2 = (dev / self.tor_esd) ** 2
            out["omega"] = z2[:, self.omega].mean() if self.omega.any() else x.new_zeros(())
            out["rotamer"] = (z2[:, ~self.omega].mean() if (~self.omega).any()
                              else x.new_zeros(()))
        plane_terms = []
        for idx, esd in self.planes:
            p = x[:, idx]                                   # (B, P, k, 3)
            c = p - p.mean(-2, keepdim=True)
            cov = c.transpose(-1, -2) @ c
            normal = torch.linalg.eigh(cov.double())[1][..., 0].float()   # smallest
            dist = (c * normal[..., None, :]).sum(-1)
            plane_terms.append(((dist / esd[:, None]) ** 2).flatten())
        if plane_terms:
            out["plane"] = torch.cat(plane_terms).mean()
        if len(self.chirals):
            c = self.chirals
            ctr = x[:, c[:, 0]]
            vol = ((x[:, c[:, 1]] - ctr) * torch.cross(x[:, c[:, 2]] - ctr,
                                                       x[:, c[:, 3]] - ctr, dim=-1)).sum(-1)
            out["chiral"] = _z2((vol - self.chiral_ideal) / 0.2).mean()
        if self.rama_energy is not None:
            r = self.rama
            phi = dihedral(*(x[:, r[:, k]] for k in range(4)))
            psi = dihedral(*(x[:, r[:, k]] for k in range(1, 5)))
            B = x.shape[0]
            e = self.rama_energy(phi.flatten(), psi.flatten(),
                                 self.rama_kind.repeat(B))
            out["rama"] = e.mean()
        if self.pairs is not None and len(self.pairs):
            p = self.pairs
            d = (x[:, p[:, 0]] - x[:, p[:, 1]]).norm(dim=-1)
            over = torch.relu(self.pair_limit - d) / CLASH_SIGMA
            out["clash"] = (over ** 2).sum(-1).mean() / max(1, len(self.clash_atoms)) * 100
        return out
